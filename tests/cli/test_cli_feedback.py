"""``digest feedback``: likes and dislikes recorded in a real SQLite ledger, read back by
``digest plan`` (likes bring "you may also like" papers), errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import main
from digest.ledger import Ledger

CONFIG = """\
settings:
  database: digest.db
subscribers:
  - email: Ada@Example.org
    topics: [learning]
"""
PAPERS = [
    {"id": "speech", "title": "Learning for streaming speech recognition",
     "abstract": "We train an end-to-end acoustic model for automatic speech recognition that "
                 "transcribes spoken audio with a lower word error rate on noisy recordings."},
    {"id": "asr2", "title": "Whisper-style transcription of accented English",
     "abstract": "An automatic speech recognition model transcribes spoken English audio; word "
                 "error rate falls on noisy accented recordings."},
    {"id": "images", "title": "Learning image classifiers",
     "abstract": "We train convolutional networks that label photographs of animals."},
]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    Path("subscribers.yaml").write_text(CONFIG)
    Path("papers.json").write_text(json.dumps(PAPERS))
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), prog_name="digest")


def test_feedback_is_recorded_and_the_plan_uses_it(runner: CliRunner) -> None:
    before = json.loads(run(runner, "plan", "--papers", "papers.json", "--json").stdout)
    assert before["subscribers"][0]["also"] == []
    done = run(runner, "feedback", "ada@example.org", "--more", "speech", "--less", "images",
               "--papers", "papers.json")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [
        "Ada@example.org: more like speech (Learning for streaming speech recognition)",
        "Ada@example.org: less like images (Learning image classifiers)"]
    with Ledger(Path("digest.db")) as ledger:
        got = ledger.feedback()
    assert list(got) == ["ada@example.org"]
    assert [p.id for p in got["ada@example.org"].more] == ["speech"]
    assert got["ada@example.org"].more[0].abstract.startswith("We train an end-to-end")
    after = json.loads(run(runner, "plan", "--papers", "papers.json", "--json").stdout)
    ada = after["subscribers"][0]
    assert [p["id"] for p in ada["also"]] == ["asr2"]
    assert ada["also"][0]["reasons"] == [
        "close to your paper «Learning for streaming speech recognition»"]
    assert [p["id"] for p in ada["papers"]][-1] == "images"  # disliked: last


def test_errors_are_clear(runner: CliRunner) -> None:
    nothing = run(runner, "feedback", "ada@example.org")
    assert nothing.exit_code == 2 and "at least one --more ID or --less ID" in nothing.stderr
    unknown = run(runner, "feedback", "zed@example.org", "--more", "speech",
                  "--papers", "papers.json")
    assert unknown.exit_code == 1 and "no subscriber 'zed@example.org'" in unknown.stderr
    missing = run(runner, "feedback", "ada@example.org", "--more", "nope",
                  "--papers", "papers.json")
    assert missing.exit_code == 1 and "no paper 'nope' in papers.json" in missing.stderr
    assert "Traceback" not in missing.output
