"""The ledger stage: what went out, once per (subscriber, edition); suppressions; the send lock.

Edge (SQLite). May import: models, errors.
"""

from __future__ import annotations

from digest.ledger._sqlite import Ledger, LedgerRow, SendLock

__all__ = ["Ledger", "LedgerRow", "SendLock"]
