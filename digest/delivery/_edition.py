"""Delivery: every due digest out exactly once, with the ledger as the truth.

Owns: ``deliver_edition`` (one subscriber's edition, self-contained and idempotent: the unit a
queue worker or the scheduler calls unchanged) and ``send_all`` (a whole run: papers, summaries
and the MJML template once, a pool of transports, streaming so memory stays flat in the number
of subscribers; big SMTP runs split over spawned process shards, each with its own share of the
pool, while the parent holds the send lock). May import models, errors, ledger, selector,
pipeline, renderer, mailer and transports; it is the composition edge of delivery and never
prints (the CLI does).

Per (subscriber, edition) the order is fixed, so a ``kill -9`` at any point is recoverable:
the ledger row is written ``sending`` (with Message-ID, papers and the message bytes) BEFORE the
message leaves, and ``sent`` only after the server accepted it. A row found ``sending`` at the
start of a later run was in flight during a crash: it is re-sent with the same Message-ID and
flagged ``possible_duplicate`` (at most one per connection of the pool can be affected: with
``smtp.connections: 1`` exactly the one message in flight).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Protocol

from digest.compose import build_digest
from digest.delivery._history import edition_history
from digest.delivery._message import (
    OutgoingMessage,
    build_message,
    check_address,
    parse_sender,
)
from digest.delivery._transports import InFlight, Transport, submit
from digest.errors import (
    DeliveryError,
    TransportError,
    SenderRefusedError,
    UncertainDeliveryError,
)
from digest.ledger import EditionState, LedgerRow, LedgerStore, SelectionState
from digest.models import (
    Delivery,
    Digest,
    Outcome,
    Paper,
    RenderedEmail,
    Selection,
    Settings,
    Subscriber,
    Summary,
)
from digest.selection import Selector

__all__ = ["deliver_edition", "prepare_edition", "start_edition", "finish_edition", "Ready",
           "Started", "EditionRun", "RetryPolicy", "RefusalStreak", "SAME_REFUSALS",
           "HELD_UNCERTAIN"]

# ``Delivery.detail`` prefixes, so reports can count skips without parsing prose.
_NOTHING_NEW = Outcome.NOTHING_NEW.value
HELD_UNCERTAIN = ("held: the server may have accepted it; nothing re-sends it until "
                  "'digest resolve EMAIL EDITION --sent|--resend'")


# This many different recipients in a row refused with the same 5xx reply means the refusal is
# about us (relay denied, our sender or IP blocklisted), not about them (listmonk likewise
# pauses a campaign past an error threshold).
SAME_REFUSALS = 10
_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


class RefusalStreak:
    """Permanent refusals in a row across a run (or a daemon's fires), thread-safe. Each is
    recorded ``failed`` as it comes; when ``limit`` different recipients in a row are refused
    with the same code (and enhanced status), the streak's rows are put back to ``deferred``
    and ``SenderRefusedError`` stops the run. Any acceptance, or another reply, resets it."""

    def __init__(self, limit: int = SAME_REFUSALS) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._key: tuple[int | None, str | None] | None = None
        self._rows: list[tuple[str, date]] = []
        self._tripped = False  # until an acceptance: later refusals are deferred at once
        self._cause = ""  # the message of the trip, which later refusals report too

    def accepted(self) -> None:
        with self._lock:
            self._key, self._rows, self._tripped, self._cause = None, [], False, ""

    def refused(self, email: str, edition: date, error: DeliveryError, *, ledger: LedgerStore,
                now: datetime) -> None:
        enhanced = _ENHANCED.search(str(error))
        key = (error.code, enhanced.group(1) if enhanced else None)
        with self._lock:
            if key != self._key:
                self._key, self._rows = key, []
            if (email, edition) not in self._rows:
                self._rows.append((email, edition))
            if not self._tripped and len({e for e, _ in self._rows}) < self.limit:
                return
            rows, self._key, self._rows = tuple(self._rows), None, []
            if not self._tripped:
                # Several pool threads may raise after the trip; each reports its own rows as
                # deferred but the same cause, so whichever error the run shows first says why.
                what = f"{error.code} {key[1]}" if key[1] else f"{error.code}"
                self._tripped, self._cause = True, (
                    f"{len(rows)} recipients in a row refused with {what} ({error}): a problem "
                    "with our sending (relay permission, sender or IP blocklisted), not with the "
                    "recipients; the run stopped and their editions stay deferred for a later "
                    "run")
            cause = self._cause
        note = (f"{error} (kept deferred: {self.limit} recipients in a row were refused alike, "
                "which is a problem with our sending)")
        for row_email, row_edition in rows:
            ledger.mark_deferred(row_email, row_edition, now=now, code=error.code, error=note)
        raise SenderRefusedError(cause, deferred=rows)


class EmailRenderer(Protocol):
    """What the service needs from ``digest.render.Renderer``."""

    def render(self, digest: Digest) -> RenderedEmail: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Temporary failures are retried within the run after ``backoff``, ``2*backoff``, ...
    seconds (``retries`` times), then left ``deferred`` for a later run. Small defaults: a
    later run (or the scheduler) is the real retry loop, a run must not stall for minutes."""

    retries: int = 2
    backoff: float = 0.5
    sleep: Callable[[float], None] = time.sleep


def _stored_message(row: LedgerRow, ledger: LedgerStore, settings: Settings) -> OutgoingMessage | None:
    data = ledger.stored_message(row.email, row.edition)
    if data is None or row.message_id is None:
        return None
    sender = check_address(parse_sender(settings.sender)[1])
    return OutgoingMessage(sender=sender, recipient=check_address(row.email),
                           message_id=row.message_id, data=data)


@dataclass(frozen=True)
class EditionRun:
    """What every delivery of one run shares: the ledger (the truth), how to render, the
    settings, the papers' summaries (computed once per run), the run's clock reading, and
    optionally a selector over the run's papers (built once instead of per subscriber), the
    unsubscribe secret, the retry policy, whether this is a dry run, and the refusal streak."""

    ledger: LedgerStore
    renderer: EmailRenderer
    settings: Settings
    summaries: Mapping[str, Summary]
    now: datetime
    selector: Selector | None = None
    unsubscribe_secret: str | None = None
    retry: RetryPolicy = RetryPolicy()
    dry_run: bool = False
    # permanent refusals in a row across the run (or a daemon's fires): many alike stop it
    streak: RefusalStreak | None = None


def deliver_edition(subscriber: Subscriber, edition: date, papers: Iterable[Paper],
                    run: EditionRun, *, transport: Transport | None, force: bool = False,
                    history: frozenset[str] | None = None,
                    selection: Selection | None = None) -> Delivery:
    """Deliver ONE subscriber's ``edition``; safe to call again at any time (the ledger
    decides). ``history`` defaults to the ledger's; ``selection`` lets a run share work across
    subscribers. ``transport`` may be None only for ``run.dry_run``.

    Raises ``TransportError`` (the row is left ``deferred``, never ``sending``); every
    per-recipient problem becomes the returned ``Delivery`` instead.
    """
    ready = prepare_edition(subscriber, edition, papers, run, force=force, history=history,
                            selection=selection)
    if isinstance(ready, Delivery):
        return ready
    if transport is None:
        raise ValueError("deliver_edition needs a transport unless dry_run")
    return finish_edition(start_edition(ready, transport))


@dataclass(frozen=True)
class Ready:
    """A message built for one subscriber's edition, nothing of it written to the ledger or
    sent yet: ``start_edition`` sends it. ``deliver_edition`` is ``prepare_edition``, then
    ``start_edition`` and ``finish_edition``; a run calls the three itself to build the next
    message while the server stores this one."""

    msg: OutgoingMessage
    email: str
    edition: date
    papers: tuple[str, ...]
    possible_duplicate: bool
    run: EditionRun


def prepare_edition(subscriber: Subscriber, edition: date, papers: Iterable[Paper],
                    run: EditionRun, *, force: bool = False,
                    history: frozenset[str] | None = None,
                    selection: Selection | None = None,
                    ledger_state: EditionState | None = None,
                    between: Callable[[], None] | None = None) -> Ready | Delivery:
    """The first part of ``deliver_edition``: what the ledger says of this edition, the
    selection, render and message build. Returns the ``Delivery`` when nothing is to be sent
    (already sent, nothing new, a dry run...), else the ``Ready`` message. ``between`` is
    called between those steps: a run's event loop reads the replies that came meanwhile.
    ``ledger_state``: the ledger's answer for this edition read just now (the run's selection
    read it right before this call), taken instead of reading again."""
    ledger, renderer, settings, summaries, now = (run.ledger, run.renderer, run.settings,
                                                  run.summaries, run.now)
    selector, unsubscribe_secret, retry, dry_run = (run.selector, run.unsubscribe_secret,
                                                    run.retry, run.dry_run)
    email = subscriber.email.strip().lower()
    skip = Delivery(email=email, edition=edition, state="skipped", outcome=Outcome.NOTHING_NEW)
    # One read, right before the message is built: an unsubscribe or a pause made on the web
    # during a run is honoured. A selection made here gets its history and feedback from the
    # same read; one made ahead (a stream's fires) reads again; a run that selected just now
    # passes the read it selected with (``ledger_state``: ~0.1 ms old, the selection between).
    facts = ledger_state if ledger_state is not None else (
        ledger.edition_state(email, edition) if selection is not None
        else ledger.selection_state(email, edition))
    if facts.suppressed:
        return replace(skip, outcome=Outcome.SUPPRESSED, detail=Outcome.SUPPRESSED.value)
    chosen = facts.preferences  # digest serve's preferences page, over the YAML
    if chosen is not None:
        if chosen.paused_on(edition):
            return replace(skip, outcome=Outcome.PAUSED,
                           detail=f"{Outcome.PAUSED.value} until {chosen.paused_until}")
        subscriber = chosen.apply(subscriber)
    row = facts.row
    possible_duplicate = False
    msg: OutgoingMessage | None = None
    papers_sent: tuple[str, ...] = ()
    if row is not None and not force:
        if row.state == "sent":
            return replace(skip, message_id=row.message_id, papers=row.papers,
                           outcome=Outcome.ALREADY_SENT, detail=Outcome.ALREADY_SENT.value)
        if row.state == "failed":
            return replace(skip, message_id=row.message_id, papers=row.papers, code=row.code,
                           error=row.error, outcome=Outcome.FAILED_BEFORE,
                           detail=Outcome.FAILED_BEFORE.value)
        if row.state == "sending" and not dry_run:
            # In flight when an earlier run died: whether it arrived is unknown. Re-sent once
            # (same bytes); if that too ends unknown, the ledger holds it "uncertain".
            state = ledger.mark_ambiguous(email, edition, now=now,
                                          error="in flight when an earlier run stopped")
            row = replace(row, state=state, possible_duplicate=True)
        if row.state == "uncertain":
            return Delivery(email=email, edition=edition, state="uncertain",
                            message_id=row.message_id, papers=row.papers, error=row.error,
                            detail=HELD_UNCERTAIN)
        # deferred (or sending, in a dry run): finish it, with the very same bytes.
        if now - row.created > settings.retry_for:
            if not dry_run:
                ledger.mark_failed(email, edition, now=now, code=row.code,
                                   error=f"gave up after {settings.retry_for}: {row.error}")
            return Delivery(email=email, edition=edition, state="failed",
                            message_id=row.message_id, papers=row.papers, code=row.code,
                            error=row.error, detail=f"not delivered within {settings.retry_for}")
        possible_duplicate = row.state == "sending" or row.possible_duplicate
        msg = _stored_message(row, ledger, settings)
        papers_sent = row.papers
    if msg is None:
        if selection is None:
            assert isinstance(facts, SelectionState)  # read so above
            # (the history is not changed by mark_ambiguous: sending and deferred both count)
            known = edition_history(facts.history if history is None else history,
                                    row, force=force)
            selection = (selector or Selector(papers)).select(
                subscriber, known, facts.feedback,  # digest feedback
                with_cut=bool(settings.base_url))  # for "N more matched"
        if not selection.picks:
            why = f"{_NOTHING_NEW}: {selection.skipped_reason}" \
                if selection.skipped_reason else _NOTHING_NEW
            if not dry_run:  # for `digest history`: why no email that day
                ledger.note_skip(email, edition, why, now=now)
            return replace(skip, outcome=Outcome.NOTHING_NEW, detail=why)
        digest = build_digest(selection, summaries, edition, now, settings,
                              unsubscribe_secret=unsubscribe_secret)
        if between is not None:
            between()
        rendered = renderer.render(digest)
        if not rendered.papers:
            return replace(skip, outcome=Outcome.NOTHING_NEW,
                           detail=f"{_NOTHING_NEW}: no paper fits the size budget")
        if between is not None:
            between()
        try:
            msg = build_message(rendered, digest, settings, now=now)
        except DeliveryError as exc:  # an address that cannot be written safely
            return Delivery(email=email, edition=edition, state="failed", error=str(exc),
                            detail="cannot build the message")
        papers_sent = rendered.papers
        if digest.more_url and not dry_run:
            # digest serve's "N more matched" page, frozen before the message leaves
            from digest.render import left_out  # loaded already: the run renders with it
            missed = left_out(digest.items, frozenset(papers_sent), selection.cut)
            if missed:
                ledger.keep_left_out(email, edition, missed)
    if dry_run:
        return replace(skip, message_id=msg.message_id, papers=papers_sent,
                       outcome=Outcome.WOULD_SEND,
                       detail=f"{Outcome.WOULD_SEND.value}: would send {len(papers_sent)} papers")
    return Ready(msg, email, edition, papers_sent, possible_duplicate, run)


@dataclass(frozen=True)
class Started:
    """A ``Ready`` message recorded ``sending`` and handed to the transport, its outcome not
    read yet (``finish_edition``)."""

    ready: Ready
    transport: Transport
    flight: InFlight


def start_edition(ready: Ready, transport: Transport, *, whole: bool = True) -> Started:
    """Record ``sending`` (with the message bytes), then hand the message over without waiting
    for the server's verdict: the whole message written, or with ``whole=False`` only its
    first command, the rest left to ``started.flight.step()`` as replies arrive (a run's event
    loop, ``submit``). Raises ``TransportError`` (the row is left ``deferred``)."""
    run = ready.run
    return Started(ready, transport, _begin(
        ready.msg, ready.email, ready.edition, ready.papers, ready.possible_duplicate,
        ledger=run.ledger, transport=transport, now=run.now, data=ready.msg.data,
        whole=whole, hold=not whole))


def _begin(msg: OutgoingMessage, email: str, edition: date, papers: tuple[str, ...],
           possible_duplicate: bool, *, ledger: LedgerStore, transport: Transport,
           now: datetime, data: bytes | None, whole: bool = True,
           hold: bool = False) -> InFlight:
    """One attempt begun: the row says "sending" before a byte of the message leaves (a
    crash from then on is seen; ``data`` stored by the first attempt, later ones keep it),
    then the message handed over. ``hold``: the ``begin`` waits in the ledger for its next
    commit, and the body for that commit (``_RowGate``): a run's loop commits when it starts
    its next message, both begins at once. ``TransportError`` leaves the row ``deferred``."""
    ledger.begin(email, edition, message_id=msg.message_id, papers=papers, data=data,
                 now=now, possible_duplicate=possible_duplicate, hold=hold)
    try:
        return submit(transport, msg, whole=whole,
                      gate=_RowGate(ledger, email, edition) if hold else None)
    except TransportError as exc:
        ledger.mark_deferred(email, edition, now=now, code=None, error=str(exc))
        raise


class _RowGate:
    """A message's body waits for its row's ``begin`` to be committed (``BodyGate``)."""

    __slots__ = ("_ledger", "_email", "_edition")

    def __init__(self, ledger: LedgerStore, email: str, edition: date) -> None:
        self._ledger, self._email, self._edition = ledger, email, edition

    def pending(self) -> bool:
        return self._ledger.holds(self._email, self._edition)

    def commit(self) -> None:
        self._ledger.flush()


def finish_edition(started: Started, *, hold: bool = False) -> Delivery:
    """The server's verdict on a started message, recorded (retried within the run while
    temporary): the ``Delivery``. Raises ``TransportError`` as ``deliver_edition`` does.
    ``hold``: a ``sent`` may wait in the ledger for its next write (``mark_sent(hold=True)``;
    the caller flushes it before it waits)."""
    ready, run = started.ready, started.ready.run
    settings = run.settings
    delivery = _send(ready.msg, ready.email, ready.edition, ready.papers,
                     ready.possible_duplicate, ledger=run.ledger, transport=started.transport,
                     now=run.now, retry=run.retry,
                     archive=settings.archive_for if settings.base_url else None,
                     flight=started.flight, hold=hold)
    if run.streak is not None:
        if delivery.state == "sent":
            run.streak.accepted()
        elif delivery.state == "failed" and delivery.code is not None:
            run.streak.refused(ready.email, ready.edition,
                               DeliveryError(delivery.error or "", code=delivery.code),
                               ledger=run.ledger, now=run.now)
    return delivery


def _send(msg: OutgoingMessage, email: str, edition: date, papers: tuple[str, ...],
          possible_duplicate: bool, *, ledger: LedgerStore, transport: Transport, now: datetime,
          retry: RetryPolicy, archive: timedelta | None, flight: InFlight,
          hold: bool = False) -> Delivery:
    """The verdict on ``flight`` (the first attempt, begun by ``start_edition``), then the
    retries of a temporary refusal, each begun again here."""
    done = Delivery(email=email, edition=edition, state="sent", message_id=msg.message_id,
                    papers=papers)
    current: InFlight | None = flight
    for attempt in range(retry.retries + 1):
        if current is None:  # a retry
            current = _begin(msg, email, edition, papers, possible_duplicate, ledger=ledger,
                             transport=transport, now=now, data=None)
        try:
            result = current.result()
        except TransportError as exc:
            ledger.mark_deferred(email, edition, now=now, code=None, error=str(exc))
            raise
        except UncertainDeliveryError as exc:
            # The server may have accepted it: never retried within the run; the ledger allows
            # one re-send ever (a later run), then holds it for the admin.
            state = ledger.mark_ambiguous(email, edition, now=now, error=str(exc))
            return replace(done, state=state, error=str(exc),
                           outcome=Outcome.UNCERTAIN if state == "uncertain" else Outcome.DEFERRED,
                           detail=HELD_UNCERTAIN if state == "uncertain" else None)
        except DeliveryError as exc:
            if not exc.temporary:
                ledger.mark_failed(email, edition, now=now, code=exc.code, error=str(exc))
                return replace(done, state="failed", outcome=Outcome.FAILED, code=exc.code,
                               error=str(exc))
            if attempt < retry.retries:
                retry.sleep(retry.backoff * 2 ** attempt)
                current = None  # a new attempt, begun again
                continue
            ledger.mark_deferred(email, edition, now=now, code=exc.code, error=str(exc))
            return replace(done, state="deferred", outcome=Outcome.DEFERRED, code=exc.code,
                           error=str(exc))
        ledger.mark_sent(email, edition, now=now, code=result.code, reply=result.reply,
                         archive=archive,  # with base_url: kept for digest serve's archive
                         hold=hold)
        return replace(done, code=result.code,
                       detail=Outcome.POSSIBLE_DUPLICATE.value if possible_duplicate else None,
                       outcome=Outcome.POSSIBLE_DUPLICATE if possible_duplicate else Outcome.SENT)
    raise AssertionError("unreachable")  # the loop always returns or raises
