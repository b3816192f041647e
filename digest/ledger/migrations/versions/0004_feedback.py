"""Feedback: ``digest feedback EMAIL --more/--less ID``, one verdict per (subscriber, paper),
kept with the paper's title and abstract so a paper of an earlier day can be compared with
today's (the selection's likes and dislikes). Additive: one new table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "feedback",
        sa.Column("email", sa.Text, nullable=False),  # lower-cased address
        sa.Column("paper_id", sa.Text, nullable=False),
        sa.Column("verdict", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("abstract", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True) if postgres else sa.Text,
                  nullable=False),
        sa.PrimaryKeyConstraint("email", "paper_id"),
        sa.CheckConstraint("verdict IN ('more', 'less')", name="feedback_verdict_check"),
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup instead")
