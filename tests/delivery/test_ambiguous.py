"""Ambiguous sends: a server that stores the message but answers the final "." after the client
stopped waiting. The outcome is unknown, so it is never retried inside the run, re-sent at
most once ever (same bytes, same Message-ID), then held ``uncertain`` for the admin, who
resolves it with ``digest resolve``. Per-stage timeouts: the reply to the final "." gets
``smtp.data_timeout`` (RFC 5321 4.5.3.2: 10 minutes), the other commands ``smtp.timeout``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from click.testing import CliRunner
from smtp_server import SmtpTestServer

from digest.cli import main
from digest.ledger import Ledger

NOW = "2026-11-25T09:00:00Z"
EMAILS = ("ada@example.org", "bob@example.org")


def write_config(tmp_path: Path, port: int, *, timeout: float, data_timeout: float) -> Path:
    papers = [{"id": f"2611.0000{i}", "title": f"A {what} model",
               "abstract": f"We build a {what} model. It is {i}0% better than before."}
              for i, what in enumerate(("diffusion", "language", "world"), start=1)]
    (tmp_path / "papers.json").write_text(json.dumps(papers), encoding="utf-8")
    subs = "".join(f"  - email: {e}\n    topics: [model]\n" for e in EMAILS)
    path = tmp_path / "subscribers.yaml"
    path.write_text(f"""settings:
  sender: "Paper Digest <digest@example.org>"
  delivery: smtp
  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: {timeout},
          data_timeout: {data_timeout}, connections: 1}}
  feed: {{source: file, path: papers.json}}
subscribers:
{subs}""", encoding="utf-8")
    return path


def send(cfg: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["send", "-c", str(cfg), "--now", NOW])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_a_late_final_reply_is_sent_at_most_twice_then_held_uncertain(tmp_path: Path) -> None:
    with SmtpTestServer(stall_seconds=1.0) as server:
        server.add_rule("data", "250 2.0.0 OK (late)", action="late")
        cfg = write_config(tmp_path, server.port, timeout=5, data_timeout=0.3)
        for _run in range(4):
            send(cfg)
            copies = Counter(m.rcpt_tos[0] for m in server.messages)
            assert max(copies.values()) <= 2, copies
        assert copies == {e: 2 for e in EMAILS}
        ids = {e: {str(m.message["Message-ID"]) for m in server.messages if m.rcpt_tos[0] == e}
               for e in EMAILS}
        assert all(len(v) == 1 for v in ids.values()), ids  # the re-send is the same message
        first, second = (m.data for m in server.messages if m.rcpt_tos[0] == EMAILS[0])
        assert first == second
    with Ledger(tmp_path / "digest.db") as ledger:
        assert {r.email: r.state for r in ledger.rows()} == {e: "uncertain" for e in EMAILS}

    history = CliRunner().invoke(main, ["history", "-c", str(cfg)])
    assert history.exit_code == 0
    assert history.output.count("uncertain") >= 2
    assert "digest resolve" in history.output

    edition = "2026-11-25"
    done = CliRunner().invoke(main, ["resolve", "-c", str(cfg), EMAILS[0], edition, "--sent"])
    assert done.exit_code == 0, done.output
    again = CliRunner().invoke(main, ["resolve", "-c", str(cfg), EMAILS[1], edition, "--resend"])
    assert again.exit_code == 0, again.output
    with SmtpTestServer() as server:  # a healthy server now
        cfg = write_config(tmp_path, server.port, timeout=5, data_timeout=5)
        code, output = send(cfg)
        assert code == 0, output
        assert [m.rcpt_tos[0] for m in server.messages] == [EMAILS[1]]
    with Ledger(tmp_path / "digest.db") as ledger:
        assert {r.email: r.state for r in ledger.rows()} == {e: "sent" for e in EMAILS}
    wrong = CliRunner().invoke(main, ["resolve", "-c", str(cfg), EMAILS[0], edition, "--sent"])
    assert wrong.exit_code == 1 and "not uncertain" in wrong.output


def test_the_final_reply_gets_its_own_longer_timeout(tmp_path: Path) -> None:
    with SmtpTestServer(stall_seconds=0.6) as server:
        server.add_rule("data", "250 2.0.0 OK (late)", action="late")
        cfg = write_config(tmp_path, server.port, timeout=0.3, data_timeout=5)
        code, output = send(cfg)
        assert code == 0, output
        assert Counter(m.rcpt_tos[0] for m in server.messages) == {e: 1 for e in EMAILS}
    with Ledger(tmp_path / "digest.db") as ledger:
        assert {r.state for r in ledger.rows()} == {"sent"}
