"""The running ``digest run`` daemon: fires, reload, graceful stop, one instance per database.

Owns: the process-wide daemon (the job function ``fire`` finds it here, because stored jobs
name a function, never an object), the batches (the fires handed over together go to one
dispatcher thread and out through ``digest.delivery.deliver_many``: one pool, one selector,
one summary pass, as ``digest send``; over its process shards when as big as a ``digest
send`` that splits), the feed kept for its fetch day, the config-file watcher,
the signal-driven stop and the log line per fire. May import models,
errors, cron, scheduler, config, feeds, pipeline, ledger, service, transports and renderer: it
is an edge (clock, files, network through the service), like the CLI that starts it.

A fire delivers the subscriber's edition for the LOCAL date of its *scheduled* time through
``digest.delivery.deliver_edition``; the ledger makes a double fire (the 01:30 job on the
autumn DST night, a restart racing a catch-up) send once. A deferred delivery gets a one-off
retry job; rows left ``sending``/``deferred`` by an earlier process are finished at start.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.triggers.date import DateTrigger

from digest.compose import LazySummaries, edition_for
from digest.cron import next_runs
from digest.errors import ConfigError, DigestError, FeedError, SenderRefusedError
from digest.errors import TransportError
from digest.ledger import AdvisoryLock, LedgerStore, SendLock, check_new_ledger, open_ledger
from digest.ledger import open_send_lock
from digest.models import (
    Config,
    Delivery,
    FeedReport,
    Outcome,
    Paper,
    Settings,
    Subscriber,
    Summary,
)
from digest.schedule._jobs import (
    FIRE_FUNC,
    RETRY_MARK,
    EditionExecutor,
    Reconciled,
    build_scheduler,
    job_id,
    jobs_path,
    latest_run,
    reconcile,
)
from digest.selection import Selector

__all__ = ["Daemon", "FireResult", "EditionSender", "ServiceSender", "fire",
           "utc_now"]

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(minutes=15)  # a deferred edition is tried again this much later
OWED_EVERY = timedelta(minutes=1)  # how often the schedules and the ledger are compared
# A send scheduled less than this ago is APScheduler's to fire (it queues it on time): only
# older ones with neither a ledger row nor a fire queued in this process are owed.
OWED_GRACE = timedelta(minutes=1)
# The feed is asked once per fetch day (``feeds.fetch_day``) and its answer kept for that day
# when it is settled: every feed listed that day's papers. An answer that is not (a feed down
# or empty, a listing from an earlier day: today's may not be out yet) and a failure are
# shared by the fires of the next FEED_REUSE, then asked again.
FEED_REUSE = timedelta(seconds=90)
# Fires handed over within this long of each other join one batch (the pool keeps sending
# while APScheduler is still queueing a burst); a batch takes new fires for at most
# BATCH_SPAN, so its clock reading and feed stay those of its minute.
BATCH_SETTLE = 0.5  # seconds
BATCH_SPAN = 60.0  # seconds
IDLE_CLOSE = 60.0  # seconds; close an idle SMTP connection before the server drops it


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FireResult:
    """What one fire did: ``outcome`` is sent, skipped, deferred, failed or held (uncertain:
    the server may have accepted it; nothing re-sends it until ``digest resolve``)."""

    email: str
    run_time: datetime
    edition: date | None
    outcome: str
    detail: str = ""

    def __str__(self) -> str:
        edition = f" edition {self.edition}" if self.edition else ""
        detail = f" ({self.detail})" if self.detail else ""
        return (f"fire {self.email}{edition} scheduled {self.run_time.isoformat()}: "
                f"{self.outcome}{detail}")


class EditionSender(Protocol):
    """Delivers one edition (the seam between the daemon and ``digest.delivery``). A sender
    may also offer ``send_batch`` (as ``ServiceSender`` does): the fires due together then go
    through one pool; without it they are sent one after another through ``send``."""

    def send(self, subscriber: Subscriber, edition: date, papers: tuple[Paper, ...],
             summaries: Mapping[str, Summary], settings: Settings, now: datetime) -> Delivery: ...

    def close_idle(self, idle_seconds: float) -> None: ...

    def close(self) -> None: ...


class ServiceSender:
    """The real sender: ``deliver_edition`` with a ledger, renderer and transport built once
    per settings (rebuilt when a reload changes them). Used from the single worker thread and
    the main thread's idle check, hence the lock."""

    def __init__(self, environ: Mapping[str, str], *, processes: int | None = None) -> None:
        self._environ = environ
        self._processes = processes  # process shards per batch; None: send_all's rule decides
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._ledger: LedgerStore | None = None
        self._renderer: Any = None
        self._factory: Any = None  # a TransportFactory (its ServerGate spans the fires)
        self._transport: Any = None
        self._last_used = 0.0
        self._streak: Any = None

    def _prepare(self, settings: Settings) -> None:
        if settings == self._settings:
            return
        self._close()
        from digest.delivery import open_transport
        from digest.render import Renderer  # the heavy MJML import only when sending

        from digest.delivery import RefusalStreak

        self._renderer = Renderer(settings.templates, max_bytes=settings.max_email_bytes)
        self._streak = RefusalStreak()  # refusals in a row across fires, like a batch run
        self._factory = open_transport(settings, self._environ)
        self._ledger = open_ledger(settings.database)
        self._settings = settings

    def check(self, settings: Settings) -> None:
        """Build the renderer and transport factory now, so a missing SMTP password or a
        broken template stops ``digest run`` at start instead of at the first fire."""
        with self._lock:
            self._prepare(settings)

    def send(self, subscriber: Subscriber, edition: date, papers: tuple[Paper, ...],
             summaries: Mapping[str, Summary], settings: Settings, now: datetime) -> Delivery:
        from digest.delivery import EditionRun, deliver_edition

        with self._lock:
            self._prepare(settings)
            assert self._ledger is not None and self._factory is not None
            if self._transport is None:
                self._transport = self._factory()
            secret = (self._environ.get(settings.unsubscribe_secret_env)
                      if settings.unsubscribe_secret_env else None)
            try:
                run = EditionRun(ledger=self._ledger, renderer=self._renderer, settings=settings,
                                 summaries=summaries, now=now, unsubscribe_secret=secret,
                                 streak=self._streak)
                return deliver_edition(subscriber, edition, papers, run,
                                       transport=self._transport)
            except TransportError:
                self._close_transport()  # reconnect from scratch next time
                raise
            finally:
                self._last_used = time.monotonic()

    def send_batch(self, editions: Iterable[tuple[Subscriber, date]], feed: KeptFeed,
                   settings: Settings, now: datetime, *,
                   progress: Callable[[Delivery], None], stop: _StopFlag,
                   expected: int = 0) -> None:
        """Every ``(subscriber, edition)`` through ``digest.delivery.deliver_many``: the pool
        of ``smtp.connections`` transports ``digest send`` uses, the feed's one selector and
        summaries, this sender's renderer, ledger, refusal streak and circuit breaker (the
        factory's ``ServerGate``); or, for a batch of ``expected`` fires as big as a
        ``digest send`` that splits (the same rule, in ``deliver_many``), over process shards
        as ``digest send`` does, each with its own of those. Raises ``TransportError`` like
        ``send``."""
        from digest.delivery import EditionRun, deliver_many

        with self._lock:
            self._prepare(settings)
            assert self._ledger is not None and self._factory is not None
            self._close_transport()  # the pool opens its own: never more than connections
            secret = (self._environ.get(settings.unsubscribe_secret_env)
                      if settings.unsubscribe_secret_env else None)
            run = EditionRun(ledger=self._ledger, renderer=self._renderer, settings=settings,
                             summaries=feed.summaries, now=now, selector=feed.selector,
                             unsubscribe_secret=secret, streak=self._streak)
            try:
                deliver_many(editions, feed.papers, run, self._factory, progress=progress,
                             stop=stop, expected=expected, processes=self._processes,
                             environ=self._environ)
            finally:
                self._last_used = time.monotonic()

    def pending(self, settings: Settings) -> tuple[tuple[str, date], ...]:
        with self._lock:
            self._prepare(settings)
            assert self._ledger is not None
            return tuple((r.email, r.edition) for r in self._ledger.pending())

    def recorded(self, settings: Settings, first: date) -> frozenset[tuple[str, date]] | None:
        """The ledger's (email, edition) rows from ``first`` on; None when a send holds the
        sender under other settings (the caller asks again later). Never waits behind a send:
        the caller is the loop that also watches the config."""
        ledger: LedgerStore | None
        if self._lock.acquire(blocking=False):
            try:
                self._prepare(settings)
                ledger = self._ledger
            finally:
                self._lock.release()
        else:  # the ledger is thread-safe; only building it needs the lock
            ledger = self._ledger if settings == self._settings else None
        return None if ledger is None else ledger.recorded_since(first)

    def _close_transport(self) -> None:
        if self._transport is not None:
            try:
                self._transport.close()
            finally:
                self._transport = None

    def close_idle(self, idle_seconds: float) -> None:
        # Never wait behind a send: the caller is the loop that also watches the config.
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._transport is not None and time.monotonic() - self._last_used > idle_seconds:
                self._close_transport()
        finally:
            self._lock.release()

    def _close(self) -> None:
        self._close_transport()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        self._settings = None

    def close(self) -> None:
        with self._lock:
            self._close()


