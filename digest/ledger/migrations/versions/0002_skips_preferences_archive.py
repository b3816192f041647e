"""Skips, preferences and the archive: why an edition sent nothing, what subscribers chose on
``digest serve``'s page, and the sent messages the web view renders.

On SQLite every table is ``IF NOT EXISTS``: ledgers written by paper-digest versions that
created these tables before migrations existed are adopted unchanged.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE = (
    """CREATE TABLE IF NOT EXISTS skips (
    email      TEXT NOT NULL,
    edition    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (email, edition))""",
    """CREATE TABLE IF NOT EXISTS preferences (
    email        TEXT PRIMARY KEY,
    paused_until TEXT,
    max_papers   INTEGER,
    updated_at   TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS archive (
    email      TEXT NOT NULL,
    edition    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sent_at    TEXT NOT NULL,
    message    BLOB NOT NULL,
    PRIMARY KEY (email, edition))""",
)

POSTGRES = (
    """CREATE TABLE skips (
    email      TEXT NOT NULL,
    edition    DATE NOT NULL,
    reason     TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (email, edition))""",
    """CREATE TABLE preferences (
    email        TEXT PRIMARY KEY,
    paused_until DATE,
    max_papers   INTEGER,
    updated_at   TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE archive (
    email      TEXT NOT NULL,
    edition    DATE NOT NULL,
    message_id TEXT NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL,
    message    BYTEA NOT NULL,
    PRIMARY KEY (email, edition))""",
)


def upgrade() -> None:
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup instead")
