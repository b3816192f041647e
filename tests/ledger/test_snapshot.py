"""A new SQLite ledger is made from ``migrations/sqlite_head.sql``: that file is what the
Alembic migrations build (regenerate with scripts/ledger-snapshot), and a ledger made from it
is the same schema, revision and version as one the migrations made."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

from digest.ledger import Ledger
from digest.ledger._migrate import HEAD, SNAPSHOT, create_sqlite, migrate, sqlite_schema


def _by_migrations(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(path, conn)
    return conn


def _shape(conn: sqlite3.Connection) -> tuple[object, ...]:
    return (conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                         "ORDER BY rowid").fetchall(),
            conn.execute("PRAGMA user_version").fetchone(),
            conn.execute("SELECT version_num FROM alembic_version").fetchall())


def test_the_snapshot_is_what_the_migrations_build(tmp_path: Path) -> None:
    conn = _by_migrations(tmp_path / "m.db")
    assert sqlite_schema(conn) == SNAPSHOT.read_text(encoding="utf-8"), \
        "a migration changed the schema: run scripts/ledger-snapshot"
    assert f"VALUES ('{HEAD}');" in SNAPSHOT.read_text(encoding="utf-8")


def test_a_ledger_made_from_it_is_the_one_the_migrations_make(tmp_path: Path) -> None:
    migrated = _by_migrations(tmp_path / "m.db")
    made = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    create_sqlite(tmp_path / "s.db", made)
    assert _shape(made) == _shape(migrated)
    assert _shape(made)[2] == [(HEAD,)]


def test_a_new_ledger_file_works_and_is_at_head(tmp_path: Path) -> None:
    now = datetime(2026, 11, 25, 7, tzinfo=timezone.utc)
    with Ledger(tmp_path / "digest.db") as ledger:
        ledger.begin("a@example.org", date(2026, 11, 25), message_id="<1@x>", papers=("p",),
                     data=b"bytes", now=now)
        ledger.mark_sent("a@example.org", date(2026, 11, 25), now=now)
        assert ledger.get("a@example.org", date(2026, 11, 25)).state == "sent"  # type: ignore[union-attr]
    conn = sqlite3.connect(tmp_path / "digest.db")
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    assert _shape(conn)[0] == _shape(_by_migrations(tmp_path / "m.db"))[0]
