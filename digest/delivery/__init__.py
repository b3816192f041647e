"""The delivery stage: one subscriber's edition out exactly once (``deliver_edition``, the unit a
worker runs unchanged), a whole run over a transport pool (``send_all``), message building and
the transports (SMTP, Maildir).

Edge (SMTP, files). May import: models, errors, cron, files, ledger, selection, summarize, compose,
render.
"""

from __future__ import annotations

from digest.delivery._batch import deliver_many, due, send_all
from digest.delivery._dkim import KeyPair, dns_record, generate_key
from digest.delivery._edition import EditionRun, RefusalStreak, RetryPolicy, deliver_edition
from digest.delivery._helo import helo_name, helo_problem
from digest.delivery._history import selection_histories
from digest.delivery._keyfiles import KeyFiles, write_key_pair
from digest.delivery._message import OutgoingMessage, build_message
from digest.delivery._transports import SendResult, Transport, open_transport

__all__ = ["EditionRun", "KeyFiles", "KeyPair", "OutgoingMessage", "RefusalStreak",
           "RetryPolicy", "SendResult", "Transport", "build_message", "deliver_edition", "deliver_many",
           "dns_record", "due", "generate_key", "helo_name", "helo_problem", "open_transport",
           "selection_histories", "send_all", "write_key_pair"]
