"""The ledger stage: what went out, once per (subscriber, edition); suppressions; subscribers' preferences;
the archive of sent editions; the send lock.

Two backends behind one contract (``LedgerStore``): a SQLite file (the embedded default) and a
PostgreSQL database (``settings.database: postgresql://...``, shared by queue workers, with an
atomic claim and lease, frozen editions and a global rate bucket). Schemas are migrated by
Alembic. Edge (SQLite, PostgreSQL). May import: models, errors.
"""

from __future__ import annotations

from pathlib import Path

from digest.ledger._contract import (
    Claim,
    EditionState,
    EditionStatus,
    FrozenEdition,
    LedgerStore,
    SelectionState,
    StaleRow,
)
from digest.ledger._migrate import HEAD as SCHEMA_HEAD
from digest.ledger._postgres import AdvisoryLock, PostgresLedger
from digest.ledger._sqlite import (
    ArchivedEdition,
    Ledger,
    LedgerRow,
    SendLock,
    SkipRow,
    check_new_ledger,
)
from digest.models import PostgresDatabase

__all__ = ["SCHEMA_HEAD", "AdvisoryLock", "ArchivedEdition", "Claim", "EditionState",
           "EditionStatus", "FrozenEdition", "Ledger", "LedgerRow", "LedgerStore",
           "PostgresLedger", "SelectionState", "SendLock", "SkipRow", "StaleRow",
           "check_new_ledger", "open_ledger", "open_send_lock"]


def open_ledger(database: Path | PostgresDatabase) -> LedgerStore:
    """The ledger ``settings.database`` names: a SQLite file, or a PostgreSQL database."""
    if isinstance(database, PostgresDatabase):
        return PostgresLedger(database)
    return Ledger(database)


def open_send_lock(database: Path | PostgresDatabase) -> SendLock | AdvisoryLock:
    """One sender (or scheduler) per database: an ``flock`` beside a SQLite file, an advisory
    lock in PostgreSQL. Not yet acquired; use as a context manager or ``acquire()``."""
    if isinstance(database, PostgresDatabase):
        return AdvisoryLock(database)
    return SendLock(database)
