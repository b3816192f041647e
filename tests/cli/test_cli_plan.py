"""``digest plan``: both forms on the real seed papers and the example config, history and
suppressions read from a real SQLite ledger, errors without tracebacks, the documented shape."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import paths
import pytest
from click.testing import CliRunner, Result

from digest.cli import main
from digest.config import load_config
from digest.feeds import load_papers
from digest.ledger import Ledger
from digest.selection import plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "subscribers.example.yaml"
SEED = paths.SEED
DOC = REPO / "docs" / "plan-json.md"
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)

ONE = """\
settings:
  database: digest.db
subscribers:
  - email: Ada@Example.org
    name: Ada
    max_papers: 2
    topics:
      - name: Zeroth-order
        include: [zeroth-order]
  - email: bob@example.org
    topics: ["homomorphic encryption"]
"""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    Path("subscribers.example.yaml").write_text(EXAMPLE.read_text(encoding="utf-8"))
    Path("one.yaml").write_text(ONE)
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, ["plan", "--papers", str(SEED), *args], prog_name="digest")


def as_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_json_is_the_documented_shape_in_rank_order(runner: CliRunner) -> None:
    data = as_json(run(runner, "--config", "subscribers.example.yaml", "--json"))
    config = load_config(Path("subscribers.example.yaml"))
    expected = plan(load_papers(SEED), config.subscribers, {}, build_cuts=True)
    assert list(data) == ["subscribers"]
    assert [s["email"] for s in data["subscribers"]] == [s.email for s in config.subscribers]
    for got, want in zip(data["subscribers"], expected, strict=True):
        assert list(got) == ["email", "papers", "cut", "skipped_reason", "also"]
        assert got["skipped_reason"] is None
        assert [p["id"] for p in got["papers"]] == [p.paper.id for p in want.picks]
        assert [p["id"] for p in got["cut"]] == [p.paper.id for p in want.cut]
        assert len(got["papers"]) <= want.subscriber.max_papers
        for item in got["papers"] + got["cut"]:
            assert list(item) == ["id", "title", "topics", "reasons"]
            assert item["topics"] and item["reasons"]
            for reason in item["reasons"]:
                assert re.fullmatch(r"matched: .+ in (title|abstract)", reason), reason
    ada = data["subscribers"][0]
    genie = next(p for p in ada["papers"] if p["title"].startswith("Genie"))
    assert genie == {"id": genie["id"], "title": "Genie: Show Me the Data for Quantization",
                     "topics": ["Quantization"], "reasons": ["matched: quantization in title"]}


def test_human_form_shows_picks_reasons_and_the_cut(runner: CliRunner) -> None:
    result = run(runner, "--config", "subscribers.example.yaml")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for who in ("Ada <ada@example.org>", "Grace <grace@example.org>",
                "Linus <linus@example.org>", "Katherine <katherine@example.org>"):
        assert who in out
    assert "Ada <ada@example.org>  8 of 10 matching papers (max_papers 8)" in out
    assert "Genie: Show Me the Data for Quantization" in out
    assert "Quantization (quantization in title)" in out
    assert "segment anything (segment anything in title) · Quantization (quantization in abstract)" \
        in out  # TinySAM: two topics, each with its own terms
    assert "Mixture of experts (mixture of experts in title, MoE in title)" in out
    assert out.count("cut by max_papers:") == 4
    assert "Traceback" not in result.output


def test_one_subscriber_and_history_from_the_ledger(runner: CliRunner) -> None:
    before = as_json(run(runner, "--config", "one.yaml", "--json", "-s", "ada@example.org"))
    (ada,) = before["subscribers"]
    assert ada["email"] == "Ada@example.org"  # the config lower-cases the domain
    assert len(ada["papers"]) == 2 and len(ada["cut"]) == 1
    assert not Path("digest.db").exists()  # a plan creates nothing
    first = ada["papers"][0]["id"]
    with Ledger(Path("digest.db")) as ledger:
        ledger.begin("ada@example.org", date(2026, 11, 24), message_id="<m1@x>",
                     papers=(first,), data=None, now=NOW)
        ledger.mark_sent("ada@example.org", date(2026, 11, 24), now=NOW)
    after = as_json(run(runner, "--config", "one.yaml", "--json", "-s", "ADA@example.org"))
    ids = [p["id"] for p in after["subscribers"][0]["papers"]]
    assert first not in ids and ids == [p["id"] for p in ada["papers"][1:] + ada["cut"]]
    # Everything sent: no email, and the plan says why.
    with Ledger(Path("digest.db")) as ledger:
        ledger.begin("ada@example.org", date(2026, 11, 25), message_id="<m2@x>",
                     papers=tuple(ids), data=None, now=NOW)
        ledger.mark_sent("ada@example.org", date(2026, 11, 25), now=NOW)
    done = as_json(run(runner, "--config", "one.yaml", "--json", "-s", "ada@example.org"))
    assert done["subscribers"][0]["papers"] == [] and done["subscribers"][0]["cut"] == []
    assert done["subscribers"][0]["skipped_reason"] == "3 matching papers were already sent"
    human = run(runner, "--config", "one.yaml", "-s", "ada@example.org")
    assert "no email: 3 matching papers were already sent" in human.stdout


def test_no_match_and_unsubscribed(runner: CliRunner) -> None:
    data = as_json(run(runner, "--config", "one.yaml", "--json"))
    bob = data["subscribers"][1]
    assert bob == {"email": "bob@example.org", "papers": [], "cut": [],
                   "skipped_reason": "no new papers match your topics", "also": []}
    with Ledger(Path("digest.db")) as ledger:
        ledger.suppress("ada@example.org", now=NOW)
    data = as_json(run(runner, "--config", "one.yaml", "--json"))
    assert data["subscribers"][0]["papers"] == []
    assert data["subscribers"][0]["skipped_reason"].startswith("unsubscribed")


def test_unknown_subscriber_and_bad_now(runner: CliRunner) -> None:
    result = run(runner, "--config", "one.yaml", "-s", "nobody@example.org")
    assert result.exit_code == 1
    assert "no subscriber 'nobody@example.org'; known: Ada@example.org, bob@example.org" \
        in result.stderr
    assert "Traceback" not in result.output
    bad = run(runner, "--config", "one.yaml", "--now", "yesterday")
    assert bad.exit_code == 2 and "not an ISO-8601 date-time" in bad.stderr
    missing = run(runner, "--config", "nope.yaml")
    assert missing.exit_code == 1 and "nope.yaml" in missing.stderr


def test_help_and_docs_document_the_same_shape(runner: CliRunner) -> None:
    help_text = runner.invoke(main, ["plan", "--help"]).stdout
    assert '"skipped_reason": null' in help_text and "digest plan --config" in help_text
    doc = DOC.read_text(encoding="utf-8")
    example = json.loads(doc.split("```json", 1)[1].split("```", 1)[0])
    real = as_json(run(runner, "--config", "subscribers.example.yaml", "--json"))
    assert list(example) == list(real)
    doc_sub, real_sub = example["subscribers"][0], real["subscribers"][0]
    assert list(doc_sub) == list(real_sub)
    assert list(doc_sub["papers"][0]) == list(real_sub["papers"][0])
    for reason in ("no new papers match your topics", "matching papers were already sent",
                   "unsubscribed"):
        assert reason in doc


def test_without_papers_the_configured_feed_is_used(runner: CliRunner) -> None:
    # The example config's feed is the bundled sample: the 81 seed papers with their arXiv ids.
    args = ["plan", "--config", "subscribers.example.yaml", "--json", "--now", "2026-11-25T07:00Z"]
    from_feed = as_json(runner.invoke(main, args))
    bundled = REPO / "digest" / "data" / "sample_papers.json"
    from_file = as_json(runner.invoke(main, [*args, "--papers", str(bundled)]))
    assert from_feed == from_file
    ids = [p["id"] for s in from_feed["subscribers"] for p in s["papers"]]
    assert ids and all(re.fullmatch(r"\d{4}\.\d{4,5}", i) for i in ids), ids
