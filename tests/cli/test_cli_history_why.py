""""Why no email today": ``digest send`` over several feeds, then ``digest history`` says for
each edition that sent nothing what matched but was already sent, and which of the
subscriber's feeds were empty (and why) or down.

The feeds are fetched from a real HTTP server on 127.0.0.1 serving the recordings, into the
day cache beside the database; the CLI's own runs then read that day's answers from the cache
(as a second run of the day does), so no command here reaches the internet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import paths
import pytest
from click.testing import CliRunner, Result
from feed_server import FeedServer, Reply, feed_server

from digest.cli import main
from digest.config import load_config
from digest.feeds import Endpoints, gather_for
from digest.feeds._http import RetryPolicy

FIXTURES = paths.FIXTURES
CONFIG = """settings:
  sender: "Paper Digest <digest@example.org>"
  delivery: outbox
  feeds:
    - {name: ml, source: arxiv_rss, categories: [cs.LG, cs.AI, cs.CL, stat.ML]}
    - {name: hf, source: huggingface}
    - {name: bio, source: biorxiv}
subscribers:
  - email: ada@example.org
    timezone: America/Los_Angeles
    topics: ["local learning"]
    feeds: [ml, hf]
  - email: bob@example.org
    topics: [integron]
    feeds: [bio]
"""
# Both runs fall on fetch day 2026-09-24 (UTC); for Ada in Los Angeles they are two editions.
FIRST, SECOND = "2026-09-24T01:00:00+00:00", "2026-09-24T09:00:00+00:00"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        s.route("/rss/cs.LG+cs.AI+cs.CL+stat.ML", Reply(
            (FIXTURES / "arxiv_rss.xml").read_bytes(),
            headers=(("Content-Type", "application/rss+xml"),)))
        s.route("/api/daily_papers", Reply((FIXTURES / "nginx_503_error_page.html").read_bytes(),
                                           503, (("Content-Type", "text/html"),)))
        s.default("/details/biorxiv/", Reply(
            (FIXTURES / "biorxiv_details_no_posts_found.json").read_bytes(),
            headers=(("Content-Type", "application/json"),)))
        yield s


def fetch(server: FeedServer, config: Path, now: str) -> None:
    settings = load_config(config).settings
    with httpx.Client(timeout=5) as client:
        gather_for(settings, None, datetime.fromisoformat(now), client=client,
                   endpoints=Endpoints.at(server.url), retry=RetryPolicy(attempts=1),
                   sleep=lambda s: None)


def digest(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_history_says_why_no_email(server: FeedServer, tmp_path: Path) -> None:
    config = tmp_path / "subscribers.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    fetch(server, config, FIRST)
    first = digest("send", "--config", str(config), "--now", FIRST, "--ignore-schedule")
    assert first.exit_code == 0, first.output
    fetch(server, config, SECOND)
    asked = len(server.seen)
    second = digest("send", "--config", str(config), "--now", SECOND, "--ignore-schedule")
    assert second.exit_code == 0, second.output
    assert len(server.seen) == asked  # the CLI's runs read the day's answers from the cache

    rows = json.loads(digest("history", "--config", str(config), "--json").output)
    by = {(r["email"], r["edition"]): r for r in rows}
    assert by[("ada@example.org", "2026-09-23")]["state"] == "sent"
    assert by[("ada@example.org", "2026-09-23")]["papers"] == ["2609.26811"]
    again = by[("ada@example.org", "2026-09-24")]
    assert again["state"] == "skipped"
    assert again["reason"].startswith("nothing new: 1 matching paper was already sent; feeds: "
                                      "ml: 2 papers (2026-09-24); hf: down (")
    assert "HTTP 503" in again["reason"]
    assert [f["name"] for f in again["feeds"]] == ["ml", "hf"]  # only the feeds Ada reads
    bob = by[("bob@example.org", "2026-09-24")]
    assert bob["state"] == "skipped" and [f["state"] for f in bob["feeds"]] == ["empty"]
    assert bob["reason"] == ("nothing new: no new papers match your topics; feeds: bio: empty "
                             "(no preprints posted on 2026-09-24 yet)")

    table = CliRunner().invoke(main, ["history", "bob@example.org", "--config", str(config)],
                               env={"COLUMNS": "300"}).output
    assert "skipped" in table
    assert "no new papers match your topics; feeds: bio: empty (no preprints posted" in table
