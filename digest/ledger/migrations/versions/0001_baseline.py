"""Baseline: the ledger as it was before Alembic (SQLite), and its PostgreSQL twin.

On SQLite every statement is ``IF NOT EXISTS``, so a ledger written before migrations existed
is adopted unchanged, with every row kept. PostgreSQL adds what queue workers need: the
``queued`` state, the claim (``claimed_by``, ``lease_until``, ``claimed_from``), the run a row
was queued with and when it was last published, frozen editions and the rate bucket.
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SQLITE = (
    """CREATE TABLE IF NOT EXISTS deliveries (
    email              TEXT NOT NULL,
    edition            TEXT NOT NULL,
    state              TEXT NOT NULL
                       CHECK (state IN ('sending', 'sent', 'deferred', 'failed')),
    message_id         TEXT,
    papers             TEXT NOT NULL DEFAULT '[]',
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    sent_at            TEXT,
    last_code          INTEGER,
    last_error         TEXT,
    possible_duplicate INTEGER NOT NULL DEFAULT 0,
    message            BLOB,
    PRIMARY KEY (email, edition))""",
    "CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state)",
    "CREATE INDEX IF NOT EXISTS deliveries_edition ON deliveries (edition)",
    """CREATE TABLE IF NOT EXISTS suppressions (
    email      TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    source     TEXT NOT NULL)""",
    "PRAGMA user_version = 1",  # what paper-digest before Alembic checks
)

POSTGRES = (
    """CREATE TABLE deliveries (
    email              TEXT NOT NULL,
    edition            DATE NOT NULL,
    state              TEXT NOT NULL
                       CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed')),
    message_id         TEXT,
    papers             TEXT NOT NULL DEFAULT '[]',
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    sent_at            TIMESTAMPTZ,
    last_code          INTEGER,
    last_error         TEXT,
    possible_duplicate BOOLEAN NOT NULL DEFAULT FALSE,
    message            BYTEA,
    run                TEXT,
    queued_at          TIMESTAMPTZ,
    claimed_by         TEXT,
    claimed_from       TEXT,
    lease_until        TIMESTAMPTZ,
    PRIMARY KEY (email, edition))""",
    "CREATE INDEX deliveries_state ON deliveries (state)",
    "CREATE INDEX deliveries_edition ON deliveries (edition)",
    """CREATE TABLE suppressions (
    email      TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    source     TEXT NOT NULL)""",
    """CREATE TABLE editions (
    run        TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    content    TEXT NOT NULL)""",
    """CREATE TABLE rate_buckets (
    name       TEXT PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL)""",
)


def upgrade() -> None:
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup instead")
