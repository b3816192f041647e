"""The Celery application: one broker queue per ledger, settings that make a lost worker
harmless.

Owns: ``make_app`` (broker URL with the password from its environment variable, the queue
name derived from the ledger so two deployments on one broker never share tasks), the task
name and the payload shape (``Job``), and the limits: a task's hard time limit well under
RabbitMQ's ``consumer_timeout`` (30 min by default, after which the broker closes the channel
of a consumer that has not acked) and a claim lease longer than that time limit, so a live
worker's lease never expires under it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from digest.errors import DigestError
from digest.models import PostgresDatabase, Settings

TASK = "digest.deliver"
TIME_LIMIT = 300.0  # seconds; RabbitMQ's consumer_timeout is 1,800 s by default
LEASE = 360.0  # seconds a claim holds; longer than TIME_LIMIT


@dataclass(frozen=True)
class Job:
    """One task: deliver ``email``'s ``edition`` from frozen edition ``run``; ``now`` is the
    moment the edition was queued (or re-published), the time every timestamp uses."""

    email: str
    edition: date
    run: str | None
    now: datetime

    def payload(self) -> dict[str, str | None]:
        return {"email": self.email, "edition": self.edition.isoformat(), "run": self.run,
                "now": self.now.isoformat()}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Job:
        """The task's JSON back to a ``Job``; ``ValueError`` if it is not one of ours."""
        try:
            now = datetime.fromisoformat(str(data["now"]))
            run = data.get("run")
            job = cls(email=str(data["email"]), edition=date.fromisoformat(str(data["edition"])),
                      run=None if run is None else str(run), now=now)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a digest task payload: {data!r}") from exc
        if now.tzinfo is None:
            raise ValueError(f"not a digest task payload (naive time): {data!r}")
        return job


def queue_name(database: PostgresDatabase) -> str:
    """The broker queue of the workers of this ledger (a digest of its URL)."""
    return "paper-digest." + hashlib.sha256(database.url.encode("utf-8")).hexdigest()[:16]


def broker_url(settings: Settings, environ: Mapping[str, str]) -> str:
    """``settings.queue`` with the password from ``settings.queue_password_env``, if any."""
    url = settings.queue
    if url is None:
        raise DigestError("settings.queue is not set: there is no broker to use")
    name = settings.queue_password_env
    if not name:
        return url
    secret = environ.get(name)
    if not secret:
        raise DigestError(f"environment variable {name} is not set (the password of the "
                          "settings.queue broker)")
    parts = urlsplit(url)
    user = parts.username or "guest"
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(secret, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def make_app(settings: Settings, environ: Mapping[str, str], *,
             time_limit: float = TIME_LIMIT) -> Any:
    """A Celery app for ``settings`` (which must have ``queue`` and a PostgreSQL database)."""
    from celery import Celery

    if not isinstance(settings.database, PostgresDatabase):
        raise DigestError("settings.queue needs settings.database to be a postgresql:// URL")
    queue = queue_name(settings.database)
    app = Celery("paper-digest", broker=broker_url(settings, environ), set_as_current=False)
    app.conf.update(
        # a task is acked only when it finished; a worker lost mid-task gives it back
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # what happens while the broker is gone: finish the task (the ack is lost, the task
        # comes again and the ledger's claim skips it) rather than cancel it mid-send
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True, result_backend=None,
        task_time_limit=time_limit, task_soft_time_limit=max(1.0, time_limit - 30.0),
        task_default_queue=queue, task_default_exchange=queue, task_default_routing_key=queue,
        broker_connection_retry_on_startup=True, broker_connection_max_retries=None,
        worker_hijack_root_logger=False, worker_redirect_stdouts=False,
        worker_send_task_events=False, task_send_sent_event=False,
        worker_enable_remote_control=False,
        # no publisher confirms (they cost ~1 ms a task, 18 min of a 1,000,000 run): the
        # row is committed before its task is published, and a task the broker loses is
        # re-published by the reconciler (bench/bench_queue.py)
    )
    return app
