"""In-process delivery (no queue) with the ledger in PostgreSQL: ``digest send``, ``history``,
``unsubscribe`` and ``status`` behave as with the SQLite file, and the send lock is the
database's advisory lock."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from click.testing import CliRunner
from smtp_server import SmtpTestServer

from digest.cli import main
from digest.ledger import AdvisoryLock
from digest.models import PostgresDatabase

NOW = "2026-11-25T09:00:00Z"


def write_config(folder: Path, database: PostgresDatabase, port: int) -> Path:
    papers = [{"id": "2611.00001", "title": "A diffusion model",
               "abstract": "We build a diffusion model. It is 10% better than before."}]
    (folder / "papers.json").write_text(json.dumps(papers), encoding="utf-8")
    subs = "".join(f"  - email: reader{i}@example.org\n    topics: [model]\n" for i in range(5))
    path = folder / "subscribers.yaml"
    path.write_text(f"""settings:
  sender: "Paper Digest <digest@example.org>"
  database: {database.url}
  delivery: smtp
  smtp: {{host: 127.0.0.1, port: {port}, security: none, connections: 2}}
  feed: {{source: file, path: papers.json}}
subscribers:
{subs}""", encoding="utf-8")
    return path


def test_send_history_unsubscribe_status_on_postgres(tmp_path: Path,
                                                     pg_database: PostgresDatabase) -> None:
    runner = CliRunner()
    with SmtpTestServer() as server:
        cfg = write_config(tmp_path, pg_database, server.port)
        assert runner.invoke(main, ["unsubscribe", "-c", str(cfg), "reader4@example.org"]
                             ).exit_code == 0
        first = runner.invoke(main, ["send", "-c", str(cfg), "--now", NOW])
        assert first.exit_code == 0, first.output
        assert re.search(r"skipped: suppressed\s+│\s+1 ", first.output), first.output
        again = runner.invoke(main, ["send", "-c", str(cfg), "--now", NOW])
        assert again.exit_code == 0
        assert re.search(r"skipped: already sent\s+│\s+4 ", again.output), again.output
        assert Counter(m.rcpt_tos[0] for m in server.messages) == {
            f"reader{i}@example.org": 1 for i in range(4)}
        with AdvisoryLock(pg_database):  # another sender holds the database
            locked = runner.invoke(main, ["send", "-c", str(cfg), "--now", NOW])
        assert locked.exit_code == 1
        assert "another digest process (server pid" in locked.output
    history = runner.invoke(main, ["history", "-c", str(cfg), "--json"])
    rows = json.loads(history.output)
    assert sorted((r["email"], r["state"]) for r in rows) == [
        (f"reader{i}@example.org", "sent") for i in range(4)]
    status = runner.invoke(main, ["status", "-c", str(cfg), "--json"])
    assert json.loads(status.output) == [{
        "edition": "2026-11-25", "queued": 0, "sending": 0, "sent": 4, "deferred": 0,
        "failed": 0, "uncertain": 0, "possible_duplicates": 0,
        "oldest_lease": None}]
