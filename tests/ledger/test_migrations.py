"""Alembic schema migrations: a ledger written before migrations existed upgrades in place with
every row kept; a ledger from a newer paper-digest is refused, never written; the revision the
code expects is the head of the migration scripts; workers starting together on PostgreSQL
migrate once."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import paths
import pytest

from digest.errors import LedgerError
from digest.ledger import SCHEMA_HEAD, Ledger, PostgresLedger
from digest.models import LeftOut, PostgresDatabase

V1 = paths.HANDMADE / "ledger-v1.db"
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
ED = NOW.date()


def test_head_is_the_last_migration_script() -> None:
    from alembic.script import ScriptDirectory

    from digest.ledger._migrate import SCRIPTS

    assert ScriptDirectory(str(SCRIPTS)).get_current_head() == SCHEMA_HEAD


def test_a_ledger_from_before_alembic_upgrades_without_loss(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    shutil.copy(V1, db)
    raw = sqlite3.connect(db)
    before = raw.execute("SELECT * FROM deliveries ORDER BY email").fetchall()
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'"
                       ).fetchone() is None
    raw.close()
    with Ledger(db) as ledger:
        rows = {r.email: r for r in ledger.rows()}
        assert {e: r.state for e, r in rows.items()} == {
            "ada@example.org": "sent", "bob@example.org": "deferred",
            "cy@example.org": "sending", "dee@example.org": "failed"}
        assert rows["cy@example.org"].possible_duplicate
        assert ledger.stored_message("bob@example.org", date(2026, 11, 25)) == \
            b"From: y\r\n\r\nbody two\r\n"
        assert ledger.history()["ada@example.org"] == frozenset({"2611.00001", "2611.00002"})
        assert ledger.suppressed() == frozenset({"eve@example.org"})
    raw = sqlite3.connect(db)
    # every row as it was, plus the column later revisions added (ambiguous, 0)
    assert raw.execute("SELECT * FROM deliveries ORDER BY email").fetchall() == \
        [(*r, 0) for r in before]
    assert raw.execute("PRAGMA user_version").fetchone() == (2,)  # what older code checks
    assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_HEAD,)]
    raw.close()


def test_a_ledger_of_the_previous_revision_gets_the_left_out_table(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    with Ledger(db) as ledger:
        ledger.begin("a@x.org", ED, message_id="<m>", papers=(), data=b"x", now=NOW)
        ledger.mark_sent("a@x.org", ED, now=NOW, archive=timedelta(days=3))
    raw = sqlite3.connect(db)  # the file as revision 0004 (the one before) left it
    raw.execute("DROP TABLE left_out")
    raw.execute("UPDATE alembic_version SET version_num = '0004'")
    raw.commit()
    raw.close()
    missed = (LeftOut(paper_id="p", title="T", authors="A", url="https://x.org/p"),)
    with Ledger(db) as ledger:  # a reader (digest serve) first, then a send
        assert ledger.archived_left_out("a@x.org", ED) is None
        assert [e.edition for e in ledger.archived("a@x.org")] == [ED]  # old rows intact
        later = ED + timedelta(days=1)
        ledger.begin("a@x.org", later, message_id="<n>", papers=(), data=b"y", now=NOW)
        ledger.keep_left_out("a@x.org", later, missed)
        ledger.mark_sent("a@x.org", later, now=NOW, archive=timedelta(days=3))
        assert ledger.archived_left_out("a@x.org", later) == missed
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_HEAD,)]
    raw.close()


def test_a_ledger_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    shutil.copy(V1, db)
    with Ledger(db) as ledger:
        ledger.suppressed()  # upgrade to head
    raw = sqlite3.connect(db)
    raw.execute("UPDATE alembic_version SET version_num = '9999'")
    raw.commit()
    raw.close()
    with pytest.raises(LedgerError, match=r"digest.db: written by a newer paper-digest "
                       r"\(schema revision 9999; this one knows up to "):
        Ledger(db).suppressed()


def test_postgres_schema_is_created_once_by_concurrent_openers(
        pg_database: PostgresDatabase) -> None:
    script = ("import sys; from digest.ledger import PostgresLedger; "
              "from digest.models import PostgresDatabase\n"
              "with PostgresLedger(PostgresDatabase(sys.argv[1])) as l: print(len(l.rows()))")
    procs = [subprocess.Popen([sys.executable, "-c", script, pg_database.url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert [o[0].strip() for o in outs] == ["0", "0", "0"]
    import psycopg

    with psycopg.connect(pg_database.url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == \
            [(SCHEMA_HEAD,)]
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    assert {"deliveries", "suppressions", "editions", "rate_buckets",
            "alembic_version"} <= tables
    with PostgresLedger(pg_database) as ledger:
        assert ledger.rows() == ()
