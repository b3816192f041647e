"""The ledger's contract: what every backend (SQLite, PostgreSQL) offers the rest of digest.

Owns: ``LedgerStore`` (the Protocol that delivery, the CLI, preview and the scheduler are typed
against), the per-edition ``EditionStatus`` counts, what one subscriber's edition reads
(``EditionState``, ``SelectionState``), and the small values the queue side passes (``Claim``,
``StaleRow``, ``FrozenEdition``). May import models only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from digest.models import (
    DeliveryState,
    Feedback,
    LeftOut,
    Paper,
    PostgresDatabase,
    Preferences,
    Summary,
)

if TYPE_CHECKING:
    from digest.ledger._sqlite import ArchivedEdition, LedgerRow, SkipRow


@dataclass(frozen=True)
class EditionStatus:
    """One edition across every sender: rows per state and the oldest live lease."""

    edition: date
    queued: int
    sending: int
    sent: int
    deferred: int
    failed: int
    uncertain: int  # held until the admin resolves them (digest resolve)
    possible_duplicates: int
    oldest_lease: datetime | None  # earliest lease_until of a row being sent (PostgreSQL)


@dataclass(frozen=True)
class EditionState:
    """What the ledger says of one subscriber's edition as its message is about to be built,
    read in one statement (``LedgerStore.edition_state``): ``is_suppressed``, ``preferences``
    and ``get``, as those three would answer."""

    suppressed: bool
    preferences: Preferences | None  # digest serve's preferences page
    row: LedgerRow | None  # the (subscriber, edition) row, if any


@dataclass(frozen=True)
class SelectionState(EditionState):
    """``EditionState`` and what the edition's selection reads too, in the same one statement
    (``LedgerStore.selection_state``): ``history_for`` and ``feedback_for``."""

    history: frozenset[str]
    feedback: Feedback | None


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one (subscriber, edition) for one attempt."""

    email: str
    edition: date
    token: str  # who holds it: unique per task execution
    run: str | None  # the frozen edition the row was queued with
    before: LedgerRow | None  # the row as it was before the claim; None if nothing left yet


@dataclass(frozen=True)
class StaleRow:
    """A row whose task must be published again."""

    email: str
    edition: date
    run: str | None


@dataclass(frozen=True)
class FrozenEdition:
    """A run's papers and their summaries, stored once so every worker renders the same."""

    papers: tuple[Paper, ...]
    summaries: dict[str, Summary]


class LedgerStore(Protocol):
    """What went out, to whom, once per (subscriber, edition); suppressions, skips, preferences
    and the archive of sent messages. Every method
    takes the caller's ``now`` where it writes a time, so runs with ``--now`` agree."""

    @property
    def path(self) -> Path | PostgresDatabase: ...

    def history(self) -> dict[str, frozenset[str]]: ...

    def history_for(self, email: str) -> frozenset[str]: ...

    def suppressed(self) -> frozenset[str]: ...

    def is_suppressed(self, email: str) -> bool: ...

    def get(self, email: str, edition: date) -> LedgerRow | None: ...

    def edition_state(self, email: str, edition: date) -> EditionState: ...

    def selection_state(self, email: str, edition: date) -> SelectionState: ...

    def rows(self, email: str | None = None, *, limit: int | None = None
             ) -> tuple[LedgerRow, ...]: ...

    def pending(self) -> tuple[LedgerRow, ...]: ...

    def stored_message(self, email: str, edition: date) -> bytes | None: ...

    def status(self) -> tuple[EditionStatus, ...]: ...

    def begin(self, email: str, edition: date, *, message_id: str, papers: tuple[str, ...],
              data: bytes | None, now: datetime, possible_duplicate: bool = False,
              hold: bool = False) -> None: ...

    def holds(self, email: str, edition: date) -> bool: ...

    def mark_sent(self, email: str, edition: date, *, now: datetime, code: int | None = 250,
                  reply: str | None = None, archive: timedelta | None = None,
                  hold: bool = False) -> None: ...

    def flush(self) -> None: ...

    def mark_deferred(self, email: str, edition: date, *, now: datetime, code: int | None,
                      error: str) -> None: ...

    def mark_failed(self, email: str, edition: date, *, now: datetime, code: int | None,
                    error: str) -> None: ...

    def suppress(self, email: str, *, now: datetime, source: str = "cli") -> bool: ...

    def record_feedback(self, email: str, paper: Paper, verdict: str, *, now: datetime
                        ) -> None: ...

    def feedback(self) -> dict[str, Feedback]: ...

    def feedback_for(self, email: str) -> Feedback | None: ...

    def unsuppress(self, email: str) -> bool: ...

    def suppression_source(self, email: str) -> str | None: ...

    def note_skip(self, email: str, edition: date, reason: str, *, now: datetime) -> None: ...

    def skips(self, email: str | None = None, *, limit: int | None = None
              ) -> tuple[SkipRow, ...]: ...

    def known_addresses(self) -> frozenset[str]: ...

    def preferences(self, email: str) -> Preferences | None: ...

    def all_preferences(self) -> tuple[Preferences, ...]: ...

    def set_preferences(self, email: str, *, paused_until: date | None,
                        max_papers: int | None, now: datetime) -> None: ...

    def archived(self, email: str) -> tuple[ArchivedEdition, ...]: ...

    def archived_message(self, email: str, edition: date) -> bytes | None: ...

    def keep_left_out(self, email: str, edition: date, matches: Sequence[LeftOut]) -> None: ...

    def archived_left_out(self, email: str, edition: date) -> tuple[LeftOut, ...] | None: ...

    def create(self) -> None: ...

    def recorded_since(self, first: date) -> frozenset[tuple[str, date]]: ...

    def mark_ambiguous(self, email: str, edition: date, *, now: datetime,
                       error: str) -> DeliveryState: ...

    def resolve(self, email: str, edition: date, *, sent: bool, now: datetime) -> LedgerRow: ...

    def close(self) -> None: ...

    def __enter__(self) -> LedgerStore: ...

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None: ...
