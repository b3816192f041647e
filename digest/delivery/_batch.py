"""A whole run: papers, summaries and the MJML template once, a pool of transports, streaming so
memory stays flat in the number of subscribers; big SMTP runs split over spawned process shards,
each with its own share of the pool, while the parent holds the send lock.
"""

from __future__ import annotations

import collections
import gc
import ipaddress
import logging
import math
import os
import queue
import select
import signal
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from digest.compose import LazySummaries, edition_for, edition_in
from digest.cron import fires_on
from digest.delivery._edition import (
    EditionRun,
    EmailRenderer,
    Ready,
    RefusalStreak,
    RetryPolicy,
    Started,
    finish_edition,
    prepare_edition,
    start_edition,
)
from digest.delivery._history import edition_history
from digest.delivery._transports import Transport, TransportFactory, open_transport
from digest.errors import (
    DigestError,
    SenderRefusedError,
    TransportError,
)
from digest.ledger import (
    LedgerStore,
    SelectionState,
    SendLock,
    check_new_ledger,
    open_ledger,
    open_send_lock,
)
from digest.models import (
    Config,
    Delivery,
    Outcome,
    Paper,
    Selection,
    Settings,
    StreamedConfig,
    Subscriber,
)
from digest.selection import Selector

if TYPE_CHECKING:  # multiprocessing is imported only by a sharded run
    from multiprocessing.process import BaseProcess

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- a whole run


_COUNTER = {Outcome.DEFERRED: "deferred", Outcome.FAILED: "failed",
            Outcome.ALREADY_SENT: "already_sent", Outcome.NOTHING_NEW: "nothing_new",
            Outcome.SUPPRESSED: "suppressed", Outcome.PAUSED: "paused",
            Outcome.FAILED_BEFORE: "failed_before",
            Outcome.WOULD_SEND: "would_send", Outcome.UNCERTAIN: "uncertain"}


@dataclass
class SendReport:
    """The outcome of a run: counts for the closing table, and the deliveries that need a
    human's attention (failed, deferred, possible duplicates), never every delivery."""

    sent: int = 0
    already_sent: int = 0
    nothing_new: int = 0
    suppressed: int = 0
    paused: int = 0  # paused on the preferences page of digest serve
    deferred: int = 0
    failed: int = 0
    failed_before: int = 0
    would_send: int = 0  # dry run
    possible_duplicates: int = 0
    uncertain: int = 0  # held: the server may have accepted it; the admin resolves it
    not_due: int = 0  # subscribers whose schedule has no send today (not in ``total``)
    stopped: bool = False  # a graceful stop (SIGTERM) ended the run before everyone was reached
    problems: list[Delivery] = field(default_factory=list)  # the first MAX_PROBLEMS

    MAX_PROBLEMS = 1000  # a run against a broken server must not hold every failure

    def add(self, d: Delivery) -> None:
        outcome = d.outcome
        assert outcome is not None  # set by Delivery.__post_init__
        if outcome in (Outcome.SENT, Outcome.POSSIBLE_DUPLICATE):
            self.sent += 1
            if outcome is Outcome.POSSIBLE_DUPLICATE:
                self.possible_duplicates += 1
                self._note(d)
            return
        if outcome in (Outcome.DEFERRED, Outcome.FAILED, Outcome.UNCERTAIN):
            self._note(d)
        setattr(self, _COUNTER[outcome], getattr(self, _COUNTER[outcome]) + 1)

    def _note(self, d: Delivery) -> None:
        if len(self.problems) < self.MAX_PROBLEMS:
            self.problems.append(d)

    @property
    def total(self) -> int:
        return (self.sent + self.already_sent + self.nothing_new + self.suppressed + self.paused
                + self.deferred + self.failed + self.failed_before + self.would_send
                + self.uncertain)

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing waits for the admin's word."""
        return self.failed == 0 and self.uncertain == 0


@dataclass(frozen=True)
class _Job:
    subscriber: Subscriber
    edition: date
    selection: Selection | None  # None: replay of a pending row from an earlier edition
    # What the ledger said of it as the job was made (the selection's read). A run takes each
    # job as it builds it, so prepare_edition takes this for its read right before the build
    # instead of asking again (one statement a message less); None: it reads.
    state: SelectionState | None = None


@dataclass(frozen=True)
class _Due:
    """Which subscribers a manual send addresses (the rule ``due`` states), as a value a shard
    can take along and apply to its share as it reads it."""

    now: datetime
    only: str | None = None
    ignore_schedule: bool = False

    def __call__(self, sub: Subscriber) -> bool:
        if self.only is not None:
            return sub.email.lower() == self.only.strip().lower()
        return self.ignore_schedule or self._fires(sub.timezone, sub.schedule)

    def _fires(self, timezone: str, schedule: str) -> bool:
        return fires_on(schedule, timezone, edition_in(timezone, self.now))

    def count(self, subscribers: Sequence[Subscriber],
              schedules: Mapping[tuple[str, str], int] | None = None) -> int:
        """How many of ``subscribers`` are due; from ``schedules`` (how many have each
        (timezone, schedule)) when given, without reading them (a spilled list would be
        unpickled whole: 0.14 s for 10,000)."""
        if schedules is not None and self.only is None:
            return len(subscribers) if self.ignore_schedule else sum(
                n for (timezone, schedule), n in schedules.items()
                if self._fires(timezone, schedule))
        return sum(1 for s in subscribers if self(s))


