"""Where the SQLite ledger keeps the bytes of the messages in flight: ``<database>.spool``, a
ring of records beside the database, so a row being sent holds a 25-byte reference instead of
its ~30 KB message (docs/delivery.md, "The message bytes in the ledger").

Why not in the row: SQLite writes a 30 KB value as eight overflow pages into the WAL and back
into the database, frees them again a moment later (``mark_sent``), and keeps up to 4 KB of it
on the row's own b-tree page; four messages in flight left each finished row alone on a page
that mostly stays empty for good (~2.8 KB a delivery). One ``pwrite`` here does the same job.

The rules:
- A record is written while the ledger holds SQLite's write lock (``BEGIN IMMEDIATE``), so one
  writer at a time moves the ring's write position (the file's first page) whatever the
  process; the row pointing at it is committed after the bytes are written.
- A record starts on a page boundary and every 4,096-byte page of it begins with the record's
  own random 8-byte stamp, which the reference holds too: a read gives the bytes only when
  every page carries that stamp and the length fits, so a page that never reached the disk
  (a power cut) or was written over shows as lost, never as another message's bytes.
- When the ring is full the ledger first moves the bytes of every row still pointing into it
  into the row itself (compressed, as a deferred row keeps them), then writes from the start
  again: no reference outlives its record.
- Anything the file cannot do (no folder, not writable, a message larger than the ring) makes
  the ledger keep the bytes in the row as before.

May import nothing of the project.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

PAGE = 4096
_STAMP = 8
_BODY = PAGE - _STAMP
_MAGIC = b"digest-spool-1\n\x00"
_HEAD = struct.Struct("<16sQ")  # magic, write position
_REF = struct.Struct("<cQQ8s")  # marker, offset, length, stamp
MARKER = b"\x01"  # never the first byte of a zlib stream nor the in-row marker (0x00)
RING_BYTES = 16 << 20  # ~500 messages of 30 KB a round


def _extent(length: int) -> tuple[int, int]:
    """(pages, bytes) of the record of a ``length``-byte message: each page a stamp and up to
    ``_BODY`` bytes of it, one page at least."""
    pages = max(1, -(-length // _BODY))
    return pages, length + pages * _STAMP


def is_ref(blob: bytes) -> bool:
    """True when a stored ``message`` value points into the spool."""
    return len(blob) == _REF.size and blob[:1] == MARKER


class Spool:
    """The ring file of one ledger. Not thread-safe by itself: the ``Ledger``'s mutex and
    SQLite's write lock serialize every ``put``."""

    def __init__(self, path: Path, ring_bytes: int = RING_BYTES) -> None:
        self.path = path
        self.ring_bytes = max(ring_bytes, 2 * PAGE)
        self._fd: int | None = None

    def _open(self, *, create: bool = True) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC
                               | (os.O_CREAT if create else 0), 0o600)
        return self._fd

    def _position(self, fd: int) -> int:
        head = os.pread(fd, _HEAD.size, 0)
        if len(head) == _HEAD.size:
            magic, position = _HEAD.unpack(head)
            if magic == _MAGIC and position >= PAGE and position % PAGE == 0:
                return int(position)
        return PAGE  # a new (or foreign) file: start at the first record page

    def put(self, data: bytes, make_room: Callable[[], None]) -> bytes | None:
        """Write ``data`` as a record and return its reference; None when it cannot go here
        (too big for the ring, or the file failed): the caller keeps it in the row. When the
        record does not fit before the ring's end, ``make_room`` is called first (it takes
        every reference out of the ring) and the ring starts over."""
        pages, size = _extent(len(data))
        if pages * PAGE > self.ring_bytes - PAGE:
            return None
        try:
            fd = self._open()
            start = self._position(fd)
            if start + pages * PAGE > self.ring_bytes:
                make_room()
                start = PAGE
            stamp = os.urandom(_STAMP)
            view = memoryview(data)
            parts: list[bytes | memoryview] = []
            for i in range(0, len(data), _BODY):  # one write, the pages' stamps between
                parts += (stamp, view[i:i + _BODY])
            if not parts:
                parts.append(stamp)
            if os.pwritev(fd, parts, start) != size:
                return None
            os.pwrite(fd, _HEAD.pack(_MAGIC, start + pages * PAGE), 0)
        except OSError:
            return None
        return _REF.pack(MARKER, start, len(data), stamp)

    def get(self, ref: bytes) -> bytes | None:
        """The bytes a reference points at, or None when they are not there any more."""
        _, start, length, stamp = _REF.unpack(ref)
        size = _extent(length)[1]
        try:  # reading makes no file: a missing spool has nothing in it
            raw = os.pread(self._open(create=False), size, start)
        except OSError:
            return None
        if len(raw) != size:
            return None
        if any(raw[i:i + _STAMP] != stamp for i in range(0, len(raw), PAGE)):
            return None
        return b"".join([raw[i + _STAMP:i + PAGE] for i in range(0, len(raw), PAGE)])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
