"""How a message's bytes are kept in a ledger (both backends), so a retry or a re-send after a
crash replays exactly the bytes that were signed and sent.

Owns the one rule: while a message is in flight (``begin`` until the server's reply) its bytes
are stored as they are, behind a one-byte marker, because the row is rewritten a moment later
(``mark_sent`` drops them) and compressing 44 KB costs more CPU (~0.22 ms) than the whole rest
of the ledger's share of a delivery (bench/bench_send.py, docs/delivery.md). Bytes that stay
(an ``archive`` row, a ``deferred`` or ``uncertain`` one) are zlib-compressed (level 1, about a
quarter of the size). Rows written before this rule hold zlib only; ``unpack`` reads both. May
import nothing of the project.
"""

from __future__ import annotations

import zlib

# A zlib stream's first byte names its method (deflate: the low nibble is 8), so it is never
# 0x00: this marker cannot be mistaken for one.
_RAW = b"\x00"


def pending(data: bytes) -> bytes:
    """The bytes of a message about to be sent, as ``begin`` stores them."""
    return _RAW + data


def kept(data: bytes) -> bytes:
    """The bytes of a message kept for longer (archive, deferred, uncertain)."""
    return zlib.compress(data, 1)


def compact(blob: bytes) -> bytes:
    """A stored blob in its kept form (compressed once; a kept blob is returned as it is)."""
    return kept(blob[1:]) if blob[:1] == _RAW else blob


def is_raw(blob: bytes) -> bool:
    return blob[:1] == _RAW


def unpack(blob: bytes) -> bytes:
    """The message bytes of a stored blob, whichever form it has."""
    return blob[1:] if blob[:1] == _RAW else zlib.decompress(blob)