def due(config: Config | StreamedConfig, now: datetime, only: str | None = None, *,
        ignore_schedule: bool = False) -> tuple[Subscriber, ...]:
    """The subscribers a manual send addresses: those whose schedule has a send on their local
    date of ``now`` (a mon-fri subscriber gets no Saturday edition), every subscriber with
    ``ignore_schedule``, or just the one named by ``only`` (an explicit request wins over the
    schedule). ``send_all`` applies the same rule as it reads them, without holding them."""
    return tuple(filter(_Due(now, only, ignore_schedule), config.subscribers))


def send_all(config: Config | StreamedConfig, papers: Iterable[Paper], now: datetime, *,
             only: str | None = None, dry_run: bool = False, force: bool = False,
             environ: Mapping[str, str] | None = None,
             progress: Callable[[Delivery], None] | None = None,
             renderer: EmailRenderer | None = None,
             transports: TransportFactory | None = None,
             retry: RetryPolicy = RetryPolicy(), lock: bool = True,
             processes: int | None = None, ignore_schedule: bool = False,
             new_ledger: bool = False, stop: _EventLike | None = None,
             counted: Callable[[int], None] | None = None) -> SendReport:
    """Send the current edition (the subscriber's local date of ``now``) to every subscriber
    (or ``only`` one), after finishing editions left ``sending``/``deferred`` by earlier runs.

    Streams: each of ``transports.connections`` sending threads takes the next subscriber,
    selects, renders and builds, and sends (building the next message while the server stores
    the one before, ``_run``); nothing per subscriber is
    kept beyond the counts, and the subscribers are read one at a time (from a
    ``StreamedConfig``, they are never all in memory). Big SMTP runs on machines with CPUs to
    spare are split over ``processes`` shards (default: from ``PROCESS_THRESHOLD`` subscribers
    and ``MIN_CPUS_FOR_SHARDS`` CPUs on, one per CPU, at most ``smtp.connections``) because
    rendering and building are CPU work the GIL would otherwise serialize; each shard reads
    every ``shards``-th subscriber itself. ``lock=False`` is for a caller that already holds
    the database's ``SendLock`` (``digest run``).
    ``stop`` (set from a signal handler) ends the run gracefully: the messages in flight are
    finished and recorded, nothing new is started, and the report says ``stopped``.
    ``new_ledger`` allows creating a ledger where earlier runs left their mark. ``counted``
    is told how many subscribers the run addresses (``len(due(...))``) before it starts.

    Raises ``LockedError`` if another process sends with the same database, ``TransportError``
    if the transport is unusable (nothing more is sent)."""
    settings = config.settings
    wanted = _Due(now, only, ignore_schedule)
    count = wanted.count(config.subscribers, config.schedules  # or one pass: none kept
                         if isinstance(config, StreamedConfig) else None)
    not_due = len(config.subscribers) - count if only is None else 0
    if counted is not None:
        counted(count)
    send_lock = open_send_lock(settings.database) if lock and not dry_run else None
    if send_lock is not None:
        send_lock.acquire()
    try:
        if not dry_run:
            check_new_ledger(settings.database, allow_new=new_ledger,
                             outbox=settings.outbox if settings.delivery == "outbox" else None)
        # Checks what can be checked offline (password present, ca_file) before any work.
        factory = None if dry_run else (transports or open_transport(settings, environ))
        paper_list = tuple(papers)
        shards = processes if processes is not None else _auto_processes(
            settings, count, dry_run)
        if shards > 1 and transports is None and renderer is None:
            report = _send_sharded(config, wanted, paper_list, now, shards=shards,
                                   force=force, environ=environ, progress=progress, retry=retry,
                                   outer_stop=stop)
        else:
            report = _send_shard(settings, config.subscribers, wanted, paper_list, now,
                                 factory=factory,
                                 renderer=renderer, force=force, environ=environ,
                                 progress=progress, retry=retry, dry_run=dry_run, stop=stop)
        report.not_due = not_due
        report.stopped = stop is not None and stop.is_set()
        return report
    finally:
        if send_lock is not None:
            send_lock.release()


# Shards pay for themselves only on big runs: each one starts an interpreter and builds its own
# index, summaries and templates (~1 s). Before the one-thread loop (_loop), 10,000 digests on
# 2 CPUs took one process 39-42 s and two shards 27-33 s; with it, one process is the faster
# path when the server shares the CPUs (LOCAL_SERVER_CPUS). docs/delivery.md has the table.
PROCESS_THRESHOLD = 5000  # subscribers
MIN_CPUS_FOR_SHARDS = 2
# CPUs left to a mail server on this machine (``smtp.host`` a loopback address): it receives
# each message with as much CPU as we spend building it, so a shard more than the CPUs it
# leaves only takes turns with it. bench/bench_send.py, 10,000 on 2 CPUs, alternating: one
# process 15.4-17.7 s (14.5-16.4 CPU s), two shards 17.3-19.1 s (19.6-22.0 CPU s).
LOCAL_SERVER_CPUS = 1


