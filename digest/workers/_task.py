"""What a worker does with one task: claim the row, run ``deliver_edition`` unchanged, settle.

Owns: ``WorkerContext`` (per worker process, built lazily after the fork: the config, the
ledger connection, the renderer, one SMTP transport behind the global rate bucket, and the
frozen editions already read) and ``run_job``. The claim is the ledger's atomic
``INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING``: no row back means already sent,
failed, or held by a live lease, and the task is done. ``deliver_edition`` sees the row as it
was before the claim (``ClaimedLedger``), so it tells a fresh edition from one in flight at a
crash exactly as in-process sending does.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from digest.delivery import (
    EditionRun,
    OutgoingMessage,
    SendResult,
    Transport,
    deliver_edition,
    open_transport,
)
from digest.errors import TransportError
from digest.ledger import (
    ArchivedEdition,
    Claim,
    EditionState,
    EditionStatus,
    FrozenEdition,
    LedgerRow,
    PostgresLedger,
    SelectionState,
    SkipRow,
)
from digest.models import (
    Config,
    Delivery,
    DeliveryState,
    Feedback,
    LeftOut,
    Paper,
    PostgresDatabase,
    Preferences,
    Settings,
)
from digest.selection import Selector
from digest.workers._app import LEASE, Job

log = logging.getLogger(__name__)

_State = TypeVar("_State", bound=EditionState)


class ClaimedLedger:
    """The ledger as ``deliver_edition`` must see it while a worker holds a claim: the claimed
    row reads as it was before the claim (absent if nothing of it can have left yet); every
    other call goes to the real ledger."""

    def __init__(self, ledger: PostgresLedger, claim: Claim) -> None:
        self._ledger = ledger
        self._claim = claim
        self.path = ledger.path

    def get(self, email: str, edition: date) -> LedgerRow | None:
        if (email.strip().lower(), edition) == (self._claim.email, self._claim.edition):
            return self._claim.before
        return self._ledger.get(email, edition)

    def edition_state(self, email: str, edition: date) -> EditionState:
        return self._claimed(email, edition, self._ledger.edition_state(email, edition))

    def selection_state(self, email: str, edition: date) -> SelectionState:
        return self._claimed(email, edition, self._ledger.selection_state(email, edition))

    def _claimed(self, email: str, edition: date, state: _State) -> _State:
        """``state`` with the claimed row as ``get`` reads it."""
        if (email.strip().lower(), edition) == (self._claim.email, self._claim.edition):
            return replace(state, row=self._claim.before)
        return state

    # the rest of LedgerStore, unchanged
    def history(self) -> dict[str, frozenset[str]]:
        return self._ledger.history()

    def history_for(self, email: str) -> frozenset[str]:
        return self._ledger.history_for(email)

    def suppressed(self) -> frozenset[str]:
        return self._ledger.suppressed()

    def is_suppressed(self, email: str) -> bool:
        return self._ledger.is_suppressed(email)

    def record_feedback(self, email: str, paper: Paper, verdict: str, *, now: datetime) -> None:
        self._ledger.record_feedback(email, paper, verdict, now=now)

    def feedback(self) -> dict[str, Feedback]:
        return self._ledger.feedback()

    def feedback_for(self, email: str) -> Feedback | None:
        return self._ledger.feedback_for(email)

    def rows(self, email: str | None = None, *, limit: int | None = None
             ) -> tuple[LedgerRow, ...]:
        return self._ledger.rows(email, limit=limit)

    def pending(self) -> tuple[LedgerRow, ...]:
        return self._ledger.pending()

    def stored_message(self, email: str, edition: date) -> bytes | None:
        return self._ledger.stored_message(email, edition)

    def status(self) -> tuple[EditionStatus, ...]:
        return self._ledger.status()

    def begin(self, email: str, edition: date, *, message_id: str, papers: tuple[str, ...],
              data: bytes | None, now: datetime, possible_duplicate: bool = False,
              hold: bool = False) -> None:
        self._ledger.begin(email, edition, message_id=message_id, papers=papers, data=data,
                           now=now, possible_duplicate=possible_duplicate, hold=hold)

    def holds(self, email: str, edition: date) -> bool:
        return self._ledger.holds(email, edition)

    def mark_sent(self, email: str, edition: date, *, now: datetime, code: int | None = 250,
                  reply: str | None = None, archive: timedelta | None = None,
                  hold: bool = False) -> None:
        self._ledger.mark_sent(email, edition, now=now, code=code, reply=reply, archive=archive,
                               hold=hold)

    def flush(self) -> None:
        self._ledger.flush()

    def mark_deferred(self, email: str, edition: date, *, now: datetime, code: int | None,
                      error: str) -> None:
        self._ledger.mark_deferred(email, edition, now=now, code=code, error=error)

    def mark_failed(self, email: str, edition: date, *, now: datetime, code: int | None,
                    error: str) -> None:
        self._ledger.mark_failed(email, edition, now=now, code=code, error=error)

    def suppress(self, email: str, *, now: datetime, source: str = "cli") -> bool:
        return self._ledger.suppress(email, now=now, source=source)

    def unsuppress(self, email: str) -> bool:
        return self._ledger.unsuppress(email)

    def suppression_source(self, email: str) -> str | None:
        return self._ledger.suppression_source(email)

    def note_skip(self, email: str, edition: date, reason: str, *, now: datetime) -> None:
        self._ledger.note_skip(email, edition, reason, now=now)

    def skips(self, email: str | None = None, *, limit: int | None = None
              ) -> tuple[SkipRow, ...]:
        return self._ledger.skips(email, limit=limit)

    def known_addresses(self) -> frozenset[str]:
        return self._ledger.known_addresses()

    def preferences(self, email: str) -> Preferences | None:
        return self._ledger.preferences(email)

    def all_preferences(self) -> tuple[Preferences, ...]:
        return self._ledger.all_preferences()

    def set_preferences(self, email: str, *, paused_until: date | None,
                        max_papers: int | None, now: datetime) -> None:
        self._ledger.set_preferences(email, paused_until=paused_until, max_papers=max_papers,
                                     now=now)

    def archived(self, email: str) -> tuple[ArchivedEdition, ...]:
        return self._ledger.archived(email)

    def archived_message(self, email: str, edition: date) -> bytes | None:
        return self._ledger.archived_message(email, edition)

    def keep_left_out(self, email: str, edition: date, matches: Sequence[LeftOut]) -> None:
        self._ledger.keep_left_out(email, edition, matches)

    def archived_left_out(self, email: str, edition: date) -> tuple[LeftOut, ...] | None:
        return self._ledger.archived_left_out(email, edition)

    def create(self) -> None:
        self._ledger.create()

    def recorded_since(self, first: date) -> frozenset[tuple[str, date]]:
        return self._ledger.recorded_since(first)

    def mark_ambiguous(self, email: str, edition: date, *, now: datetime,
                       error: str) -> DeliveryState:
        return self._ledger.mark_ambiguous(email, edition, now=now, error=error)

    def resolve(self, email: str, edition: date, *, sent: bool, now: datetime) -> LedgerRow:
        return self._ledger.resolve(email, edition, sent=sent, now=now)

    def close(self) -> None:
        pass  # the worker process keeps its connection

    def __enter__(self) -> ClaimedLedger:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        pass


class GlobalRateLimit:
    """A transport that takes a token from the ledger's shared bucket before each message, so
    ``smtp.max_per_second`` holds for all workers together, not per worker."""

    def __init__(self, inner: Transport, ledger: PostgresLedger, bucket: str, rate: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._inner, self._ledger, self._bucket, self._rate = inner, ledger, bucket, rate
        self._sleep = sleep

    def send(self, msg: OutgoingMessage) -> SendResult:
        wait = self._ledger.take_token(self._bucket, rate=self._rate)
        if wait > 0:
            self._sleep(wait)
        return self._inner.send(msg)

    def close(self) -> None:
        self._inner.close()


@dataclass
class _Process:
    """What one worker process keeps between tasks."""

    pid: int
    ledger: PostgresLedger
    renderer: Any = None
    transport: Transport | None = None
    editions: dict[str, tuple[FrozenEdition, Selector]] | None = None


class WorkerContext:
    """Everything a task needs, made once per worker process (a prefork child builds its own
    after the fork: connections are never shared across processes)."""

    def __init__(self, config: Config, environ: Mapping[str, str], *, lease: float = LEASE,
                 clock: Callable[[], datetime] | None = None) -> None:
        if not isinstance(config.settings.database, PostgresDatabase):
            raise ValueError("queue workers need a PostgreSQL ledger")
        self.config = config
        self.settings: Settings = config.settings
        self.database: PostgresDatabase = config.settings.database
        self.environ = dict(environ)
        self.lease = lease
        self._process: _Process | None = None

    def process(self) -> _Process:
        if self._process is None or self._process.pid != os.getpid():
            self._process = _Process(pid=os.getpid(), ledger=PostgresLedger(self.database),
                                     editions={})
        return self._process

    def renderer(self) -> Any:
        state = self.process()
        if state.renderer is None:
            from digest.render import Renderer

            state.renderer = Renderer(self.settings.templates,
                                      max_bytes=self.settings.max_email_bytes)
        return state.renderer

    def transport(self) -> Transport:
        state = self.process()
        if state.transport is None:
            smtp = self.settings.smtp
            rate = smtp.max_per_second if smtp is not None else None
            # the per-process limiter is replaced by the global one
            local = self.settings if smtp is None else replace(
                self.settings, smtp=replace(smtp, max_per_second=None))
            inner = open_transport(local, self.environ)()
            state.transport = inner if not rate or smtp is None else GlobalRateLimit(
                inner, state.ledger, f"smtp {smtp.host}:{smtp.port}", rate)
        return state.transport

    def drop_transport(self) -> None:
        state = self.process()
        if state.transport is not None:
            state.transport.close()
            state.transport = None

    def edition(self, run: str) -> tuple[FrozenEdition, Selector] | None:
        state = self.process()
        assert state.editions is not None
        found = state.editions.get(run)
        if found is None:
            frozen = state.ledger.frozen_edition(run)
            if frozen is None:
                return None
            if len(state.editions) >= 4:  # a worker lives through many runs: keep a few
                state.editions.pop(next(iter(state.editions)))
            found = state.editions[run] = (frozen, Selector(frozen.papers))
        return found

    def secret(self) -> str | None:
        name = self.settings.unsubscribe_secret_env
        return self.environ.get(name) if name else None


def run_job(ctx: WorkerContext, job: Job) -> str:
    """Deliver one (subscriber, edition); returns a word for the log. Raises
    ``TransportError`` when the SMTP server refuses us as a whole (the row is left deferred
    and the reconciler re-publishes it later)."""
    ledger = ctx.process().ledger
    token = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    claim = ledger.claim(job.email, job.edition, token=token, lease=ctx.lease,
                         run=job.run or "", now=job.now)
    if claim is None:
        return "skipped: already done or held by another worker"
    subscriber = ctx.config.subscriber(job.email)
    run = claim.run or job.run
    frozen = None if not run else ctx.edition(run)
    if subscriber is None or frozen is None:
        why = (f"{job.email} is not in this worker's config ({ctx.config.path})"
               if subscriber is None else f"frozen edition {run!r} is not in the ledger")
        ledger.give_up(claim, now=job.now, error=why)
        log.error("%s %s: %s", job.email, job.edition, why)
        return "failed"
    edition, selector = frozen
    try:
        run_of = EditionRun(ledger=ClaimedLedger(ledger, claim), renderer=ctx.renderer(),
                            settings=ctx.settings, summaries=edition.summaries, now=job.now,
                            selector=selector, unsubscribe_secret=ctx.secret())
        delivery = deliver_edition(subscriber, job.edition, edition.papers, run_of,
                                   transport=ctx.transport())
    except TransportError:
        ctx.drop_transport()  # reconnect from scratch for the next task
        raise
    return _settle(ledger, claim, delivery, job.now)


def _settle(ledger: PostgresLedger, claim: Claim, delivery: Delivery, now: datetime) -> str:
    """A claim that ``deliver_edition`` did not record anything for must not stay
    ``sending``: nothing new drops the row (as if never queued), a message that could not be
    built fails it."""
    if delivery.state == "skipped":
        ledger.release(claim)
        return f"skipped: {delivery.detail}"
    if delivery.state == "failed":
        ledger.give_up(claim, now=now, error=delivery.error or delivery.detail or "failed")
    return delivery.state + (f" ({delivery.detail})" if delivery.detail else "")
