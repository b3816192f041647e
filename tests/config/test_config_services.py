"""settings.database as a PostgreSQL URL and settings.queue (a RabbitMQ broker): accepted forms
and the exact error text of the refused ones."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from digest.config import load_config
from digest.errors import ConfigError
from digest.models import Config, PostgresDatabase

NAME = "subscribers.yaml"
SUBS = """subscribers:
  - email: ada@example.org
    topics: [diffusion]
"""


def load(folder: Path, settings: str, env: dict[str, str] | None = None) -> Config:
    (folder / NAME).write_text(textwrap.dedent(settings).lstrip("\n") + SUBS, encoding="utf-8")
    return load_config(folder / NAME, environ=env or {})


def problems(folder: Path, settings: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(folder, settings, env)
    return [str(p).replace(str(folder / NAME), NAME) for p in info.value.problems]


def test_database_is_a_file_by_default_and_a_url_when_given(tmp_path: Path) -> None:
    assert load(tmp_path, "").settings.database == tmp_path / "digest.db"
    config = load(tmp_path, """
        settings:
          database: postgres://db.example.org:5432/digest?sslmode=require
          queue: amqp://digest@mq.example.org:5672/digest
        """)
    assert config.settings.database == PostgresDatabase(
        "postgresql://db.example.org:5432/digest?sslmode=require")
    assert config.settings.queue == "amqp://digest@mq.example.org:5672/digest"


def test_refused_database_and_queue_values(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        settings:
          database: postgresql://digest:hunter2@db.example.org/digest
          queue: amqp://guest:guest@127.0.0.1//
        """) == [
        f"{NAME}:2: settings.database: never put secrets in the YAML: remove the password "
        "from the URL; PostgreSQL clients read it from the PGPASSWORD environment variable "
        "or ~/.pgpass",
        f"{NAME}:3: settings.queue: never put secrets in the YAML: remove it, put the broker "
        "password in an environment variable and give that variable's name in "
        "queue_password_env (e.g. queue_password_env: DIGEST_QUEUE_PASSWORD)",
    ]
    assert problems(tmp_path, """
        settings:
          database: mysql://db.example.org/digest
        """) == [f"{NAME}:2: settings.database: expected a SQLite file or a postgresql:// "
                 "URL, got a mysql:// URL"]


def test_queue_needs_a_shared_ledger_and_its_password_variable(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        settings:
          queue: amqp://127.0.0.1//
          queue_password_env: DIGEST_QUEUE_PASSWORD
        """) == [
        f"{NAME}:2: settings.queue: needs settings.database to be a postgresql:// URL "
        "(workers on other machines share the ledger; a SQLite file cannot be shared)",
        f"{NAME}:3: settings.queue_password_env: environment variable DIGEST_QUEUE_PASSWORD "
        "is not set (the password of the settings.queue broker)",
    ]
    config = load(tmp_path, """
        settings:
          database: postgresql://127.0.0.1/test
          queue: amqp://127.0.0.1//
          queue_password_env: DIGEST_QUEUE_PASSWORD
        """, env={"DIGEST_QUEUE_PASSWORD": "s3cret"})
    assert config.settings.queue_password_env == "DIGEST_QUEUE_PASSWORD"