@dataclass(frozen=True)
class KeptFeed:
    """The feed as the daemon keeps it between fires: the papers with their one summary pass
    (each paper summarized once, when a digest first needs it) and their one selector index.
    Kept for the fetch day once settled, and while the source answers with the same papers,
    so a day's fires share them."""

    papers: tuple[Paper, ...]
    summaries: Mapping[str, Summary]
    selector: Selector
    reports: tuple[FeedReport, ...] = ()


class _StopFlag:
    """A batch's stop: set by the batch itself (a failure) or by the daemon stopping."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._own = threading.Event()

    def is_set(self) -> bool:
        return self._own.is_set() or self._stopping.is_set()

    def set(self) -> None:
        self._own.set()


_Fire = tuple[str, datetime]  # (email, scheduled run time)
_CLOSE = ("", datetime.min)  # tells the dispatcher to end

# The daemon running in this process; stored jobs reach it through ``fire``.
_current: Daemon | None = None


def fire(email: str, run_time: datetime | None = None) -> None:
    """The job function every stored job names (``digest.schedule:fire``): hands the fire to
    the daemon's batch, so the fires due together go out through one pool."""
    daemon = _current
    if daemon is None:  # a job run outside ``digest run``: nothing to deliver with
        log.warning("fire %s: no daemon running in this process; ignored", email)
        return
    daemon.submit(email, run_time or daemon.clock())


