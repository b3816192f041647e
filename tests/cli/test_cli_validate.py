"""``digest validate``: exit codes 0/1/2, every problem printed, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "subscribers.example.yaml"
BAD = """\
settings:
  delivery: smpt
subscribers:
  - email: ada@example.org
    topics: [diffusion]
  - email: ADA@example.org
    schedule: "0 25 * * *"
    topics: []
"""
BAD_LINES = [
    "subscribers.yaml:2: settings.delivery: expected one of outbox, smtp, got 'smpt' "
    "(did you mean 'smtp'?)",
    "subscribers.yaml:6: subscribers[1].email: duplicate subscriber 'ADA@example.org' "
    "(first at line 4, subscribers[0]); addresses are compared ignoring case",
    "subscribers.yaml:7: subscribers[1].schedule: invalid cron expression '0 25 * * *': "
    "hour field '25': 25 is out of range 0-23",
    "subscribers.yaml:8: subscribers[1].topics: expected at least one topic, got an empty list",
    "subscribers.yaml: 4 problems",
]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner working in an empty folder, with no DIGEST_CONFIG set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    return CliRunner()


def run(runner: CliRunner, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return runner.invoke(main, ["validate", *args], prog_name="digest", env=env)


def test_valid_file_prints_a_one_line_summary(runner: CliRunner) -> None:
    Path("subscribers.example.yaml").write_text(EXAMPLE.read_text())
    result = run(runner, "subscribers.example.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout == "subscribers.example.yaml: OK, 4 subscribers, 9 topics, " \
                            "delivery outbox\n"
    assert result.stderr == ""


def test_every_problem_on_stderr_and_exit_1(runner: CliRunner) -> None:
    Path("subscribers.yaml").write_text(BAD)
    result = run(runner, "subscribers.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == BAD_LINES
    assert result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_default_path_and_digest_config_env(runner: CliRunner) -> None:
    Path("subscribers.yaml").write_text("subscribers:\n  - {email: a@example.org, "
                                        "topics: [x]}\n")
    Path("other.yaml").write_text("subscribers: []\n")
    result = run(runner)
    assert (result.exit_code, result.stdout) == (
        0, "subscribers.yaml: OK, 1 subscriber, 1 topic, delivery outbox\n")
    result = run(runner, env={"DIGEST_CONFIG": "other.yaml"})
    assert (result.exit_code, result.stdout) == (
        0, "other.yaml: OK, 0 subscribers, 0 topics, delivery outbox\n")


def test_missing_file_is_a_user_error_not_a_usage_error(runner: CliRunner) -> None:
    result = run(runner, "nope.yaml")
    assert result.exit_code == 1
    assert result.stderr == "nope.yaml: no such file (start from subscribers.example.yaml)\n"


def test_usage_errors_exit_2(runner: CliRunner) -> None:
    result = run(runner, "a.yaml", "b.yaml")
    assert result.exit_code == 2
    assert "Got unexpected extra argument (b.yaml)" in result.stderr
    assert run(runner, "--no-such-option").exit_code == 2


def test_help_has_an_example(runner: CliRunner) -> None:
    result = run(runner, "--help")
    assert result.exit_code == 0
    assert "digest validate subscribers.example.yaml" in result.stdout
    assert "Usage: digest validate [OPTIONS] [CONFIG]" in result.stdout


def test_real_subprocess_no_traceback(tmp_path: Path) -> None:
    """The installed console script, as a user runs it: exit 1 with only the problems."""
    digest = Path(sys.executable).parent / "digest"
    (tmp_path / "subscribers.yaml").write_text(BAD)
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    bad = subprocess.run([str(digest), "validate"], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == BAD_LINES
    assert "Traceback" not in bad.stderr + bad.stdout
    assert bad.stdout == ""


def test_validate_warns_about_unsubscribed_addresses_still_in_the_file(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from click.testing import CliRunner

    from digest.cli import main
    from digest.ledger import Ledger

    path = tmp_path / "subscribers.yaml"
    path.write_text("subscribers:\n  - email: ada@example.org\n    topics: [llm]\n"
                    "  - email: Bob@Example.org\n    topics: [diffusion]\n", encoding="utf-8")
    clean = CliRunner().invoke(main, ["validate", str(path)])
    assert clean.exit_code == 0 and "warning" not in clean.output
    assert not (tmp_path / "digest.db").exists()  # validating never creates the ledger
    with Ledger(tmp_path / "digest.db") as ledger:
        ledger.suppress("bob@example.org", now=datetime(2026, 11, 25, tzinfo=UTC))
    warned = CliRunner().invoke(main, ["validate", str(path)])
    assert warned.exit_code == 0
    assert (f"{path}:4: subscribers[1].email: warning: Bob@example.org unsubscribed (recorded in "
            "digest.db) and gets nothing; remove the entry, or run "
            "'digest unsubscribe --undo Bob@example.org'") in warned.output
    assert "ada@example.org" not in warned.output.split("OK")[0]


def test_papers_measure_the_terms_and_warn_on_stderr(runner: CliRunner) -> None:
    Path("subscribers.yaml").write_text(
        "subscribers:\n"
        "  - email: ada@example.org\n"
        "    topics: ['=pretrained', 'zebra crossing']\n")
    papers = [{"id": f"p{i}", "title": "Pre-trained models" if i else "Pretrained models",
               "abstract": "Text."} for i in range(3)]
    Path("papers.json").write_text(json.dumps(papers))
    result = run(runner, "--papers", "papers.json")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "subscribers.yaml:2: subscribers[0].topics[0].include[0]: warning: '=pretrained' "
        "found 1 paper, 'pretrained' 3",
        "subscribers.yaml:2: subscribers[0].topics[1].include[0]: warning: 'zebra crossing' "
        "is in none of today's 3 papers"]
    assert result.stdout.startswith("subscribers.yaml: OK, 1 subscriber")
    # the same warnings from `digest plan`, on stderr; none with --json (scripts read it)
    plan = runner.invoke(main, ["plan", "--papers", "papers.json"], prog_name="digest")
    assert plan.exit_code == 0, plan.output
    assert plan.stderr == result.stderr
    as_json = runner.invoke(main, ["plan", "--papers", "papers.json", "--json"],
                            prog_name="digest")
    assert as_json.stderr == ""
    assert json.loads(as_json.output)["subscribers"][0]["email"] == "ada@example.org"
