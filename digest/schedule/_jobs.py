"""APScheduler wiring for ``digest run``: one persisted job per subscriber, reconciled with the
YAML without losing missed runs; and the pure "next send times" table for ``digest schedule``.

Owns: the job store location (``<database>.jobs``, a SQLite file next to the ledger so the
ledger's schema and WAL stay the ledger's alone), job ids and names, the job defaults that
make catch-up work (``misfire_grace_time = settings.catch_up``, ``coalesce``, one instance),
the executor that hands each fire its scheduled time, and ``reconcile``. May import models,
errors and cron; the running daemon (signals, reload, delivery) lives in ``digest.schedule``.

Why reconcile instead of ``add_job(replace_existing=True)``: replacing a job recomputes its
next run time from *now*, so a run missed while the daemon was down would be silently dropped.
Here a job is only touched when its schedule or timezone really changed (the job's name holds
``"<schedule> @ <timezone>"``, so the comparison needs no unpickled trigger internals).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.executors.debug import DebugExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.base import BaseTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import bindparam, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest.cron import cron_trigger, next_runs, zone
from digest.errors import ScheduleError
from digest.models import Config, PostgresDatabase, Settings, Subscriber

__all__ = [
    "FIRE_FUNC", "RETRY_MARK", "DigestScheduler", "EditionExecutor", "Reconciled", "SubscriberRuns", "build_scheduler",
    "job_id", "job_name", "jobs_path", "latest_run", "reconcile", "upcoming",
]

# A textual reference, so the job pickles into SQLite and survives restarts and upgrades.
FIRE_FUNC = "digest.schedule:fire"
# One-off retry jobs (a deferred edition) are "<email>#retry-<date>": not subscriber jobs.
RETRY_MARK = "#retry-"


def jobs_path(settings: Settings) -> Path | PostgresDatabase:
    """Where the job store lives: ``digest.db`` -> ``digest.db.jobs``; in the ledger's own
    PostgreSQL database (table ``apscheduler_jobs``) when the ledger is there."""
    if isinstance(settings.database, PostgresDatabase):
        return settings.database
    return settings.database.with_name(settings.database.name + ".jobs")


def job_id(email: str) -> str:
    return email.strip().lower()


def job_name(subscriber: Subscriber) -> str:
    """What identifies a job's trigger: when it changes, the job is rescheduled."""
    return f"{subscriber.schedule} @ {subscriber.timezone}"


class EditionExecutor(DebugExecutor):  # type: ignore[misc]  # APScheduler 3 is untyped
    """Runs each fire at once in the scheduler's thread, passing it its scheduled time as
    ``run_time``. A fire only hands itself to the daemon's batch queue (``Daemon.submit``), so
    no thread pool is needed between the two: a burst of 10,000 fires costs no thread hand-off
    per fire.

    APScheduler 3 calls job functions without telling them which run time they serve. The
    edition is the subscriber's local date of the *scheduled* time (a 23:30 run caught up at
    00:40 still belongs to yesterday), so the job gets a copy carrying it. The copy never goes
    back to the job store, which keeps the stored kwargs clean.
    """

    #: Told ``(email, run_time)`` of every fire handed to the pool, before it runs: APScheduler
    #: has already moved the job's next run time on, so this is the only trace of a queued fire.
    on_submit: Callable[[str, datetime], None] | None = None

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        # slot by slot: copy.copy goes through __getstate__/__setstate__, which looks the
        # job's function up again (13 us a fire, against 2)
        fired = Job.__new__(Job)
        for name in _JOB_SLOTS:
            value = getattr(job, name, _UNSET)
            if value is not _UNSET:
                setattr(fired, name, value)
        fired.kwargs = {"run_time": run_times[-1], **job.kwargs}  # a retry job pins its own
        fired._jobstore_alias = getattr(job, "_jobstore_alias", None)
        if self.on_submit is not None:
            self.on_submit(str(fired.kwargs["email"]), fired.kwargs["run_time"])
        super()._do_submit_job(fired, run_times)


_JOB_SLOTS = tuple(name for name in Job.__slots__ if name != "__weakref__")
_UNSET = object()


def _sqlite_engine(path: Path) -> Engine:
    """WAL with ``synchronous=NORMAL``: APScheduler commits every job on its own, and with
    SQLite's default rollback journal each commit waits for two fsyncs (26 ms a job here: a
    first start with 10,000 subscribers took minutes). WAL stays consistent on a crash; the
    worst a power cut can do is forget the last few updates, which the next start reconciles
    and the ledger makes harmless (a repeated fire sends once)."""
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return engine


