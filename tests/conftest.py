"""Shared pytest options. ``--update-golden`` rewrites tests/golden/* from the current output
(golden files change only when someone asks for it)."""

from __future__ import annotations

import pytest
from services import amqp_url, pg_database  # noqa: F401  (fixtures: real PostgreSQL, RabbitMQ)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files in tests/golden/ instead of comparing")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