def _auto_processes(settings: Settings, count: int, dry_run: bool,
                    cpus: int | None = None) -> int:
    """How many process shards a run of ``count`` subscribers takes by default on ``cpus``
    CPUs (default: the ones this process may use): one per CPU, less ``LOCAL_SERVER_CPUS``
    for a mail server on this machine, at most one per connection, and one unless the run
    is big enough to pay for starting them."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
    if dry_run or settings.delivery != "smtp" or settings.smtp is None \
            or count < PROCESS_THRESHOLD or cpus < MIN_CPUS_FOR_SHARDS:
        return 1
    if _is_local(settings.smtp.host):
        cpus -= LOCAL_SERVER_CPUS
    return max(1, min(cpus, settings.smtp.connections))


def _is_local(host: str) -> bool:
    """Whether ``host`` names this machine without asking DNS: ``localhost`` or a loopback
    address (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _send_shard(settings: Settings, subscribers: Sequence[Subscriber], wanted: _Due,
                paper_list: tuple[Paper, ...], now: datetime, *,
                factory: TransportFactory | None, renderer: EmailRenderer | None, force: bool,
                environ: Mapping[str, str] | None, progress: Callable[[Delivery], None] | None,
                retry: RetryPolicy, dry_run: bool, stop: _EventLike | None = None
                ) -> SendReport:
    """One process's share of a run (all of it, unless sharded): the ``wanted`` ones of
    ``subscribers``, read one at a time. What the ledger knows of each (history, feedback,
    preferences) is asked per address as it comes, never read whole: those tables grow with
    the list."""
    ledger = open_ledger(settings.database)
    try:
        selector = Selector(paper_list)
        run = _process_run(settings, ledger, paper_list, now, environ, retry,
                           renderer=renderer, selector=selector, dry_run=dry_run)
        # the rows earlier runs left to finish: as many as failed then, not one per subscriber
        pending = {(r.email, r.edition) for r in ledger.pending()}
        owed = {email for email, _edition in pending}

        def jobs() -> Iterable[_Job]:
            # Only subscribers with a pending row are looked up (a pass more only when some
            # are owed): no per-subscriber map is kept.
            found = {s.email.lower(): s for s in subscribers if s.email.lower() in owed
                     and wanted(s)} if owed else {}
            for email, edition in sorted(pending, key=lambda k: (k[1], k[0])):
                sub = found.get(email)
                if sub is not None and edition != edition_for(sub, now):
                    yield _Job(sub, edition, None)  # an earlier edition still owed
            found.clear()
            for sub in subscribers:  # one selector: its memo tables are bounded inside it
                if not wanted(sub):
                    continue
                edition = edition_for(sub, now)
                email = sub.email.lower()
                # history, preferences, feedback and the row in one read (prepare_edition
                # reads suppression, preferences and the row again, right before sending)
                state = ledger.selection_state(email, edition)
                row = state.row if force or (email, edition) in pending else None
                known = edition_history(state.history, row, force=force)
                chosen = state.preferences  # digest serve's page, over the YAML
                if chosen is not None:  # (deliver_edition checks the pause)
                    sub = chosen.apply(sub)
                yield _Job(sub, edition, selector.select(  # "N more matched" needs the cut
                    sub, known, state.feedback,  # digest feedback
                    with_cut=bool(settings.base_url)), state)

        return _run(jobs(), factory, run, paper_list=paper_list, force=force,
                    progress=progress, stop=stop or threading.Event())
    finally:
        ledger.close()


def _process_run(settings: Settings, ledger: LedgerStore, paper_list: tuple[Paper, ...],
                 now: datetime, environ: Mapping[str, str] | None, retry: RetryPolicy, *,
                 renderer: EmailRenderer | None = None, selector: Selector | None = None,
                 dry_run: bool = False) -> EditionRun:
    """What one process's deliveries share: the renderer and selector (made here unless
    given), the summaries (once per paper, on demand), the unsubscribe secret, and a refusal
    streak of its own (a shard's run sees its own recipients in a row)."""
    env = {} if environ is None else environ
    secret = env.get(settings.unsubscribe_secret_env) if settings.unsubscribe_secret_env else None
    if renderer is None:
        from digest.render import Renderer  # the heavy MJML import only when sending
        renderer = Renderer(settings.templates, max_bytes=settings.max_email_bytes)
    return EditionRun(ledger=ledger, renderer=renderer, settings=settings,
                      summaries=LazySummaries(paper_list, settings.summary_chars), now=now,
                      selector=selector or Selector(paper_list), unsubscribe_secret=secret,
                      retry=retry, dry_run=dry_run, streak=RefusalStreak())


class _EventLike(Protocol):
    def is_set(self) -> bool: ...

    def set(self) -> None: ...


# ---------------------------------------------------------------------- process shards


def _shard_settings(settings: Settings, index: int, shards: int) -> Settings:
    """The SMTP pool and rate limit split over the shards, so the run as a whole keeps to
    ``smtp.connections`` connections and ``smtp.max_per_second``."""
    smtp = settings.smtp
    if smtp is None:
        return settings
    total = max(1, smtp.connections)
    mine = max(1, total // shards + (1 if index < total % shards else 0))
    rate = smtp.max_per_second / shards if smtp.max_per_second else None
    return replace(settings, smtp=replace(smtp, connections=mine, max_per_second=rate))


# A shard reports its outcomes to the parent this many at a time (or every TICK_SECONDS),
# not one pickled ``Delivery`` per message; and checks the parent's stop and its own orphaning
# every STOP_POLL seconds from one thread, not a multiprocessing Event and ``getppid`` per
# message (bench/bench_send.py has a row for each).
TICK_BATCH = 64
TICK_SECONDS = 0.25
STOP_POLL = 0.1


class _ShardStop:
    """A shard's stop flag, cheap to read per message: set when the parent says so, or when
    the parent (the lock holder) is gone, since a shard must never send without the lock
    held. ``poll=0`` asks both on every read instead (the plain way)."""

    def __init__(self, stop: Any, parent: int, poll: float) -> None:
        self._stop, self._parent, self._poll = stop, parent, poll
        self._flag = threading.Event()
        self._done = threading.Event()
        if poll > 0:
            threading.Thread(target=self._watch, name="digest-shard-stop", daemon=True).start()

    def _asked(self) -> bool:
        return bool(self._stop.is_set()) or os.getppid() != self._parent

    def _watch(self) -> None:
        while not self._done.wait(self._poll):
            if self._asked():
                self._flag.set()
                return

    def is_set(self) -> bool:
        if self._flag.is_set():
            return True
        if self._poll <= 0 and self._asked():
            self._flag.set()
        return self._flag.is_set()

    def set(self) -> None:
        self._flag.set()
        self._stop.set()

    def close(self) -> None:
        self._done.set()


class _Ticks:
    """Outcomes on their way to the parent, ``every`` at a time (``every=1``: one each)."""

    def __init__(self, events: Any, every: int) -> None:
        self._events, self._every = events, max(1, every)
        self._held: list[Delivery] = []
        self._since = time.monotonic()

    def __call__(self, d: Delivery) -> None:  # called under the pool's report lock
        self._held.append(d)
        if len(self._held) >= self._every or time.monotonic() - self._since >= TICK_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._held:
            self._events.put(("ticks", self._held))
            self._held = []
        self._since = time.monotonic()


def _shard_main(settings: Settings, subscribers: Sequence[Subscriber], wanted: _Due,
                paper_list: tuple[Paper, ...], now: datetime, force: bool,
                environ: dict[str, str], retry: RetryPolicy, index: int, shards: int,
                parent: int, events: Any, stop: Any, tick_batch: int = TICK_BATCH,
                stop_poll: float = STOP_POLL) -> None:
    """A worker process: its share of the subscribers (every ``shards``-th of the config's,
    the ``wanted`` ones of which it sends), its own ledger connection and SMTP pool; its
    outcomes go back to the parent in batches, which counts and shows progress."""
    # A signal to the whole process group must not kill a shard mid-message: the parent
    # decides, and tells the shards through ``stop``.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    mine = _shard_settings(settings, index, shards)
    guard = _ShardStop(stop, parent, stop_poll)
    ticks = _Ticks(events, tick_batch)

    def body() -> None:
        _send_shard(mine, subscribers, wanted, paper_list, now,
                    factory=open_transport(mine, environ), renderer=None, force=force,
                    environ=environ, progress=ticks, retry=retry, dry_run=False, stop=guard)

    _post_outcome(body, events, ticks, guard)


def _post_outcome(body: Callable[[], object], events: Any, ticks: _Ticks,
                  guard: _ShardStop) -> None:
    """Run a shard's ``body`` and tell the parent how it ended, after the outcomes still
    batched: ``("done",)`` or ``("error", kind, text, *extra)``, which ``_raise_first``
    turns back into the exception in the parent."""
    try:
        body()
    except SenderRefusedError as exc:
        ticks.flush()
        events.put(("error", "refused", str(exc), exc.deferred))
    except TransportError as exc:
        ticks.flush()
        events.put(("error", "transport", str(exc)))
    except DigestError as exc:
        ticks.flush()
        events.put(("error", "digest", str(exc)))
    except BaseException as exc:  # a bug: say where, the parent re-raises it
        ticks.flush()
        events.put(("error", "bug", "".join(traceback.format_exception(exc))))
    else:
        ticks.flush()
        events.put(("done",))
    finally:
        guard.close()


def _raise_first(errors: Sequence[tuple[Any, ...]]) -> None:
    """The first shard error ``_post_outcome`` sent, raised again here (nothing if none)."""
    if not errors:
        return
    kind, text, *rest = errors[0]
    if kind == "refused":
        raise SenderRefusedError(text, rest[0])
    raise TransportError(text) if kind == "transport" else DigestError(text)


def _ledger_ready(settings: Settings) -> None:
    """The ledger made (or brought to the current schema) here, before the shards start: a
    new or old ledger is migrated by Alembic, whose import (SQLAlchemy, Alembic, Mako,
    Pygments: ~25 MB) would otherwise land in whichever shard writes first and make it the
    biggest process of the run (bench/bench_memory.py); a ledger at the head revision costs
    one query."""
    with open_ledger(settings.database) as ledger:
        ledger.create()


def _shard_env(settings: Settings, environ: Mapping[str, str] | None) -> dict[str, str]:
    """What of the environment travels to the shards: only the variables the settings name."""
    source = os.environ if environ is None else environ
    smtp = settings.smtp
    names = (smtp.password_env if smtp else None, settings.unsubscribe_secret_env)
    return {k: source[k] for k in names if k and k in source}


def _collect(procs: Sequence[Any], events: Any, halt: Any, outer_stop: _EventLike | None,
             progress: Callable[[Delivery], None] | None
             ) -> tuple[SendReport, list[tuple[Any, ...]]]:
    """The shards' outcomes (``ticks``) to ``progress``, in this thread, until every shard has
    said ``done`` or sent an error; an error (or ``outer_stop``) sets ``halt``, so the others
    finish their messages in flight and stop. Returns the report and the errors, each
    ``(kind, text, *extra)``; raises ``DigestError`` if a shard process died."""
    total = SendReport()
    errors: list[tuple[Any, ...]] = []
    running = len(procs)
    while running:
        if outer_stop is not None and outer_stop.is_set():
            halt.set()
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                raise DigestError("a sending process died unexpectedly") from None
            continue
        if event[0] == "ticks":
            for delivery in event[1]:
                total.add(delivery)
                if progress is not None:
                    progress(delivery)
        else:
            running -= 1  # "done": its outcomes already arrived as ticks
            if event[0] != "done":
                errors.append(tuple(event[1:]))
                halt.set()
    return total, errors


def _send_sharded(config: Config | StreamedConfig, wanted: _Due,
                  paper_list: tuple[Paper, ...], now: datetime, *, shards: int, force: bool,
                  environ: Mapping[str, str] | None, progress: Callable[[Delivery], None] | None,
                  retry: RetryPolicy, outer_stop: _EventLike | None = None,
                  tick_batch: int = TICK_BATCH, stop_poll: float = STOP_POLL) -> SendReport:
    import multiprocessing

    # spawn, not fork: the parent may run threads (a progress bar) and holds SQLite handles.
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    stop = ctx.Event()
    env = _shard_env(config.settings, environ)
    _ledger_ready(config.settings)
    # A shard's share is a slice: of a tuple, its subscribers; of a StreamedConfig's file, where
    # they are in it (8 bytes each), so the parent never pickles them all.
    procs = [ctx.Process(target=_shard_main, name=f"digest-shard-{i}", daemon=True, args=(
        config.settings, config.subscribers[i::shards], wanted, paper_list, now, force, env,
        retry, i, shards, os.getpid(), events, stop, tick_batch, stop_poll))
        for i in range(shards)]
    _start_all(procs)
    try:
        total, errors = _collect(procs, events, stop, outer_stop, progress)
    except BaseException:  # the parent itself interrupted, or a shard died: stop the others
        stop.set()
        raise
    finally:
        for p in procs:
            p.join(timeout=60)
    _raise_first(errors)
    return total



def _start_all(procs: Sequence[BaseProcess]) -> None:
    """Start the shards side by side: a spawned process's ``start`` returns only once the child
    has booted and read its arguments (its imports included), so one after another the second
    shard started ~0.6 s after the first and sent its first message ~0.85 s after it. Raises
    the first failure to start, after the rest."""
    failed: list[BaseException] = []

    def start(p: BaseProcess) -> None:
        try:
            p.start()
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    starters = [threading.Thread(target=start, args=(p,), name=f"start-{p.name}")
                for p in procs[1:]]
    for t in starters:
        t.start()
    start(procs[0])
    for t in starters:
        t.join()
    if failed:
        raise failed[0]


def deliver_many(editions: Iterable[tuple[Subscriber, date]], papers: tuple[Paper, ...],
                 run: EditionRun, transports: TransportFactory, *,
                 progress: Callable[[Delivery], None] | None = None,
                 stop: _EventLike | None = None, expected: int = 0,
                 processes: int | None = None,
                 environ: Mapping[str, str] | None = None) -> SendReport:
    """Deliver each ``(subscriber, edition)`` of ``editions`` through the pool of
    ``transports.connections`` workers that ``send_all`` uses, sharing ``run`` (its selector,
    summaries, renderer and refusal streak): what ``digest run`` does with the fires due
    together. ``editions`` may be a generator that blocks while more fires arrive; each is
    selected against the subscriber's history in the ledger by ``deliver_edition`` (no
    history is loaded up front, so a later edition in the same stream sees an earlier one).
    Never two of the same (subscriber, edition): the caller keeps them apart.

    ``progress`` sees every ``Delivery`` as it is recorded; ``stop`` ends the run gracefully
    (messages in flight finish, the rest are not started). Raises what ``send_all`` raises
    (``TransportError``, ``SenderRefusedError``) after the messages in flight finished.

    ``expected`` (how many editions the stream will bring) decides, by ``send_all``'s rule,
    whether they go over process shards instead (``processes`` overrides, as in
    ``send_all``): each shard then builds its own renderer, selector, summaries, refusal
    streak and transports from ``run.settings`` and ``environ``, and ``transports`` is not
    used."""
    # The same rule as digest send's, a local server's CPU left to it. It used to keep a
    # shard on that CPU too, the daemon's own process firing the burst's jobs while it sent
    # (10,000 in one process: 29.6-31.4 s against 22.3-26.3 s for digest send); since a
    # burst's fires share one cron search (digest/cron.py) one process is the faster again:
    # bench/bench_daemon.py --one-process, 10,000 on 2 CPUs, the same run: 10.8-11.9 s in
    # one process, 13.4-14.6 s over two shards, digest send 10.0 s.
    shards = processes if processes is not None else _auto_processes(
        run.settings, expected, run.dry_run)
    if shards > 1 and not run.dry_run:
        log.info("%d editions expected: over %d process shards", expected, shards)
        return _deliver_sharded(editions, papers, run.settings, run.now, shards=shards,
                                environ=environ, progress=progress, stop=stop,
                                retry=run.retry)
    jobs = (_Job(sub, edition, None) for sub, edition in editions)
    return _run(jobs, transports, run, paper_list=papers, force=False, progress=progress,
                stop=stop or threading.Event(), stream=True)


def _run(jobs: Iterable[_Job], factory: TransportFactory | None, shared: EditionRun, *,
         paper_list: tuple[Paper, ...], force: bool,
         progress: Callable[[Delivery], None] | None, stop: _EventLike,
         overlap: bool = True, stream: bool = False) -> SendReport:
    """The jobs over ``factory.connections`` connections. With ``overlap``, one thread keeps
    them all going (``_loop``): it builds the next message while the server answers the ones
    in flight; a ``stream`` whose next job may be long in coming (the daemon's fires) is
    read by a thread of its own (``_Feeder``), so no outcome waits for the next fire.
    Without ``overlap`` (a process shard's stream from its parent), one sending thread per
    connection, each taking the next job itself (under a lock: no producer thread, no queue)
    and finishing each message before it takes the next. With one connection, that runs in
    the calling thread."""
    if overlap and factory is not None:
        return _loop(iter(jobs), factory, shared, paper_list=paper_list, force=force,
                     progress=progress, stop=stop, stream=stream)
    report = SendReport()
    report_lock = threading.Lock()
    take_lock = threading.Lock()
    workers = 1 if factory is None else max(1, factory.connections)
    failure: list[BaseException] = []
    source = iter(jobs)
    # One transport per sending thread (SMTP connects on its first send; a refused login then
    # puts that one row back to ``deferred`` and stops the run).
    opened: list[Transport | None] = [None if factory is None else factory()
                                      for _ in range(workers)]

    def record(delivery: Delivery) -> None:
        with report_lock:
            report.add(delivery)
            if progress is not None:
                progress(delivery)

    def worker(transport: Transport | None) -> None:
        started: Started | None = None

        def settle() -> None:
            """The message in flight on this connection, if any, finished and recorded."""
            nonlocal started
            if started is not None:
                done, started = started, None
                record(finish_edition(done))

        try:
            while not stop.is_set():
                settle()
                with take_lock:  # the jobs (selection, ledger reads) are made one at a time
                    job = next(source, None)
                if job is None:
                    break
                ready = prepare_edition(
                    job.subscriber, job.edition, paper_list, shared,
                    force=force and job.selection is not None, selection=job.selection,
                    ledger_state=job.state)
                if isinstance(ready, Delivery):
                    record(ready)
                    continue
                if transport is None:
                    raise ValueError("a run needs a transport unless dry_run")
                if stop.is_set():  # built but never begun: nothing of it is in the ledger
                    break
                started = start_edition(ready, transport)
            settle()
        except BaseException as exc:  # TransportError, a template bug, ...: stop all
            failure.append(exc)
            stop.set()
            try:
                settle()  # the message in flight is finished and recorded even so
            except BaseException as more:
                failure.append(more)
        finally:
            if transport is not None:
                transport.close()

    if workers == 1:
        worker(opened[0])
    else:
        threads = [threading.Thread(target=worker, args=(t,), name=f"digest-send-{i}",
                                    daemon=True) for i, t in enumerate(opened)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if failure:
        raise failure[0]
    return report


class _Later:
    """``_Feeder.take``'s answer when the stream's next job has not come yet."""


_LATER = _Later()


class _Feeder:
    """A stream of jobs read by a thread of its own, up to ``AHEAD`` jobs ahead of the loop,
    with a socket the loop's ``select`` wakes on when jobs come.

    The thread reads on while the stream has jobs ready (a burst's fires are all queued at
    once), so one wake-up of the loop brings many: waking it for each job, one ahead, cost
    about a third of the loop's time in a 10,000-fire burst. A job comes out as soon as the
    stream gives it (never held back to fill a batch), so no outcome waits for the next
    fire. Jobs read but not begun when the run stops are left unbegun: nothing of them is in
    the ledger, and the stream's owner knows which it handed over and heard nothing of (the
    daemon parks them for its next start).

    The room the loop makes goes back to the thread ``REFILL`` jobs at a time: a thread woken
    for every job taken took the GIL from the loop ~10,000 times a burst. It is never short of
    room when the loop has nothing: at most ``REFILL - 1`` of ``AHEAD`` is held back."""

    AHEAD = 256
    REFILL = 64

    def __init__(self, source: Iterator[_Job]) -> None:
        self._source = source
        self._room = threading.Semaphore(self.AHEAD)
        self._taken = 0  # room made since the thread was last given any
        self._answers: collections.deque[tuple[_Job | None, BaseException | None]] = \
            collections.deque()
        self._came = threading.Condition(threading.Lock())
        self._wake, self._ring = socket.socketpair()
        self._rung = False  # a byte is in the socket: answers are waiting
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="digest-stream", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            self._room.acquire()
            if self._closing:
                return
            try:
                answer: tuple[_Job | None, BaseException | None] = (next(self._source, None),
                                                                    None)
            except BaseException as exc:  # raised in the loop's thread, where it belongs
                answer = (None, exc)
            with self._came:
                self._answers.append(answer)
                ring, self._rung = not self._rung, True
                self._came.notify()
            if ring:
                self._ring.send(b".")
            if answer[0] is None:
                return

    def fileno(self) -> int:
        return self._wake.fileno()

    def take(self, *, block: bool) -> _Job | None | _Later:
        """The next job, None at the stream's end, or ``_LATER`` (only when not ``block``)."""
        with self._came:
            while not self._answers:
                if not block:
                    return _LATER
                self._came.wait()
            job, error = self._answers.popleft()
            if not self._answers:  # the loop's select waits on the socket again
                self._wake.recv(1)  # sent, or about to be: the thread rang before it let go
                self._rung = False
            self._taken += 1
            give = self._taken == self.REFILL
            if give:
                self._taken = 0
        if give:
            self._room.release(self.REFILL)
        if error is not None:
            raise error
        return job

    def close(self) -> None:
        """Ends the thread. A job it is reading is waited for (as a sending thread would have
        waited in the stream); what was read and not taken is left unbegun."""
        self._closing = True
        self._room.release()
        self._thread.join()
        self._wake.close()
        self._ring.close()


# The cyclic collector's thresholds while a run's loop goes (gc.set_threshold): the young
# generation collected every 50,000 allocations, not 700; the middle one every 50 of those
# passes and the oldest every 1,000, not 10 each. Restored when the loop ends.
_RUN_THRESHOLDS = (50_000, 50, 1_000)


def _loop(source: Iterator[_Job], factory: TransportFactory, shared: EditionRun, *,
          paper_list: tuple[Paper, ...], force: bool,
          progress: Callable[[Delivery], None] | None, stop: _EventLike,
          stream: bool = False) -> SendReport:
    """The jobs over ``factory.connections`` connections from the calling thread: each message
    in flight pauses before every reply it reads (``start_edition(whole=False)``), and while
    the server answers, the next message is built (one ahead, not yet in the ledger). A reply
    that has arrived is read first, a free connection takes the message built, else the next
    one is built, else the loop waits for the first reply or time-out. No thread hand-offs,
    and the CPU work of one message overlaps every round trip of the others.

    The ledger holds what the loop writes and commits it in batches (docs/delivery.md):
    - a ``sent`` (``finish_edition(hold=True)``) until the next commit, so a crash in between
      leaves that row ``sending``, re-sent once as a possible duplicate, as a crash during
      its final reply would (at most one a connection still: each held row's connection is
      idle until the commit);
    - a ``begin`` (``start_edition(whole=False)``) too: a message whose server asks for its
      body before its row is committed is *parked*, and the loop commits when it starts its
      next message (both begins, and the held sents, in one transaction), then writes the
      parked bodies. No body leaves before its row is on disk.
    The loop also commits (and writes what is parked) before it can wait, for a reply or the
    stream's next job, and at the end, so nothing is held longer than about one build.

    A failure (``TransportError``, a template bug, a refusal streak) stops the run: the
    messages in flight are finished and recorded, then it is raised."""
    report = SendReport()
    ledger = shared.ledger
    free: list[Transport] = [factory() for _ in range(max(1, factory.connections))]
    flying: dict[int, tuple[Started, float]] = {}  # by socket: the message and its deadline
    # The sockets of ``flying`` (and the stream's), registered as they go in and out: a poll
    # with nothing to build each time (it runs several times a message, mostly finding one
    # reply or none).
    poller = select.poll()
    soonest = math.inf  # no deadline in ``flying`` is earlier (one too early costs a look)
    tls: dict[int, ssl.SSLSocket] = {}  # the sockets in ``flying`` that are TLS
    ahead: Ready | None = None  # built, waiting for a free connection
    # asked for their body before their held begin was committed: sent on at the next commit
    parked: list[Started] = []
    exhausted = False

    def record(delivery: Delivery) -> None:
        report.add(delivery)
        if progress is not None:
            progress(delivery)

    def settle(started: Started) -> None:
        free.append(started.transport)
        record(finish_edition(started, hold=True))

    def track(started: Started) -> None:
        nonlocal soonest
        wait = started.flight.waiting()
        if wait is None:  # its outcome is in (an outbox, a refusal before the first reply)
            settle(started)
            return
        if wait.commit:  # its body waits for its begin to be committed
            parked.append(started)
            return
        fd, deadline = wait.sock.fileno(), time.monotonic() + wait.timeout
        flying[fd] = (started, deadline)
        poller.register(fd, select.POLLIN | select.POLLPRI)
        if isinstance(wait.sock, ssl.SSLSocket):
            tls[fd] = wait.sock
        soonest = min(soonest, deadline)

    def commit() -> None:
        """Commit what the ledger holds, then write the bodies that waited for it."""
        ledger.flush()
        waiting, parked[:] = parked[:], []
        for started in waiting:
            started.flight.step()
            track(started)

    def land(fd: int, *, expired: bool) -> None:
        """The message waiting on ``fd`` goes on to its next wait, or is finished."""
        started, _deadline = flying.pop(fd)
        poller.unregister(fd)
        tls.pop(fd, None)
        started.flight.step(expired=expired)
        track(started)

    def pump(timeout: float) -> None:
        """Read every reply that has arrived within ``timeout`` seconds (or until the stream's
        next job comes), and give up on the ones past their deadline; each message goes on to
        its next wait or is finished."""
        nonlocal soonest
        # a TLS connection may hold the reply decrypted already, where poll cannot see it
        came = {fd for fd, sock in tls.items() if sock.pending() > 0} if tls else set()
        wait = 0.0 if came else max(0.0, timeout)
        if wait:
            commit()
        came.update(fd for fd, _ in poller.poll(math.ceil(wait * 1000)))
        for fd in came:  # each once: a message that lands waits again, perhaps on this fd
            if fd in flying:  # (not the stream's socket, which only wakes the poll)
                land(fd, expired=False)
        now = time.monotonic()
        if now >= soonest:  # the deadlines are looked at only when one may have passed
            soonest = math.inf
            for fd, (_started, deadline) in list(flying.items()):
                if deadline <= now:
                    land(fd, expired=True)
                else:
                    soonest = min(soonest, deadline)

    def poll() -> None:
        """The replies that came while a message is being built, read at once."""
        if flying:
            pump(0.0)

    # What exists now (the feed, index, templates, the subscribers' config) lives as long as
    # the run: out of the collector's sight, each full collection only walks what the
    # messages leave behind (-0.25 s of 0.7 s collecting in 10,000 deliveries). And the
    # collector runs less often: a delivery leaves no garbage in cycles (10,000 of them left
    # ~1,900 objects for it to find in all), so its passes at the default 700 allocations
    # only walked the memos' entries (29 us a message, 3.7% of a send; 4 us at these).
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(*_RUN_THRESHOLDS)
    feeder = _Feeder(source) if stream else None
    if feeder is not None:
        poller.register(feeder.fileno(), select.POLLIN)
    try:
        while True:
            poll()
            if ahead is not None and free and not stop.is_set():
                transport = free[-1]  # stays in ``free`` (closed at the end) if this raises
                started, ahead = start_edition(ahead, transport, whole=False), None
                free.pop()
                track(started)
                if parked:  # its begin and theirs in one commit
                    commit()
                continue
            if ahead is None and not exhausted and not stop.is_set():
                if feeder is not None and not flying:
                    commit()  # the stream's next job may be a while
                job = next(source, None) if feeder is None else feeder.take(block=not flying)
                if job is None:
                    exhausted = True
                    continue
                if isinstance(job, _Later):  # replies are read until it comes
                    pump(min(deadline for _, deadline in flying.values()) - time.monotonic())
                    continue
                poll()
                built = prepare_edition(
                    job.subscriber, job.edition, paper_list, shared,
                    force=force and job.selection is not None, selection=job.selection,
                    ledger_state=job.state,
                    between=poll)
                if isinstance(built, Delivery):
                    record(built)
                else:
                    ahead = built
                continue
            if not flying:
                if parked:
                    commit()
                    continue
                break  # all done, or stopped with nothing in flight (``ahead`` never begun)
            pump(min(deadline for _, deadline in flying.values()) - time.monotonic())
        ledger.flush()
    except BaseException:
        # finished and recorded even so (a parked one commits its begin first, or is dropped)
        for started in [started for started, _deadline in flying.values()] + parked:
            try:
                settle(started)
            except BaseException:  # the first failure is the one raised
                log.debug("finishing a message after the run failed", exc_info=True)
        flying.clear()
        parked.clear()
        try:
            ledger.flush()
        except BaseException:  # the first failure is the one raised
            log.debug("recording the messages sent after the run failed", exc_info=True)
        raise
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        if feeder is not None:
            feeder.close()
        for transport in free:  # every message settled by now: each connection is free
            transport.close()
    return report


# ---------------------------------------------------------------------- a stream over shards


def _deliver_sharded(editions: Iterable[tuple[Subscriber, date]], papers: tuple[Paper, ...],
                    settings: Settings, now: datetime, *, shards: int,
                    environ: Mapping[str, str] | None = None,
                    progress: Callable[[Delivery], None] | None = None,
                    stop: _EventLike | None = None, retry: RetryPolicy = RetryPolicy(),
                    tick_batch: int = TICK_BATCH, stop_poll: float = STOP_POLL) -> SendReport:
    """``deliver_many`` over ``shards`` spawned processes, as ``send_all`` splits a big run:
    each shard has its own ledger connection, renderer, selector, summaries and share of the
    SMTP pool and rate (``_shard_settings``). ``editions`` is streamed to the shards through
    one queue as it arrives (it may be a generator that blocks while more fires come), so the
    shards take work as they free up. Outcomes come back in batches and reach ``progress`` in
    this thread. ``stop`` ends it gracefully: the messages in flight finish, nothing new is
    started (what was handed over but not started never gets a ``Delivery``). Raises
    ``TransportError`` (``SenderRefusedError`` with the rows it put back) or ``DigestError``
    after every shard has stopped."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # as _send_sharded: no fork under threads
    events = ctx.Queue()
    inbox = ctx.Queue()
    halt = ctx.Event()
    env = _shard_env(settings, environ)
    _ledger_ready(settings)
    procs = [ctx.Process(target=_stream_shard_main, name=f"digest-shard-{i}", daemon=True,
                         args=(settings, papers, now, env, retry, i, shards, os.getpid(),
                               inbox, events, halt, tick_batch, stop_poll))
             for i in range(shards)]
    _start_all(procs)
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            for pair in editions:
                if halt.is_set() or (stop is not None and stop.is_set()):
                    break
                inbox.put(pair)
        except BaseException as exc:  # a bug in the stream: stop the shards, re-raise below
            failure.append(exc)
            halt.set()
        finally:
            for _ in procs:
                inbox.put(None)  # one end mark per shard

    feeder = threading.Thread(target=feed, name="digest-shard-feed", daemon=True)
    feeder.start()
    try:
        total, errors = _collect(procs, events, halt, stop, progress)
    except BaseException:
        halt.set()
        raise
    finally:
        feeder.join()
        for p in procs:
            p.join(timeout=60)
        try:  # what no shard took (a stop): not left in the pipe for a feeder thread
            while True:
                inbox.get(timeout=0.05)
        except queue.Empty:
            pass
        inbox.close()
        inbox.cancel_join_thread()
    if failure:
        raise failure[0]
    _raise_first(errors)
    return total


def _stream_shard_main(settings: Settings, paper_list: tuple[Paper, ...], now: datetime,
                       environ: dict[str, str], retry: RetryPolicy, index: int, shards: int,
                       parent: int, inbox: Any, events: Any, stop: Any, tick_batch: int,
                       stop_poll: float) -> None:
    """A ``deliver_sharded`` worker process: ``(subscriber, edition)`` pairs from ``inbox``
    until its end mark, through its own pool; outcomes to the parent in batches."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent decides, through ``stop``
        signal.signal(sig, signal.SIG_IGN)
    mine = _shard_settings(settings, index, shards)
    guard = _ShardStop(stop, parent, stop_poll)
    ticks = _Ticks(events, tick_batch)
    held = threading.Lock()  # the pool reports under its lock; the reader flushes when idle

    def report(d: Delivery) -> None:
        with held:
            ticks(d)

    def jobs() -> Iterable[_Job]:
        while not guard.is_set():
            try:
                item = inbox.get(timeout=TICK_SECONDS)
            except queue.Empty:
                with held:  # nothing new: what is done reaches the parent now, not later
                    ticks.flush()
                continue
            if item is None:
                return
            yield _Job(item[0], item[1], None)

    def body() -> None:
        ledger = open_ledger(mine.database)
        try:
            run = _process_run(mine, ledger, paper_list, now, environ, retry)
            _run(jobs(), open_transport(mine, environ), run, paper_list=paper_list,
                 force=False, progress=report, stop=guard, overlap=False)
        finally:
            ledger.close()

    _post_outcome(body, events, ticks, guard)
