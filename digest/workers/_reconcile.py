"""The reconciler: tasks that were lost, or must run again, are published again.

Owns: ``reconcile_once`` and the reconciler process beside every ``digest worker``
(``start_reconciler``: a pass every ``every`` seconds). A row is re-published when it is ``queued`` for longer than
``requeue_after`` (its task was lost: a publish that failed, a purged queue), ``sending`` with
an expired lease (its worker died; the task that came back found the lease still live and
skipped), or ``deferred`` and last published ``retry_after`` seconds ago (a 4xx: the retry is
ledger state, never a Celery ETA/countdown, which RabbitMQ would hold unacked). The ledger
hands each stale row to one reconciler (``FOR UPDATE SKIP LOCKED``), and a duplicate task is
harmless anyway: the claim lets one through.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from digest.errors import DigestError
from digest.ledger import PostgresLedger
from digest.models import PostgresDatabase, Settings
from digest.workers._app import Job
from digest.workers._enqueue import publish

log = logging.getLogger(__name__)

REQUEUE_AFTER = 1800.0  # a queued row this old lost its task (RabbitMQ's consumer_timeout)
RETRY_AFTER = 300.0  # a deferred row is retried this long after its last attempt


def reconcile_once(database: PostgresDatabase, app: Any, *, requeue_after: float,
                   retry_after: float, clock: Callable[[], datetime]) -> int:
    """Re-publish every stale row once; returns how many."""
    with PostgresLedger(database) as ledger:
        stale = ledger.stale(requeue_after=requeue_after, retry_after=retry_after)
    if not stale:
        return 0
    now = clock()
    try:
        count = publish(app, (Job(r.email, r.edition, r.run, now) for r in stale))
    except DigestError:  # the broker stayed down: hand these rows out again next pass
        with PostgresLedger(database) as ledger:
            ledger.release_stale(stale)
        raise
    log.info("re-published %d stale task%s", count, "" if count == 1 else "s")
    return count


def reconcile_forever(settings: Settings, environ: dict[str, str], *, every: float,
                      requeue_after: float, retry_after: float, parent: int) -> None:
    """A reconciler process's life: a pass every ``every`` seconds until its parent (the
    worker) is gone. Its own process, started by spawn: the worker's prefork pool forks, and a
    thread (with its locks and connections) beside a fork is a deadlock waiting to happen."""
    from digest.workers._app import make_app

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s reconciler %(levelname)s %(message)s")
    database = settings.database
    assert isinstance(database, PostgresDatabase)
    app = make_app(settings, environ)
    try:
        while os.getppid() == parent:
            time.sleep(every)
            try:
                reconcile_once(database, app, requeue_after=requeue_after,
                               retry_after=retry_after, clock=lambda: datetime.now(UTC))
            except Exception:  # noqa: BLE001  the database or broker away: next pass
                log.exception("reconciling stale tasks failed; trying again in %.0f s", every)
    finally:
        app.close()


def start_reconciler(settings: Settings, environ: Mapping[str, str], *, every: float,
                     requeue_after: float = REQUEUE_AFTER,
                     retry_after: float = RETRY_AFTER) -> Any:
    """The reconciler as a spawned child process of the caller (returned, started)."""
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(
        target=reconcile_forever, name="digest-reconciler", daemon=True,
        args=(settings, dict(environ)),
        kwargs={"every": every, "requeue_after": requeue_after, "retry_after": retry_after,
                "parent": os.getpid()})
    proc.start()
    return proc
