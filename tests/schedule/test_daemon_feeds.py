"""The daemon's log says why a fire sent nothing when there are several feeds: which were empty
(and why) and which were down. The feeds are fetched from a real server on 127.0.0.1 serving the
recordings into the day cache beside the database; the daemon's fire reads them from there."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paths
import pytest
from feed_server import Reply, feed_server

from digest.config import load_config
from digest.feeds import Endpoints, gather_for
from digest.feeds._http import RetryPolicy
from digest.ledger import Ledger
from digest.schedule import Daemon
from digest.schedule._daemon import FireResult

FIXTURES = paths.FIXTURES
NOW = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)  # an arXiv holiday (the recorded empty feed)


def test_the_log_names_the_empty_and_the_down_feeds(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("""settings:
  sender: "Digest <digest@example.org>"
  delivery: outbox
  feeds:
    - {name: phys, source: arxiv_rss, categories: [physics]}
    - {name: hf, source: huggingface}
subscribers:
  - email: a@example.org
    schedule: "0 7 * * *"
    topics: [diffusion]
""", encoding="utf-8")
    with feed_server() as server:
        server.route("/rss/physics", Reply(
            (FIXTURES / "arxiv_rss_physics_2025-12-31_empty.xml").read_bytes(),
            headers=(("Content-Type", "application/rss+xml"),)))
        server.route("/api/daily_papers", Reply(b"", 503))
        with httpx.Client(timeout=5) as client:
            gather_for(load_config(path).settings, None, NOW, client=client,
                       endpoints=Endpoints.at(server.url), retry=RetryPolicy(attempts=1),
                       sleep=lambda s: None)
    results: list[FireResult] = []
    done = threading.Event()

    def on_fire(result: FireResult) -> None:
        results.append(result)
        done.set()

    daemon = Daemon(path, environ={}, on_fire=on_fire, clock=lambda: NOW, poll=0.05)
    daemon.start()
    try:
        with caplog.at_level(logging.INFO, logger="digest.schedule"):
            daemon.fire("a@example.org", NOW.replace(hour=7))
        assert done.wait(5)
    finally:
        daemon.stop()
    (result,) = results
    assert result.outcome == "skipped"
    assert result.detail == ("no papers: feeds: phys: empty (holiday (nothing was announced on "
                             "2025-12-31)); hf: down (" + result.detail.split("hf: down (")[1])
    assert "HTTP 503" in result.detail
    assert any("phys: empty (holiday" in r.getMessage() for r in caplog.records)
    (skip,) = Ledger(tmp_path / "digest.db").skips()  # digest history lists the day too
    assert (skip.email, skip.reason) == ("a@example.org", "nothing new: the feeds have no papers")