class PassJobStore(SQLAlchemyJobStore):  # type: ignore[misc]  # APScheduler 3 is untyped
    """A ``SQLAlchemyJobStore`` that writes the jobs a processing pass moved on in one
    transaction at the end of the pass, not one each: handing over a burst of 10,000 fires
    took 3.9 CPU-seconds with a commit per job, 2.2 this way (the rest is APScheduler's
    unpickling and cron maths). Outside a pass it writes at once, as before. A crash mid-pass
    leaves those jobs due, so the next start fires them again and the ledger sends each once:
    a fire is never lost."""

    _held: list[dict[str, Any]] | None = None

    def hold_updates(self) -> None:
        self._held = []

    def update_job(self, job: Job) -> None:
        if self._held is None:
            super().update_job(job)
            return
        self._held.append({"b_id": job.id,
                           "b_next": datetime_to_utc_timestamp(job.next_run_time),
                           "b_state": pickle.dumps(job.__getstate__(), self.pickle_protocol)})

    def write_updates(self) -> None:
        held, self._held = self._held, None
        if not held:
            return
        table = self.jobs_t
        update = table.update().where(table.c.id == bindparam("b_id")).values(
            next_run_time=bindparam("b_next"), job_state=bindparam("b_state"))
        with self.engine.begin() as connection:
            connection.execute(update, held)


class DigestScheduler(BackgroundScheduler):  # type: ignore[misc]  # APScheduler 3 is untyped
    """A ``BackgroundScheduler`` that processes jobs only while RUNNING.

    APScheduler 3's loop runs one more ``_process_jobs`` pass after ``shutdown()`` (it only
    checks for PAUSED): a job due at that moment is submitted to the already closed executor
    ("cannot schedule new futures after shutdown", agronholm/apscheduler#285) and its next run
    time is advanced anyway, so a run owed after downtime would be lost at stop. Skip it.
    """

    def hold(self) -> None:
        """Pause, and return only once a processing pass already under way has finished
        submitting (it holds the job-store lock throughout): after this no fire is submitted,
        so the executor can be drained and closed without losing one."""
        self.pause()
        with self._jobstores_lock:
            pass

    def _process_jobs(self) -> float | None:
        if self.state != STATE_RUNNING:
            return None
        store = self._jobstores.get("default")
        if not isinstance(store, PassJobStore):
            wait: float | None = super()._process_jobs()
            return wait
        # The lock is re-entrant and held across the write too: no other thread changes a
        # job between the pass and the write of what it moved on.
        with self._jobstores_lock:
            store.hold_updates()
            try:
                wait = super()._process_jobs()
            finally:
                store.write_updates()
        return wait

    def start(self, *args: Any, **kwargs: Any) -> None:
        """Start, with a broken job store reported as a ``ScheduleError`` naming the file."""
        try:
            super().start(*args, **kwargs)
        except SQLAlchemyError as exc:
            raise job_store_error(self, exc) from None


def job_store_error(scheduler: BackgroundScheduler, exc: Exception) -> ScheduleError:
    """A clean message for a job store SQLAlchemy cannot use (a corrupt or foreign file)."""
    store = scheduler._jobstores.get("default")
    url = getattr(getattr(store, "engine", None), "url", None)
    where = str(url.database) if url is not None and url.database else "the job store"
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return ScheduleError(f"{where}: not a usable job store ({reason}); move it away and start "
                         "digest run again: it rebuilds the jobs from the config, and the "
                         "ledger tells what is still owed")


def _postgres_engine(database: PostgresDatabase) -> Engine:
    import psycopg

    return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(database.url))


def build_scheduler(jobs_db: Path | PostgresDatabase, *,
                    on_submit: Callable[[str, datetime], None] | None = None
                    ) -> BackgroundScheduler:
    """A scheduler on the SQLite job store at ``jobs_db`` (created on first use), or in the
    PostgreSQL database of the ledger.

    Fires run in the scheduler's thread (``EditionExecutor``): a fire only hands itself to
    the daemon's batch (``Daemon.submit``), which sends the fires due together through one
    pool.
    """
    if isinstance(jobs_db, PostgresDatabase):
        engine = _postgres_engine(jobs_db)
    else:
        jobs_db.parent.mkdir(parents=True, exist_ok=True)
        # the jobs name every subscriber: the owner's only, like the ledger (SQLite gives the
        # -wal and -shm files the same mode)
        os.close(os.open(jobs_db, os.O_WRONLY | os.O_CREAT, 0o600))
        engine = _sqlite_engine(jobs_db)
    executor = EditionExecutor()
    executor.on_submit = on_submit
    return DigestScheduler(
        jobstores={"default": PassJobStore(engine=engine)},
        executors={"default": executor},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone="UTC",
    )


