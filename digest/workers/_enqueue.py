"""The hand-off from a run to the workers: freeze the edition, write ``queued`` rows, publish.

Owns: ``QueueSender`` (the same for one fire of ``digest run``), ``enqueue_run`` (what ``digest send`` and ``digest run`` do when ``settings.queue`` is
set: the run's papers and their summaries stored once as a frozen edition, one ``queued`` row
and one task per due (subscriber, edition), under the database's send lock), ``publish`` (tasks
over one broker connection, each confirmed by the broker) and ``QueueReport``. Rows are written
before their tasks are published: a crash in between leaves ``queued`` rows that the reconciler
re-publishes, never a task without a row.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from digest.compose import edition_for, summarize_all
from digest.delivery import due
from digest.ledger import AdvisoryLock, PostgresLedger
from digest.errors import DigestError
from digest.models import (
    Config,
    Delivery,
    Outcome,
    Paper,
    PostgresDatabase,
    Settings,
    Subscriber,
    Summary,
)
from digest.workers._app import TASK, Job, make_app


@dataclass(frozen=True)
class QueueReport:
    """What a queued run did: how many tasks went to the broker, and why the rest did not."""

    run: str  # the frozen edition's id
    queued: int  # tasks published (new rows, and rows still owed from before)
    already: int  # rows already sent, failed or in flight: nothing to publish
    suppressed: int
    not_due: int


# how long a publisher waits for a broker that is away (a restart, a failover): retries at
# 0.5, 1.5, 2.5, 3.5, 4.5 s, then every 5 s, about a minute in all
BROKER_RETRY = {"max_retries": 15, "interval_start": 0.5, "interval_step": 1.0,
                "interval_max": 5.0}


def publish(app: Any, jobs: Iterable[Job]) -> int:
    """Publish one task per job over one connection; returns how many. Waits about a minute
    for a broker that is away (connecting, and again for a connection lost mid-way), then
    raises ``DigestError``: the rows stay ``queued`` for the next send or the reconciler."""
    from kombu.exceptions import OperationalError

    count = 0
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(**BROKER_RETRY)
            producer = app.amqp.Producer(conn, auto_declare=True)
            try:
                for job in jobs:
                    app.send_task(TASK, kwargs={"job": job.payload()}, producer=producer,
                                  retry=True, retry_policy=BROKER_RETRY)
                    count += 1
            finally:
                producer.release()
    except OperationalError as exc:
        raise DigestError(
            f"the broker (settings.queue) is unreachable: {exc}; {count} task(s) were "
            "published, the other rows stay queued: run the send again once it is back, or "
            "the workers' reconciler re-publishes them after --requeue-after") from None
    return count


def enqueue_run(config: Config, papers: Sequence[Paper], now: datetime, *,
                only: str | None = None, ignore_schedule: bool = False,
                environ: Mapping[str, str], lock: bool = True) -> QueueReport:
    """Queue the current edition for every due subscriber (or ``only`` one). ``lock=False``
    is for a caller already holding the send lock (``digest run``). Raises ``LockedError``
    when another process holds it."""
    settings = config.settings
    database = settings.database
    if not isinstance(database, PostgresDatabase):
        raise ValueError("queued delivery needs a PostgreSQL ledger")
    app = make_app(settings, environ)
    subscribers = due(config, now, only, ignore_schedule=ignore_schedule)
    not_due = len(config.subscribers) - len(subscribers) if only is None else 0
    held = AdvisoryLock(database) if lock else None
    if held is not None:
        held.acquire()
    try:
        with PostgresLedger(database) as ledger:
            run = ledger.freeze_edition(papers, summarize_all(papers, settings.summary_chars),
                                        now=now)
            suppressed = ledger.suppressed()
            wanted = [(s.email.lower(), edition_for(s, now)) for s in subscribers
                      if s.email.lower() not in suppressed]
            owed = ledger.enqueue(wanted, run=run, now=now)
        queued = publish(app, (Job(email, edition, run, now) for email, edition in owed))
    finally:
        if held is not None:
            held.release()
        app.close()
    return QueueReport(run=run, queued=queued, already=len(wanted) - len(owed),
                       suppressed=len(subscribers) - len(wanted), not_due=not_due)


class QueueSender:
    """``digest run``'s sender when ``settings.queue`` is set: a fire queues the subscriber's
    edition for the workers instead of sending it (the daemon's ``EditionSender`` seam). The
    frozen edition is stored once per feed fetch and reused by every fire that shares it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._app: Any = None
        self._ledger: PostgresLedger | None = None
        self._frozen: tuple[int, str] | None = None  # (id of the papers tuple, run)

    def _prepare(self, settings: Settings) -> PostgresLedger:
        if settings != self._settings:
            self.close()
            if not isinstance(settings.database, PostgresDatabase):
                raise DigestError("settings.queue needs a postgresql:// settings.database")
            self._app = make_app(settings, self._environ)
            self._ledger = PostgresLedger(settings.database)
            self._settings = settings
        assert self._ledger is not None
        return self._ledger

    def check(self, settings: Settings) -> None:
        with self._lock:
            self._prepare(settings)

    def send(self, subscriber: Subscriber, edition: date, papers: tuple[Paper, ...],
             summaries: Mapping[str, Summary], settings: Settings, now: datetime) -> Delivery:
        email = subscriber.email.strip().lower()
        with self._lock:
            ledger = self._prepare(settings)
            if self._frozen is None or self._frozen[0] != id(papers):
                self._frozen = (id(papers), ledger.freeze_edition(papers, dict(summaries),
                                                                  now=now))
            run = self._frozen[1]
            skip = Delivery(email=email, edition=edition, state="skipped",
                            outcome=Outcome.QUEUED)
            if ledger.is_suppressed(email):
                return replace(skip, outcome=Outcome.SUPPRESSED, detail=Outcome.SUPPRESSED.value)
            owed = ledger.enqueue([(email, edition)], run=run, now=now)
            if not owed:
                return replace(skip, outcome=Outcome.ALREADY_SENT,
                               detail="already sent or in flight")
            publish(self._app, [Job(email, edition, run, now)])
            return replace(skip, detail=f"{Outcome.QUEUED.value} (edition {run})")

    def close_idle(self, idle_seconds: float) -> None:
        pass  # nothing held open between fires but the ledger connection

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        if self._app is not None:
            self._app.close()
            self._app = None
        self._settings = None
