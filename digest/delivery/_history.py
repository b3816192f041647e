"""The history a subscriber's selection uses: the one rule, called by send, the daemon (through
``deliver_edition``), ``digest plan`` and ``digest preview``.

A selection leaves out every paper of the subscriber's editions that went out, may have, or
will (``Ledger.history``: sent, sending, deferred), except the papers of the edition being
built itself when it is still pending (a deferred or interrupted edition is finished with its
own papers) or forced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from digest.compose import edition_for
from digest.ledger import LedgerRow, LedgerStore
from digest.models import Subscriber


def edition_history(history: frozenset[str], own: LedgerRow | None, *,
                    force: bool = False) -> frozenset[str]:
    """``history`` (the subscriber's) minus the papers of the edition's own pending row."""
    if own is not None and (force or own.state != "sent"):
        return history - frozenset(own.papers)
    return history


def selection_histories(subscribers: Iterable[Subscriber], ledger: LedgerStore, now: datetime, *,
                        force: bool = False) -> dict[str, frozenset[str]]:
    """Lower-cased email -> the history each subscriber's edition for ``now`` selects with."""
    everyone: Mapping[str, frozenset[str]] = ledger.history()
    pending = {(r.email, r.edition): r for r in ledger.pending()}
    out: dict[str, frozenset[str]] = {}
    for sub in subscribers:
        email = sub.email.strip().lower()
        edition = edition_for(sub, now)
        own = ledger.get(email, edition) if force else pending.get((email, edition))
        out[email] = edition_history(everyone.get(email, frozenset()), own, force=force)
    return out
