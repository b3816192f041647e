"""Schema migrations for both ledger backends, by Alembic (scripts in ``migrations/``).

Owns: ``migrate`` (bring a database to ``HEAD``: fast when it is there already, one plain query,
so opening a ledger does not import Alembic), ``create_sqlite`` (a new SQLite file made from the
snapshot of what the migrations build), the ledger-specific Alembic environment handed to
``migrations/env.py``, and the rule that a database stamped by a newer paper-digest is refused
rather than written. Ledgers made before Alembic (a SQLite ``user_version`` of 1, no
``alembic_version`` table) are upgraded in place: the baseline revision is exactly that schema,
created only where missing. May import models and errors.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from digest.errors import LedgerError
from digest.models import PostgresDatabase

HEAD = "0005"
KNOWN = ("0001", "0002", "0003", "0004", "0005")  # every revision this one can read
SCRIPTS = Path(__file__).resolve().parent / "migrations"
SNAPSHOT = SCRIPTS / "sqlite_head.sql"  # the SQLite schema at HEAD (``create_sqlite``)
LEGACY = 2  # the last ``user_version`` written before Alembic (2: the uncertain state)


def _check(where: Path | str, version: str | None) -> bool:
    """True when at HEAD; raise when written by a newer paper-digest."""
    if version == HEAD:
        return True
    if version is not None and version not in KNOWN:
        raise LedgerError(where, f"written by a newer paper-digest (schema revision "
                             f"{version}; this one knows up to {HEAD})")
    return False


def migrate(database: Path | PostgresDatabase, conn: Any) -> None:
    """Bring the ledger behind ``conn`` (an open ``sqlite3`` or ``psycopg`` connection to
    ``database``) to ``HEAD``."""
    if isinstance(database, PostgresDatabase):
        _migrate_postgres(database, conn)
    else:
        _migrate_sqlite(database, conn)


def sqlite_schema(conn: sqlite3.Connection) -> str:
    """The schema of the SQLite ledger behind ``conn`` as the script ``create_sqlite`` runs:
    every table and index in the order they were made, its ``user_version`` and revision."""
    version = _sqlite_version(conn)
    legacy = int(conn.execute("PRAGMA user_version").fetchone()[0])
    lines = [f"-- The SQLite ledger at revision {version}, as its migrations build it: a new",
             "-- file is made from this (digest/ledger/_migrate.py, create_sqlite). Written by",
             "-- scripts/ledger-snapshot; tests/ledger/test_snapshot.py checks it.", ""]
    for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                               "ORDER BY rowid"):
        lines.append(f"{sql};")
    lines.append(f"PRAGMA user_version = {legacy};")
    lines.append(f"INSERT INTO alembic_version (version_num) VALUES ('{version}');")
    return "\n".join(lines) + "\n"


def create_sqlite(path: Path, conn: sqlite3.Connection) -> None:
    """A new, empty SQLite ledger made at ``HEAD`` in one transaction from ``SNAPSHOT``, what
    the migrations build (as a new Rails database loads its schema instead of replaying every
    migration): no SQLAlchemy or Alembic to import, 0.7 s less for a first run. Without a
    snapshot at ``HEAD``, the migrations run."""
    try:
        script = SNAPSHOT.read_text(encoding="utf-8")
    except OSError:
        script = ""
    if f"VALUES ('{HEAD}');" not in script:
        migrate(path, conn)
        return
    conn.executescript(f"BEGIN IMMEDIATE;\n{script}COMMIT;\n")


def _upgrade(connection: Any) -> None:
    import logging

    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per plugin otherwise

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_version(conn: sqlite3.Connection) -> str | None:
    try:
        found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table: new, or made before Alembic
        return None
    return None if found is None else str(found[0])


def _migrate_sqlite(path: Path, conn: sqlite3.Connection) -> None:
    if _check(path, _sqlite_version(conn)):
        return
    legacy = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if legacy > LEGACY and _sqlite_version(conn) is None:
        raise LedgerError(path, f"written by a newer paper-digest (schema {legacy})")
    import sqlalchemy
    from sqlalchemy.pool import StaticPool

    # The write lock first, so two processes opening a new file cannot both migrate it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _check(path, _sqlite_version(conn)):  # another process won the race
            conn.execute("COMMIT")
            return
        engine = sqlalchemy.create_engine("sqlite://", creator=lambda: conn,
                                          poolclass=StaticPool)
        with engine.connect() as connection:
            _upgrade(connection)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if conn.in_transaction:
        conn.execute("COMMIT")


def _migrate_postgres(database: PostgresDatabase, conn: Any) -> None:
    import psycopg

    try:
        found = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        version = None
        if found and found[0]:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            version = None if row is None else str(row[0])
    except psycopg.Error as exc:
        raise LedgerError(database.url, f"cannot read the schema version ({exc})") from exc
    if _check(database.url, version):
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    # Its own connection in a transaction: DDL on PostgreSQL is transactional, and env.py
    # takes an advisory lock in it so concurrent workers migrate one at a time.
    engine = sqlalchemy.create_engine("postgresql+psycopg://", poolclass=NullPool,
                                      creator=lambda: psycopg.connect(database.url))
    try:
        with engine.connect() as connection:
            _upgrade(connection)
    except sqlalchemy.exc.DBAPIError as exc:
        raise LedgerError(database.url, f"migration failed ({exc.orig})") from exc
    finally:
        engine.dispose()
