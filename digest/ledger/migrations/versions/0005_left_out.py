"""The matches an edition left out ("N more matched"), for ``digest serve``'s page of them:
written before the message leaves (a retry replays the same email), shown with and kept as
long as the edition's archive row. A new table only: nothing existing changes.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQLITE = (
    """CREATE TABLE IF NOT EXISTS left_out (
    email      TEXT NOT NULL,
    edition    TEXT NOT NULL,
    matches    BLOB NOT NULL,
    PRIMARY KEY (email, edition))""",
)

POSTGRES = (
    """CREATE TABLE left_out (
    email      TEXT NOT NULL,
    edition    DATE NOT NULL,
    matches    BYTEA NOT NULL,
    PRIMARY KEY (email, edition))""",
)


def upgrade() -> None:
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup instead")
