"""The ledger stage: what went out, once per (subscriber, edition); suppressions; subscribers' preferences;
the archive of sent editions; the send lock.

Edge (SQLite). May import: models, errors.
"""

from __future__ import annotations

from digest.ledger._sqlite import (
    ArchivedEdition,
    Ledger,
    LedgerRow,
    SendLock,
    SkipRow,
    check_new_ledger,
)

__all__ = ["ArchivedEdition", "Ledger", "LedgerRow", "SendLock", "SkipRow", "check_new_ledger"]