@dataclass(frozen=True)
class Reconciled:
    """What ``reconcile`` did, as lower-cased emails."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = [f"{len(getattr(self, k))} {k}" for k in ("added", "changed", "removed", "kept")]
        return ", ".join(parts)


def reconcile(scheduler: BackgroundScheduler, config: Config) -> Reconciled:
    """Make the stored jobs match ``config.subscribers``: add new subscribers, reschedule those
    whose schedule or timezone changed, remove the ones gone. Untouched jobs keep their stored
    next run time, so a run missed during downtime is still caught up (within the window).

    Call it on a started (possibly paused) scheduler so changes go straight to the store.
    """
    grace = max(1, int(config.settings.catch_up.total_seconds()))
    # Every trigger is built before the store is touched: a bad one changes nothing.
    triggers: dict[str, tuple[Subscriber, BaseTrigger]] = {}
    for sub in config.subscribers:
        jid = job_id(sub.email)
        if jid in triggers:  # config rejects duplicates; never let one slip into two jobs
            continue
        try:
            triggers[jid] = (sub, cron_trigger(sub.schedule, sub.timezone))
        except ValueError as exc:
            raise ScheduleError(f"{config.path}:{sub.line}: {sub.email}: schedule: {exc}") from None
    stored: dict[str, Job] = {}
    for job in scheduler.get_jobs():
        if RETRY_MARK not in job.id:
            stored[job.id] = job
        elif job.id.split(RETRY_MARK, 1)[0] not in triggers:
            scheduler.remove_job(job.id)  # a retry for someone no longer subscribed
    added: list[str] = []
    changed: list[str] = []
    kept: list[str] = []
    for jid, (sub, trigger) in triggers.items():
        job = stored.get(jid)
        if job is None:
            scheduler.add_job(FIRE_FUNC, trigger, id=jid, name=job_name(sub),
                              kwargs={"email": jid}, misfire_grace_time=grace,
                              coalesce=True, max_instances=1)
            added.append(jid)
            continue
        changes: dict[str, Any] = {}
        if job.misfire_grace_time != grace:
            changes["misfire_grace_time"] = grace
        if job.func_ref != FIRE_FUNC:
            changes["func"] = FIRE_FUNC
        if job.name != job_name(sub):
            scheduler.reschedule_job(jid, trigger=trigger)
            changes["name"] = job_name(sub)
            changed.append(jid)
        else:
            kept.append(jid)
        if changes:
            scheduler.modify_job(jid, **changes)
    removed = sorted(set(stored) - set(triggers))
    for jid in removed:
        scheduler.remove_job(jid)
    return Reconciled(tuple(added), tuple(changed), tuple(removed), tuple(kept))


# --------------------------------------------------------------------------- digest schedule


@dataclass(frozen=True)
class SubscriberRuns:
    email: str
    timezone: str
    schedule: str
    runs: tuple[datetime, ...]  # aware, in the subscriber's timezone


def upcoming(subscribers: Iterable[Subscriber], now: datetime, n: int,
             ) -> tuple[SubscriberRuns, ...]:
    """Each subscriber's next ``n`` send times strictly after ``now`` (pure). Computed once
    per distinct (schedule, timezone): a big list shares a few of them."""
    runs: dict[tuple[str, str], tuple[datetime, ...]] = {}
    out: list[SubscriberRuns] = []
    for s in subscribers:
        key = (s.schedule, s.timezone)
        if key not in runs:
            runs[key] = tuple(next_runs(s.schedule, s.timezone, now, n))
        out.append(SubscriberRuns(s.email, s.timezone, s.schedule, runs[key]))
    return tuple(out)


def latest_run(expr: str, timezone: str, now: datetime, window: timedelta) -> datetime | None:
    """The latest scheduled send at or before ``now`` and less than ``window`` ago (pure), in
    the zone's local time; None when the schedule has none in that window. What a daemon
    restarted after a crash owes, whatever its job store says (APScheduler moves a job's next
    run time on when it queues the fire, so a crash loses queued fires from the store)."""
    trigger = cron_trigger(expr, timezone)
    latest: datetime | None = None
    previous: datetime | None = None
    cursor = now - window + timedelta(microseconds=1)
    while True:  # a few steps for daily schedules; at most one a minute of the window
        moment: datetime | None = trigger.get_next_fire_time(previous, cursor)
        if moment is None or moment > now:
            break
        latest = previous = moment
        cursor = moment + timedelta(microseconds=1)
    return None if latest is None else latest.astimezone(zone(timezone))
