"""The Alembic environment of the ledger: runs on the connection ``digest.ledger._migrate``
hands over (there is no alembic.ini; the URL never comes from a file). On PostgreSQL the
migration transaction first takes an advisory lock keyed on the schema, so workers starting
together migrate one after the other."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text(
            "SELECT pg_advisory_xact_lock(('x' || substr(md5(current_database() || '/' || "
            "current_schema() || '/paper-digest migrate'), 1, 16))::bit(64)::bigint)"))
    context.run_migrations()
