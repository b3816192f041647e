"""``digest send``, ``digest history`` and ``digest unsubscribe`` through click, with a real
YAML config, a small papers file, the real renderer, a real Maildir or aiosmtpd server."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

from click.testing import CliRunner, Result
from smtp_server import SmtpTestServer

from digest.cli import main
from digest.ledger import SendLock

NOW = "2026-11-25T09:00:00Z"

SUBSCRIBERS = """
subscribers:
  - email: ada@example.org
    name: Ada
    topics: [diffusion]
  - email: bob@example.org
    topics: [language model]
  - email: cy@example.org
    topics: [transformer]
"""


PAPERS = [
    {"id": "2611.00001", "title": "Diffusion transformers for video",
     "abstract": "We scale diffusion transformers to video. They beat U-Nets by 3 FID points."},
    {"id": "2611.00002", "title": "A small language model that reasons",
     "abstract": "We train a 1B language model. It matches 7B models on GSM8K (71% vs 70%)."},
    {"id": "2611.00003", "title": "Sparse attention in every transformer layer",
     "abstract": "We sparsify transformer attention. Memory drops by 40% at equal accuracy."},
]


def write_config(tmp_path: Path, smtp_port: int | None = None) -> Path:
    """A real YAML config; a three-paper feed file keeps each send fast (the bundled sample
    would cost a second of summarizing per run)."""
    delivery = ("delivery: outbox" if smtp_port is None else
                f"delivery: smtp\n  smtp: {{host: 127.0.0.1, port: {smtp_port}, "
                "security: none, timeout: 5}")
    (tmp_path / "papers.json").write_text(json.dumps(PAPERS), encoding="utf-8")
    path = tmp_path / "subscribers.yaml"
    path.write_text(f"""settings:
  sender: "Paper Digest <digest@example.org>"
  {delivery}
  feed: {{source: file, path: papers.json}}
{SUBSCRIBERS}""", encoding="utf-8")
    return path


def digest(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_send_twice_then_force(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    first = digest("send", "-c", str(cfg), "--now", NOW)
    assert first.exit_code == 0, first.output
    assert "│ sent                        │     3 │" in first.output
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert len(box) == 3
    again = digest("send", "-c", str(cfg), "--now", NOW)
    assert again.exit_code == 0
    assert "│ skipped: already sent       │     3 │" in again.output
    assert len(box) == 3
    forced = digest("send", "-c", str(cfg), "--now", NOW, "--force", "-s", "ADA@example.org")
    assert "│ sent                        │     1 │" in forced.output
    assert len(box) == 4


def test_dry_run_sends_and_records_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    result = digest("send", "-c", str(cfg), "--now", NOW, "--dry-run")
    assert result.exit_code == 0
    assert "│ would send                  │     3 │" in result.output
    assert not (tmp_path / "digest.db").exists() and not (tmp_path / "outbox").exists()


def test_history_table_and_json(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    empty = digest("history", "-c", str(cfg))
    assert empty.exit_code == 0 and "nothing sent yet" in empty.output
    assert not (tmp_path / "digest.db").exists()
    digest("send", "-c", str(cfg), "--now", NOW)
    table = digest("history", "-c", str(cfg))
    assert table.exit_code == 0
    assert table.output.count("2026-11-25") >= 3 and "bob@example.org" in table.output
    rows = json.loads(digest("history", "-c", str(cfg), "ada@example.org", "--json").output)
    assert [(r["email"], r["edition"], r["state"]) for r in rows] == [
        ("ada@example.org", "2026-11-25", "sent")]
    assert rows[0]["papers"] and rows[0]["message_id"].startswith("<digest.2026-11-25.")
    assert rows[0]["sent_at"] == "2026-11-25T09:00:00+00:00"
    two = json.loads(digest("history", "-c", str(cfg), "--json", "--limit", "2").output)
    assert [r["email"] for r in two] == ["ada@example.org", "bob@example.org"]


def test_unsubscribe_is_honoured_and_undone(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    result = digest("unsubscribe", "-c", str(cfg), "Bob@Example.org")
    assert result.output == "bob@example.org: unsubscribed, gets nothing from now on\n"
    assert digest("unsubscribe", "-c", str(cfg), "bob@example.org").output == (
        "bob@example.org was already unsubscribed\n")
    sent = digest("send", "-c", str(cfg), "--now", NOW)
    assert "│ skipped: suppressed         │     1 │" in sent.output
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert "bob@example.org" not in " ".join(str(m["To"]) for m in box)
    undo = digest("unsubscribe", "-c", str(cfg), "bob@example.org", "--undo")
    assert undo.output == "bob@example.org: will get digests again\n"
    assert "│ sent                        │     1 │" in digest(
        "send", "-c", str(cfg), "--now", NOW).output
    bad = digest("unsubscribe", "-c", str(cfg), "not an address")
    assert bad.exit_code == 2


def test_a_failure_exits_1_and_names_the_address(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "550 5.1.1 No such user here", recipient="cy@example.org")
        cfg = write_config(tmp_path, server.port)
        result = digest("send", "-c", str(cfg), "--now", NOW)
        assert result.exit_code == 1
        assert "│ failed                      │     1 │" in result.output
        assert "cy@example.org (2026-11-25): failed: cy@example.org, SMTP 550:" in result.output
        assert "No such user here" in result.output
        assert sorted(m.rcpt_tos[0] for m in server.messages) == ["ada@example.org",
                                                                 "bob@example.org"]


def test_header_injection_title_cannot_add_a_recipient(tmp_path: Path) -> None:
    """CVE-2024-6923's encoded-word newline through the whole pipeline to a real server."""
    papers = tmp_path / "evil.json"
    evil = "Diffusion =?UTF-8?Q?=0A?=Bcc: x@evil.example\r\nX-Evil: 1"
    papers.write_text(json.dumps([{"id": "2611.09999", "title": evil,
                                   "abstract": "We study diffusion. It works well."}]))
    with SmtpTestServer() as server:
        cfg = write_config(tmp_path, server.port)
        result = digest("send", "-c", str(cfg), "--now", NOW, "-p", str(papers))
        assert result.exit_code == 0, result.output
        [got] = server.messages
        assert got.rcpt_tos == ("ada@example.org",)
        names = [line.split(":", 1)[0].lower() for line in got.header_lines()]
        assert "bcc" not in names and "x-evil" not in names


