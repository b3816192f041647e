"""The ``uncertain`` state and the ``ambiguous`` count: an edition whose outcome stayed unknown
twice (no reply to the final ".", or in flight at a crash) is held until the admin resolves it.

SQLite cannot widen a CHECK constraint, so the deliveries table is copied, in the migration's
transaction; a ledger written by the paper-digest that introduced the state before migrations
existed (``user_version`` 2) already has it and is left as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

V1_COLUMNS = ("email, edition, state, message_id, papers, attempts, created_at, updated_at, "
              "sent_at, last_code, last_error, possible_duplicate, message")

SQLITE_DELIVERIES = """CREATE TABLE deliveries_v2 (
    email              TEXT NOT NULL,
    edition            TEXT NOT NULL,
    state              TEXT NOT NULL
                       CHECK (state IN ('sending', 'sent', 'deferred', 'failed', 'uncertain')),
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
    ambiguous          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (email, edition))"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check")
        op.execute("ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check CHECK (state IN "
                   "('queued', 'sending', 'sent', 'deferred', 'failed', 'uncertain'))")
        op.execute("ALTER TABLE deliveries ADD COLUMN ambiguous INTEGER NOT NULL DEFAULT 0")
        return
    columns = {row[1] for row in bind.execute(sa.text("PRAGMA table_info(deliveries)"))}
    if "ambiguous" not in columns:
        op.execute(SQLITE_DELIVERIES)
        op.execute(f"INSERT INTO deliveries_v2 ({V1_COLUMNS}) SELECT {V1_COLUMNS} FROM deliveries")
        op.execute("DROP TABLE deliveries")
        op.execute("ALTER TABLE deliveries_v2 RENAME TO deliveries")
        op.execute("CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state)")
        op.execute("CREATE INDEX IF NOT EXISTS deliveries_edition ON deliveries (edition)")
    op.execute("PRAGMA user_version = 2")  # what the paper-digest before Alembic checks


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup instead")
