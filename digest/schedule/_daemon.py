"""The running ``digest run`` daemon: fires, reload, graceful stop, one instance per database.

Owns: the process-wide daemon (the job function ``fire`` finds it here, because stored jobs
name a function, never an object), the papers cache shared by fires starting together, the
config-file watcher, the signal-driven stop and the log line per fire. May import models,
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
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.triggers.date import DateTrigger

from digest.compose import edition_for, summarize_all
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

__all__ = ["Daemon", "FireResult", "EditionSender", "ServiceSender", "fire",
           "utc_now"]

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(minutes=15)  # a deferred edition is tried again this much later
OWED_EVERY = timedelta(minutes=1)  # how often the schedules and the ledger are compared
# A send scheduled less than this ago is APScheduler's to fire (it queues it on time): only
# older ones with neither a ledger row nor a fire queued in this process are owed.
OWED_GRACE = timedelta(minutes=1)
FEED_REUSE = timedelta(seconds=90)  # fires starting this close together share one fetch
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
    """Delivers one edition (the seam between the daemon and ``digest.delivery``)."""

    def send(self, subscriber: Subscriber, edition: date, papers: tuple[Paper, ...],
             summaries: Mapping[str, Summary], settings: Settings, now: datetime) -> Delivery: ...

    def close_idle(self, idle_seconds: float) -> None: ...

    def close(self) -> None: ...


class ServiceSender:
    """The real sender: ``deliver_edition`` with a ledger, renderer and transport built once
    per settings (rebuilt when a reload changes them). Used from the single worker thread and
    the main thread's idle check, hence the lock."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._ledger: LedgerStore | None = None
        self._renderer: Any = None
        self._factory: Callable[[], Any] | None = None
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


_Papers = tuple[tuple[Paper, ...], dict[str, Summary]]

# The daemon running in this process; stored jobs reach it through ``fire``.
_current: Daemon | None = None


def fire(email: str, run_time: datetime | None = None) -> None:
    """The job function every stored job names (``digest.schedule:fire``)."""
    daemon = _current
    if daemon is None:  # a job run outside ``digest run``: nothing to deliver with
        log.warning("fire %s: no daemon running in this process; ignored", email)
        return
    daemon.fire(email, run_time or daemon.clock())


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
        self._fetching = threading.Lock()  # one feed fetch at a time, shared by its minute
        self._cache: tuple[object, datetime, _Papers | FeedError] | None = None
        self._reports: tuple[FeedReport, ...] = ()  # what each feed said at the last fetch
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

    def _on_submit(self, email: str, run_time: datetime) -> None:
        sub = self.config.subscriber(email)
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
                executor.shutdown(wait=True)  # the message in flight completes
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

    def _papers(self, settings: Settings, now: datetime) -> _Papers:
        """The feed for the fires starting now: one fetch (and one summarizing pass) is shared
        by every fire that starts within ``FEED_REUSE`` of it, so subscribers due at the same
        minute, and a burst of catch-ups after downtime, cost one request to the feed (which
        itself walks back to the latest day that has papers)."""
        key = (settings.feed_list, settings.summary_chars)
        with self._fetching:
            if self._cache is not None:
                cached_key, fetched_at, result = self._cache
                if cached_key == key and timedelta(0) <= now - fetched_at < FEED_REUSE:
                    if isinstance(result, FeedError):
                        raise result  # a feed that just failed is not asked again at once
                    return result
            try:
                if self._fetch is not None:
                    papers = self._fetch(settings, now)
                    self._reports = ()
                else:
                    from digest.feeds import gather_for

                    got = gather_for(settings, None, now)
                    papers, self._reports = got.papers, got.reports
            except FeedError as exc:
                self._cache = (key, now, exc)
                raise
            fresh = (papers, summarize_all(papers, settings.summary_chars))
            self._cache = (key, now, fresh)
            return fresh

    def fire(self, email: str, run_time: datetime) -> FireResult:
        """Deliver ``email``'s edition for ``run_time``; never raises (it logs the outcome)."""
        if self._stopping.is_set():
            self._interrupted.append((job_id(email), run_time))
            return self._report(FireResult(email, run_time, None, "deferred",
                                           "stopping; it fires on the next start"))
        config = self.config
        sub = config.subscriber(email)
        if sub is None:
            return self._report(FireResult(email, run_time, None, "skipped",
                                           "no longer in the config"))
        edition = edition_for(sub, run_time)
        now = self.clock()
        try:
            papers, summaries = self._papers(config.settings, now)
            if not papers:
                from digest.feeds import describe_reports

                # several named feeds say each why; one feed keeps the one-line guess
                why = describe_reports(self._reports, sub.feeds) if config.settings.feeds \
                    else ""
                if why:  # `digest history` shows the day too (it reads the feeds' reports)
                    ledger = open_ledger(config.settings.database)
                    try:
                        ledger.note_skip(email, edition, "nothing new: the feeds have no papers",
                                         now=now)
                    finally:
                        ledger.close()
                return self._report(FireResult(email, run_time, edition, "skipped",
                                               f"no papers: {why}" if why else
                                               "the feed has no papers (weekend or holiday?)"))
            delivery = self.sender.send(sub, edition, papers, summaries, config.settings, now)
            if delivery.outcome is Outcome.NOTHING_NEW and self._reports:
                from digest.feeds import describe_reports

                why = describe_reports(self._reports, sub.feeds)
                delivery = replace(delivery, detail=f"{delivery.detail}; {why}")
        except TransportError as exc:
            self._retry_later(email, run_time, now + RETRY_AFTER)
            if isinstance(exc, SenderRefusedError):  # the streak's rows went back to deferred
                for other, other_edition in exc.deferred:
                    other_sub = config.subscriber(other)
                    if other_sub is not None and isinstance(other_edition, date) \
                            and other_sub.email.lower() != email.lower():
                        noon = datetime.combine(other_edition, datetime.min.time().replace(
                            hour=12), ZoneInfo(other_sub.timezone))
                        self._retry_later(other, noon, now + RETRY_AFTER)
            return self._report(FireResult(email, run_time, edition, "deferred",
                                           f"{exc}; retrying at {now + RETRY_AFTER:%H:%M} UTC"))
        except FeedError as exc:
            # A feed outage must not cost the day's digest, but a retry past the catch-up
            # window would be as stale as the missed run it stands for.
            retry_at = now + RETRY_AFTER
            if retry_at - run_time > config.settings.catch_up:
                return self._report(FireResult(email, run_time, edition, "failed",
                                               f"feed unavailable: {exc}; past the catch-up "
                                               "window, not retried"))
            self._retry_later(email, run_time, retry_at)
            return self._report(FireResult(email, run_time, edition, "deferred",
                                           f"feed unavailable: {exc}; retrying at "
                                           f"{retry_at:%H:%M} UTC"))
        except DigestError as exc:
            return self._report(FireResult(email, run_time, edition, "failed", str(exc)))
        except Exception as exc:  # a bug must not kill the worker thread silently
            log.exception("fire %s: unexpected error", email)
            return self._report(FireResult(email, run_time, edition, "failed", repr(exc)))
        return self._report(self._outcome(delivery, run_time, now))

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
