"""``digest worker``: a Celery worker whose one task delivers one (subscriber, edition).

Owns: ``run_worker`` (registers the task on the app, starts the reconciler process, runs the
worker's prefork pool with ``concurrency`` processes until SIGTERM/SIGINT; a warm shutdown
finishes the tasks in flight). The task body is ``run_job``; its payload is JSON.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Mapping
from typing import Any

from digest.models import Config, PostgresDatabase
from digest.workers._app import LEASE, TASK, TIME_LIMIT, Job, make_app, queue_name
from digest.workers._reconcile import REQUEUE_AFTER, RETRY_AFTER, start_reconciler
from digest.workers._task import WorkerContext, run_job

log = logging.getLogger(__name__)


def register(app: Any, ctx: WorkerContext) -> Any:
    """The delivery task on ``app``, running in ``ctx``."""

    def deliver(job: dict[str, Any]) -> str:
        parsed = Job.from_payload(job)
        outcome = run_job(ctx, parsed)
        log.info("%s %s: %s", parsed.email, parsed.edition, outcome)
        return outcome

    return app.task(name=TASK, acks_late=True, reject_on_worker_lost=True,
                    ignore_result=True)(deliver)


def run_worker(config: Config, environ: Mapping[str, str], *, concurrency: int,
               lease: float = LEASE, time_limit: float = TIME_LIMIT,
               reconcile_every: float = 60.0, requeue_after: float = REQUEUE_AFTER,
               retry_after: float = RETRY_AFTER, loglevel: str = "INFO") -> int:
    """Serve tasks until stopped (blocks); returns the worker's exit code."""
    database = config.settings.database
    if not isinstance(database, PostgresDatabase):
        raise ValueError("queue workers need a PostgreSQL ledger")
    if lease <= time_limit:
        raise ValueError(f"the lease ({lease:g} s) must outlast the task time limit "
                         f"({time_limit:g} s), or a slow live task could be taken over")
    app = make_app(config.settings, environ, time_limit=time_limit)
    ctx = WorkerContext(config, environ, lease=lease)
    register(app, ctx)
    # Celery warns when run as root; the ledger, not pickle, is what crosses machines (JSON only).
    from celery.platforms import SecurityWarning

    warnings.filterwarnings("ignore", category=SecurityWarning)
    reconciler = start_reconciler(config.settings, environ, every=reconcile_every,
                                  requeue_after=requeue_after, retry_after=retry_after)
    try:
        worker = app.Worker(
            hostname=f"digest-{os.getpid()}@{socket.gethostname()}", pool_cls="prefork",
            concurrency=concurrency, loglevel=loglevel, queues=[queue_name(database)],
            without_gossip=True, without_mingle=True, without_heartbeat=True, quiet=True,
            optimization="fair")
        worker.start()
        return int(worker.exitcode or 0)
    finally:
        reconciler.terminate()
        reconciler.join(10)