def _index(config: Config) -> dict[str, Subscriber]:
    return {job_id(s.email): s for s in config.subscribers}


def _groups(config: Config) -> dict[tuple[str, str], int]:
    return dict(Counter((s.schedule, s.timezone) for s in config.subscribers))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Daemon:
    """``start()`` / ``stop()`` for tests and embedding; ``run_forever()`` for the CLI.

    ``loader`` is ``digest.config.load_config``; ``sender`` defaults to ``ServiceSender``;
    ``on_fire`` sees every ``FireResult`` (tests wait on it; the log line is always written).
    """

    def __init__(self, config_path: Path, *, environ: Mapping[str, str] | None = None,
                 poll: float = 2.0, clock: Callable[[], datetime] = utc_now,
                 sender: EditionSender | None = None,
                 loader: Callable[..., Config] | None = None,
                 fetch: Callable[[Settings, datetime], tuple[Paper, ...]] | None = None,
                 on_fire: Callable[[FireResult], None] | None = None,
                 new_ledger: bool = False) -> None:
        self.config_path = Path(config_path)
        self.new_ledger = new_ledger
        self.environ: Mapping[str, str] = dict(os.environ) if environ is None else environ
        self.poll = poll
        self.clock = clock
        self.sender: EditionSender = sender or ServiceSender(self.environ)
        self._default_sender = sender is None  # with settings.queue: fires queue instead
        self._loader = loader
        self._fetch = fetch
        self.on_fire = on_fire
        self._config: Config | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._state = threading.Lock()  # guards _config
        self._by_email: dict[str, Subscriber] = {}  # the config's subscribers, by job id
        self._groups: dict[tuple[str, str], int] = {}  # how many per (schedule, timezone)
        self._fetching = threading.Lock()  # one feed fetch at a time, shared by its minute
        # (what was asked, when, the answer, whether it is kept for the rest of its day)
        self._cache: tuple[object, datetime, KeptFeed | FeedError, bool] | None = None
        self._kept: tuple[object, KeptFeed] | None = None  # the last good feed, kept
        # Fires handed over by APScheduler, delivered in batches by the dispatcher thread.
        self._queue: queue.Queue[_Fire] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._interrupted: list[tuple[str, datetime]] = []
        self._lock: SendLock | AdvisoryLock | None = None
        self.scheduler: Any = None
        # (email, edition) of every fire queued in this process, and since when this process
        # has known each subscriber's current schedule (None: from before it started): the
        # owed-sends check needs both, the job store's next run times cannot tell.
        self._submitted: set[tuple[str, date]] = set()
        self._known_since: dict[str, datetime] = {}
        self._owed_checked: datetime | None = None

    # ------------------------------------------------------------------ config

    def _load(self) -> Config:
        loader = self._loader
        if loader is None:
            from digest.config import load_config

            loader = load_config
        return loader(self.config_path, environ=self.environ)

    @property
    def config(self) -> Config:
        with self._state:
            assert self._config is not None, "daemon not started"
            return self._config

    def reload(self) -> bool | None:
        """Reconcile with the YAML if it changed since the last look: None when unchanged,
        True when applied, False when the edit was invalid (the last good config stays)."""
        stamp = _stamp(self.config_path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        old = self.config
        try:
            config = self._load()
            if config.settings.database != old.settings.database:
                log.warning("%s: settings.database changed to %s; keeping %s until digest run "
                            "restarts", self.config_path, config.settings.database,
                            old.settings.database)
                config = replace(config, settings=replace(config.settings,
                                                          database=old.settings.database))
            changes = reconcile(self.scheduler, config)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config reload: %s", problem)
            log.error("config reload failed; still running the last good config "
                      "(%d subscribers)", len(old.subscribers))
            return False
        except (DigestError, OSError) as exc:
            log.error("config reload failed: %s; still running the last good config", exc)
            return False
        with self._state:
            self._config = config
            self._by_email = _index(config)
            self._groups = _groups(config)
            self._note_schedules(changes, self.clock())
        log.info("reloaded %s: %s", self.config_path, changes)
        return True

    def _note_schedules(self, changes: Reconciled, now: datetime) -> None:
        """A subscriber added, or whose schedule changed, is owed nothing scheduled before."""
        for email in (*changes.added, *changes.changed):
            self._known_since[email] = now
        for email in changes.removed:
            self._known_since.pop(email, None)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the config, take the database's send lock, reconcile the stored jobs and
        start firing. Raises ``ConfigError``/``LockedError``/``ScheduleError``."""
        global _current
        self._stamp = _stamp(self.config_path)
        config = self._load()
        settings = config.settings
        if self._default_sender and settings.queue:
            from digest.workers import QueueSender

            self.sender = QueueSender(self.environ)
        self._lock = open_send_lock(settings.database)
        self._lock.acquire()  # a second `digest run` (or a `digest send`) stops here
        try:
            check_new_ledger(settings.database, allow_new=self.new_ledger,
                             outbox=settings.outbox if settings.delivery == "outbox" else None)
            with open_ledger(settings.database) as ledger:
                ledger.create()  # so the job store never exists without its ledger
            if _current is not None:  # `fire` reaches ONE daemon per process
                raise RuntimeError("a daemon is already running in this process")
            self._config = config
            self._by_email = _index(config)
            self._groups = _groups(config)
            check = getattr(self.sender, "check", None)  # optional: only the real sender has it
            if check is not None:
                check(settings)
            self.scheduler = build_scheduler(jobs_path(settings), on_submit=self._on_submit)
            self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
            # Paused until reconciled: a job must not fire from a half-updated store.
            self.scheduler.start(paused=True)
            _current = self
            changes = reconcile(self.scheduler, config)
            self._note_schedules(changes, self.clock())
            self._resume_pending(settings)
            self._catch_up_owed(settings, at_start=True)
            count = len(config.subscribers)
            log.info("digest run: %d subscriber%s (%s), jobs in %s, catch-up window %s",
                     count, "" if count == 1 else "s", changes, jobs_path(settings),
                     settings.catch_up)
            self._log_next()
            self._dispatcher = threading.Thread(target=self._dispatch, name="digest-fires",
                                                daemon=True)
            self._dispatcher.start()
            self.scheduler.resume()
        except BaseException:
            self._shutdown()
            raise

    def _log_next(self) -> None:
        due = [j for j in self.scheduler.get_jobs() if j.next_run_time is not None]
        if due:
            job = min(due, key=lambda j: j.next_run_time)
            sub = self.config.subscriber(job.id.split(RETRY_MARK, 1)[0])
            when = job.next_run_time.astimezone(ZoneInfo(sub.timezone) if sub else UTC)
            log.info("next send: %s at %s", job.id, when.isoformat())

    def _resume_pending(self, settings: Settings) -> None:
        """Editions an earlier process left ``sending`` (crash) or ``deferred``: retry now."""
        pending = getattr(self.sender, "pending", None)  # optional, like check()
        if pending is None:
            return
        now = self.clock()
        for email, edition in pending(settings):
            sub = self.config.subscriber(email)
            if sub is None:
                continue
            # the scheduled time is only used for the edition; noon keeps the local date
            run_time = datetime.combine(edition, datetime.min.time().replace(hour=12),
                                        ZoneInfo(sub.timezone))
            self._retry_later(email, run_time, now)

    def _subscriber(self, email: str) -> Subscriber | None:
        with self._state:
            return self._by_email.get(job_id(email))

    def _on_submit(self, email: str, run_time: datetime) -> None:
        sub = self._subscriber(email)
        if sub is not None:
            with self._state:
                self._submitted.add((job_id(email), edition_for(sub, run_time)))

    def _catch_up_owed(self, settings: Settings, *, at_start: bool = False) -> int:
        """Queue every subscriber's latest scheduled send within ``catch_up`` that the ledger
        has no row for and no fire in this process has taken: what a crash (or anything else)
        left undone. The schedules and the ledger decide, never the job store. Returns how
        many were queued."""
        recorded_fn = getattr(self.sender, "recorded", None)  # optional, like pending()
        if recorded_fn is None:
            return 0
        now = self.clock()
        self._owed_checked = now
        config = self.config
        window = settings.catch_up
        due_now: set[str] = set()
        if at_start:  # jobs still due in the store are fired by APScheduler's own catch-up
            due_now = {j.id for j in self.scheduler.get_jobs()
                       if j.next_run_time is not None and j.next_run_time <= now}
        latest: dict[tuple[str, str], datetime | None] = {}
        owed: list[tuple[Subscriber, datetime]] = []
        for sub in config.subscribers:
            key = (sub.schedule, sub.timezone)
            if key not in latest:
                latest[key] = latest_run(sub.schedule, sub.timezone, now, window)
            when = latest[key]
            jid = job_id(sub.email)
            if when is None or jid in due_now or (not at_start and now - when < OWED_GRACE):
                continue
            since = self._known_since.get(jid)
            if since is not None and when < since:
                continue
            owed.append((sub, when))
        if not owed:
            return 0
        first = min(edition_for(sub, when) for sub, when in owed)
        recorded = recorded_fn(settings, first)
        if recorded is None:
            self._owed_checked = None  # busy: look again at the next poll
            return 0
        with self._state:
            self._submitted = {k for k in self._submitted if k[1] >= first - timedelta(days=2)}
            submitted = set(self._submitted)
        queued = 0
        for sub, when in owed:
            owed_key = (job_id(sub.email), edition_for(sub, when))
            if owed_key in recorded or owed_key in submitted:
                continue
            self._retry_later(sub.email, when, now)
            queued += 1
        if queued:
            log.warning("%d subscriber%s owed their edition (scheduled within the catch-up "
                        "window, nothing in the ledger): sending now", queued,
                        "" if queued == 1 else "s")
        return queued

    def _retry_later(self, email: str, run_time: datetime, when: datetime) -> None:
        retry_id = f"{job_id(email)}{RETRY_MARK}{run_time.date().isoformat()}"
        self.scheduler.add_job(FIRE_FUNC, DateTrigger(when), id=retry_id,
                               name=f"retry {email}", replace_existing=True,
                               kwargs={"email": job_id(email), "run_time": run_time},
                               misfire_grace_time=None, coalesce=True)

    def request_stop(self) -> None:
        """Signal-safe: ask ``run_forever`` to stop."""
        self._stop_requested.set()

    def stop(self) -> None:
        """Finish the fire in flight, park any queued fire for the next start, release."""
        self._stopping.set()
        self._shutdown()

    def _shutdown(self) -> None:
        global _current
        scheduler = self.scheduler
        if scheduler is not None and scheduler.running:
            scheduler.hold()
            executor = scheduler._lookup_executor("default")
            if isinstance(executor, EditionExecutor):
                executor.shutdown(wait=True)  # every fire handed over reaches the queue
        self._stopping.set()
        if self._dispatcher is not None:
            self._queue.put(_CLOSE)
            self._dispatcher.join()  # the messages in flight complete; the rest is parked
            self._dispatcher = None
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _CLOSE:
                    self._park(*item)
        if scheduler is not None and scheduler.running:
            for jid, run_time in self._interrupted:
                # Put the parked fire back as due, so the next start catches it up.
                try:
                    scheduler.modify_job(jid, next_run_time=run_time)
                except LookupError:
                    pass
            scheduler.shutdown(wait=False)
        self.sender.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if _current is self:
            _current = None

    def run_forever(self) -> None:
        """Start, then poll the config every ``poll`` seconds until SIGINT/SIGTERM."""
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s; finishing the message in flight, then stopping",
                     signal.Signals(signum).name)
            self.request_stop()

        if threading.current_thread() is threading.main_thread():  # else: embedded, no signals
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            self.start()
            try:
                while not self._stop_requested.wait(self.poll):
                    self.reload()
                    self.sender.close_idle(IDLE_CLOSE)
                    if self._owed_checked is None or \
                            self.clock() - self._owed_checked >= OWED_EVERY:
                        self._catch_up_owed(self.config.settings)
            finally:
                self.stop()
            log.info("digest run stopped")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ------------------------------------------------------------------ fires

    def _on_event(self, event: JobExecutionEvent) -> None:
        email = event.job_id.split(RETRY_MARK, 1)[0]
        if event.code == EVENT_JOB_MISSED:
            self._report(FireResult(email, event.scheduled_run_time, None, "skipped",
                                    "missed: outside the catch-up window"))
        else:  # fire() catches everything; this is a bug in the daemon itself
            self._report(FireResult(email, event.scheduled_run_time, None, "failed",
                                    f"internal error: {event.exception!r}"))

    def _report(self, result: FireResult) -> FireResult:
        level = logging.WARNING if result.outcome in ("failed", "deferred", "held") \
            else logging.INFO
        log.log(level, "%s", result)
        if self.on_fire is not None:
            self.on_fire(result)
        return result

    def _papers(self, settings: Settings, now: datetime) -> KeptFeed:
        """The feed for the fires starting now: asked once per fetch day (the UTC date,
        ``feeds.fetch_day``) and kept for the rest of it once settled (see ``FEED_REUSE``;
        a file feed is asked again when the file changes). A failure, or an answer not
        settled, is shared by the fires of the next ``FEED_REUSE`` (a burst asks a failing
        source once), then asked again. While an answer is the same papers, the kept
        summaries and selector serve every fire of the day."""
        from digest.feeds import fetch_day

        day = fetch_day(now)
        key = (settings.feed_list, settings.summary_chars, day,
               tuple(_stamp(f.path) for f in settings.feed_list
                     if f.source == "file" and f.path is not None))
        with self._fetching:
            if self._cache is not None:
                cached_key, fetched_at, result, settled = self._cache
                if cached_key == key and timedelta(0) <= now - fetched_at and (
                        settled or now - fetched_at < FEED_REUSE):
                    if isinstance(result, FeedError):
                        raise result  # a feed that just failed is not asked again at once
                    return result
            reports: tuple[FeedReport, ...] = ()
            try:
                if self._fetch is not None:
                    papers = self._fetch(settings, now)
                else:
                    from digest.feeds import gather_for

                    got = gather_for(settings, None, now)
                    papers, reports = got.papers, got.reports
            except FeedError as exc:
                self._cache = (key, now, exc, False)
                raise
            kept = self._kept[1] if self._kept is not None and self._kept[0] == key[:2] \
                else None
            if kept is None or kept.papers != papers:
                kept = KeptFeed(papers, LazySummaries(papers, settings.summary_chars),
                                Selector(papers), reports)
            elif kept.reports != reports:
                kept = replace(kept, reports=reports)
            self._kept = (key[:2], kept)
            settled = bool(papers) and all(r.state == "ok" and r.day == day for r in reports)
            self._cache = (key, now, kept, settled)
            log.info("feed for %s: %d papers%s", day, len(papers),
                     "; kept for the day" if settled else
                     f"; asked again after {FEED_REUSE.total_seconds():.0f} s")
            return kept

    # ------------------------------------------------------------------ batches

    def submit(self, email: str, run_time: datetime) -> None:
        """Hand a fire to the dispatcher (APScheduler's worker calls this through ``fire``)."""
        if self._stopping.is_set() or self._dispatcher is None:
            self._park(email, run_time)
            return
        self._queue.put((email, run_time))

    def _park(self, email: str, run_time: datetime) -> FireResult:
        self._interrupted.append((job_id(email), run_time))
        return self._report(FireResult(email, run_time, None, "deferred",
                                       "stopping; it fires on the next start"))

    def _dispatch(self) -> None:
        """The dispatcher thread: each fire, with the ones handed over close behind it, is
        one batch."""
        while True:
            first = self._queue.get()
            if first is _CLOSE:
                return
            try:
                # the batch's size, known before it has all arrived: everyone due at the
                # first fire's scheduled minute, or what is queued already (catch-ups)
                expected = max(self._due_at(first[1]), 1 + self._queue.qsize())
                self._deliver(self._stream(first), expected=expected)
            except Exception:  # a bug must not kill the dispatcher silently
                log.exception("digest run: unexpected error in a batch of fires")

    def _stream(self, first: _Fire) -> Iterator[_Fire]:
        yield first
        until = time.monotonic() + BATCH_SPAN
        while time.monotonic() < until:
            try:
                item = self._queue.get(timeout=BATCH_SETTLE)
            except queue.Empty:
                return
            if item is _CLOSE:
                self._queue.put(_CLOSE)  # for the dispatcher loop
                return
            yield item

    def fire(self, email: str, run_time: datetime) -> FireResult:
        """Deliver ``email``'s edition for ``run_time`` now, in this thread; never raises (it
        logs the outcome)."""
        (result,) = self._deliver(iter([(email, run_time)]))
        return result

    def _due_at(self, run_time: datetime) -> int:
        """How many subscribers of the config have a send scheduled at ``run_time``."""
        with self._state:
            groups = self._groups
        count = 0
        for (schedule, timezone), subscribers in groups.items():
            try:
                runs = next_runs(schedule, timezone, run_time - timedelta(microseconds=1), 1)
            except ValueError:  # reconcile reported it; such a subscriber has no job
                continue
            if runs and runs[0] == run_time:
                count += subscribers
        return count

    def _deliver(self, fires: Iterable[_Fire], *, expected: int = 1) -> list[FireResult]:
        """Deliver a batch of fires (possibly still arriving) through one pool; one
        ``FireResult`` per fire, in the order the outcomes came (a fire repeating one of the
        batch's (subscriber, edition) pairs is handed over again, for after this batch)."""
        results: list[FireResult] = []

        def note(result: FireResult) -> None:
            results.append(self._report(result))

        config = self.config
        settings = config.settings
        now = self.clock()
        waiting: dict[tuple[str, date], tuple[Subscriber, datetime]] = {}  # handed on
        again: list[_Fire] = []

        def editions() -> Iterator[tuple[Subscriber, date]]:
            for email, run_time in fires:
                if self._stopping.is_set():
                    results.append(self._park(email, run_time))
                    continue
                sub = self._subscriber(email)
                if sub is None:
                    note(FireResult(email, run_time, None, "skipped", "no longer in the config"))
                    continue
                edition = edition_for(sub, run_time)
                key = (job_id(sub.email), edition)
                if key in waiting:  # never the same edition twice in one pool
                    again.append((email, run_time))
                    continue
                waiting[key] = (sub, run_time)
                yield sub, edition

        try:
            feed = self._papers(settings, now)
        except FeedError as exc:
            for sub, edition in editions():
                _, run_time = waiting.pop((job_id(sub.email), edition))
                note(self._feed_down(sub.email, run_time, edition, now, exc))
            return results
        if not feed.papers:
            for sub, edition in editions():
                _, run_time = waiting.pop((job_id(sub.email), edition))
                note(self._no_papers(sub, run_time, edition, now, feed))
            return results

        def progress(d: Delivery) -> None:  # from the pool's threads, one at a time
            found = waiting.pop((job_id(d.email), d.edition), None)
            if found is None:  # not one of ours: nothing to report it against
                log.warning("fires: an outcome for %s %s that no fire asked for", d.email,
                            d.edition)
                return
            sub, run_time = found
            if d.outcome is Outcome.NOTHING_NEW and feed.reports:
                from digest.feeds import describe_reports

                d = replace(d, detail=f"{d.detail}; {describe_reports(feed.reports, sub.feeds)}")
            note(self._outcome(d, run_time, now))

        stop = _StopFlag(self._stopping)
        send_batch = getattr(self.sender, "send_batch", None)  # optional, like check()
        try:
            if send_batch is not None:
                send_batch(editions(), feed, settings, now, progress=progress, stop=stop,
                           expected=expected)
            else:
                self._send_each(editions(), feed, settings, now, progress, stop)
        except TransportError as exc:
            retry_at = now + RETRY_AFTER
            for (_, edition), (sub, run_time) in list(waiting.items()):
                self._retry_later(sub.email, run_time, retry_at)
                note(FireResult(sub.email, run_time, edition, "deferred",
                                f"{exc}; retrying at {retry_at:%H:%M} UTC"))
            if isinstance(exc, SenderRefusedError):  # the streak's rows went back to deferred
                for other, other_edition in exc.deferred:
                    other_sub = self._subscriber(other)
                    if other_sub is not None and isinstance(other_edition, date) \
                            and (job_id(other), other_edition) not in waiting:
                        noon = datetime.combine(other_edition, datetime.min.time().replace(
                            hour=12), ZoneInfo(other_sub.timezone))
                        self._retry_later(other, noon, retry_at)
            waiting.clear()
        except Exception as exc:  # a template bug...: what was not delivered failed
            if not isinstance(exc, DigestError):
                log.exception("fires: unexpected error")
            for (_, edition), (sub, run_time) in list(waiting.items()):
                note(FireResult(sub.email, run_time, edition, "failed",
                                str(exc) if isinstance(exc, DigestError) else repr(exc)))
            waiting.clear()
        if self._stopping.is_set():  # what the stream still brings is parked, not dropped
            for _ in editions():  # (it parks each fire itself while stopping)
                pass
        for _, (sub, run_time) in list(waiting.items()):  # stopped before they were sent
            results.append(self._park(sub.email, run_time))
        for email, run_time in again:
            self.submit(email, run_time)
        return results

    def _send_each(self, editions: Iterable[tuple[Subscriber, date]], feed: KeptFeed,
                   settings: Settings, now: datetime, progress: Callable[[Delivery], None],
                   stop: _StopFlag) -> None:
        """A batch through a sender without ``send_batch``: one edition after another."""
        for sub, edition in editions:
            if stop.is_set():
                return  # the rest is parked by the caller
            try:
                delivery = self.sender.send(sub, edition, feed.papers, feed.summaries,
                                            settings, now)
            except TransportError:
                raise
            except DigestError as exc:
                delivery = Delivery(email=sub.email, edition=edition, state="failed",
                                    error=str(exc))
            except Exception as exc:  # a bug must not kill the dispatcher silently
                log.exception("fire %s: unexpected error", sub.email)
                delivery = Delivery(email=sub.email, edition=edition, state="failed",
                                    error=repr(exc))
            progress(delivery)

    def _feed_down(self, email: str, run_time: datetime, edition: date, now: datetime,
                   exc: FeedError) -> FireResult:
        # A feed outage must not cost the day's digest, but a retry past the catch-up
        # window would be as stale as the missed run it stands for.
        retry_at = now + RETRY_AFTER
        if retry_at - run_time > self.config.settings.catch_up:
            return FireResult(email, run_time, edition, "failed",
                              f"feed unavailable: {exc}; past the catch-up window, not retried")
        self._retry_later(email, run_time, retry_at)
        return FireResult(email, run_time, edition, "deferred",
                          f"feed unavailable: {exc}; retrying at {retry_at:%H:%M} UTC")

    def _no_papers(self, sub: Subscriber, run_time: datetime, edition: date, now: datetime,
                   feed: KeptFeed) -> FireResult:
        from digest.feeds import describe_reports

        settings = self.config.settings
        # several named feeds say each why; one feed keeps the one-line guess
        why = describe_reports(feed.reports, sub.feeds) if settings.feeds else ""
        if why:  # `digest history` shows the day too (it reads the feeds' reports)
            ledger = open_ledger(settings.database)
            try:
                ledger.note_skip(job_id(sub.email), edition,
                                 "nothing new: the feeds have no papers", now=now)
            finally:
                ledger.close()
        return FireResult(sub.email, run_time, edition, "skipped",
                          f"no papers: {why}" if why else
                          "the feed has no papers (weekend or holiday?)")

    def _outcome(self, d: Delivery, run_time: datetime, now: datetime) -> FireResult:
        if d.state == "sent":
            detail = f"{len(d.papers)} papers, {d.message_id}"
            if d.detail:
                detail += f", {d.detail}"
            return FireResult(d.email, run_time, d.edition, "sent", detail)
        if d.state == "deferred":
            self._retry_later(d.email, run_time, now + RETRY_AFTER)
            return FireResult(d.email, run_time, d.edition, "deferred",
                              f"{d.error}; retrying at {now + RETRY_AFTER:%H:%M} UTC")
        if d.state == "failed":
            return FireResult(d.email, run_time, d.edition, "failed",
                              d.error or d.detail or "unknown error")
        if d.state == "uncertain":  # never retried: the admin resolves it
            return FireResult(d.email, run_time, d.edition, "held",
                              f"{d.error}; {d.detail}" if d.error else d.detail or "")
        return FireResult(d.email, run_time, d.edition, "skipped", d.detail or "")
