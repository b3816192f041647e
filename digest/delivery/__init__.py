"""The delivery stage: one subscriber's edition out exactly once (``deliver_edition``, the unit a
worker runs unchanged), a whole run over a transport pool (``send_all``), message building and
the transports (SMTP, Maildir).

Edge (SMTP, files). May import: models, errors, cron, ledger, selection, summarize, compose, render.
"""

from __future__ import annotations

from digest.delivery._batch import due, send_all
from digest.delivery._edition import EditionRun, RetryPolicy, deliver_edition
from digest.delivery._history import selection_histories
from digest.delivery._message import OutgoingMessage, build_message
from digest.delivery._transports import open_transport

__all__ = ["EditionRun", "OutgoingMessage", "RetryPolicy", "build_message", "deliver_edition",
           "due", "open_transport", "selection_histories", "send_all"]