def test_second_sender_gets_the_lock_message(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with SendLock(tmp_path / "digest.db"):
        result = CliRunner().invoke(main, ["send", "-c", str(cfg), "--now", NOW])
    assert result.exit_code == 1
    assert "error: another digest process (pid " in result.output
    assert "is sending with digest.db" in result.output


def test_user_errors(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    unknown = CliRunner().invoke(main, ["send", "-c", str(cfg), "-s", "zed@example.org"])
    assert unknown.exit_code == 1
    assert unknown.output.endswith("subscribers.yaml: no subscriber zed@example.org in this "
                                   "config\n")
    bad_now = CliRunner().invoke(main, ["send", "-c", str(cfg), "--now", "yesterday"])
    assert bad_now.exit_code == 2 and "ISO-8601" in bad_now.output


def test_a_manual_send_follows_each_subscribers_schedule(tmp_path: Path) -> None:
    import re

    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(
        "    name: Ada\n", "    name: Ada\n    schedule: \"0 7 * * mon-fri\"\n"))
    saturday = "2026-11-28T09:00:00Z"

    def count(output: str, label: str) -> int:
        match = re.search(rf"│ {re.escape(label)}\s*│\s*(\d+) │", output)
        assert match, output
        return int(match.group(1))

    first = digest("send", "-c", str(cfg), "--now", saturday)
    assert first.exit_code == 0, first.output
    assert count(first.output, "sent") == 2
    assert count(first.output, "skipped: not scheduled today") == 1
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert sorted(m["To"] for m in box) == ["bob@example.org", "cy@example.org"]
    # Naming the subscriber, or --ignore-schedule, is an explicit request that wins.
    named = digest("send", "-c", str(cfg), "--now", saturday, "-s", "ada@example.org")
    assert count(named.output, "sent") == 1
    everyone = digest("send", "-c", str(cfg), "--now", saturday, "--ignore-schedule")
    assert count(everyone.output, "skipped: already sent") == 3
    assert "not scheduled today" not in everyone.output


def test_an_outbox_send_says_where_the_mail_is(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    result = digest("send", "-c", str(cfg), "--now", NOW)
    assert f"3 emails written to the Maildir {tmp_path / 'outbox'}" in result.output.replace("\n", " ")
    again = digest("send", "-c", str(cfg), "--now", NOW)
    assert "written to the Maildir" not in again.output


def test_a_lost_ledger_is_not_silently_replaced(tmp_path: Path) -> None:
    """An emptied digest.db is refused as corrupt, and a missing one where earlier runs left
    their mark (a non-empty outbox, <db>.jobs) needs --new-ledger: otherwise every edition
    would be sent again without a word."""
    cfg = write_config(tmp_path)
    assert digest("send", "-c", str(cfg), "--now", NOW).exit_code == 0
    box = tmp_path / "outbox"
    sent = len(mailbox.Maildir(box))
    assert sent == 3
    db = tmp_path / "digest.db"
    db.write_bytes(b"")  # emptied (a bad restore, a full disk, a truncating editor)
    result = digest("send", "-c", str(cfg), "--now", NOW)
    assert result.exit_code == 1 and "is empty (0 bytes)" in result.output, result.output
    db.unlink()
    result = digest("send", "-c", str(cfg), "--now", NOW)
    assert result.exit_code == 1, result.output
    assert "--new-ledger" in result.output and "outbox" in result.output
    assert len(mailbox.Maildir(box)) == sent  # nothing sent again
    result = digest("send", "-c", str(cfg), "--now", NOW, "--new-ledger")
    assert result.exit_code == 0, result.output
    assert len(mailbox.Maildir(box)) == 2 * sent  # on purpose: the operator said so


def test_a_missing_ledger_beside_a_job_store_needs_new_ledger(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    (tmp_path / "digest.db.jobs").write_bytes(b"")
    result = digest("send", "-c", str(cfg), "--now", NOW)
    assert result.exit_code == 1 and "digest.db.jobs" in result.output, result.output
    assert not (tmp_path / "digest.db").exists()


def test_an_unwritable_database_folder_is_a_clean_error(tmp_path: Path) -> None:
    """As root a chmod'ed folder stays writable, so the folder here is a plain file: the same
    OSError path (the lock, then the ledger) a read-only folder takes."""
    cfg = write_config(tmp_path)
    (tmp_path / "ro").write_text("not a folder", encoding="utf-8")
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(
        "settings:\n", "settings:\n  database: ro/digest.db\n"), encoding="utf-8")
    result = CliRunner().invoke(main, ["send", "-c", str(cfg), "--now", NOW])
    assert result.exit_code == 1, result.output
    assert "error: " in result.output and "digest.db" in result.output
    assert "must be writable" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
