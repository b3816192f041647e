"""The machine's real PostgreSQL and RabbitMQ, for the tests that need them.

PostgreSQL at 127.0.0.1:5432 (trust auth, database ``test``) and RabbitMQ at 127.0.0.1:5672
(guest/guest), as ``scripts/setup-dev`` makes sure of. Each test gets its own schema (and so its
own tables, advisory-lock keys and broker queue, all derived from the schema), dropped at the
end, so tests running at once never share a row. Unreachable services skip their tests, except
under ``CI=true``, where they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from digest.models import PostgresDatabase

PG_URL = "postgresql://127.0.0.1:5432/test"
AMQP_URL = "amqp://guest@127.0.0.1:5672//"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def need(service: str, port: int) -> None:
    if reachable("127.0.0.1", port):
        return
    message = f"{service} is not reachable on 127.0.0.1:{port} (run scripts/setup-dev)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def schema_url(schema: str) -> str:
    return f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"


def admin() -> object:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True)


@pytest.fixture
def pg_database() -> Iterator[PostgresDatabase]:
    """A fresh schema in the ``test`` database, as a ``settings.database`` value."""
    need("PostgreSQL", 5432)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield PostgresDatabase(schema_url(schema))
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            # end any session still in the schema's name (a killed worker's) before dropping
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def amqp_url() -> str:
    need("RabbitMQ", 5672)
    return AMQP_URL
