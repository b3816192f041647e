"""The SQLite ledger keeps the bytes of a message in flight in ``<database>.spool`` (a ring of
stamped records), the row a 25-byte reference: the bytes read back exactly, survive the ring
going round while their row is still being sent, and a record that is not there any more
reads as lost, never as another message."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from digest.errors import LedgerError
from digest.ledger import Ledger
from digest.ledger._spool import PAGE, RING_BYTES

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
ED = date(2026, 11, 25)
BIG = 1 << 19  # 512 KiB messages: the 16 MiB ring goes round after ~31 of them


def message(i: int, size: int = 30_000) -> bytes:
    """Bytes unique to ``i`` all along (a stale page of another message cannot match)."""
    line = f"Subject: message {i:06d} of the test, the same line again\r\n".encode()
    return (line * (size // len(line) + 1))[:size]


def stored(db: Path, email: str) -> bytes | None:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT message FROM deliveries WHERE email = ?", (email,)).fetchall()
    return rows[0][0] if rows else None


def begin(ledger: Ledger, i: int, data: bytes) -> str:
    email = f"r{i}@x.org"
    ledger.begin(email, ED, message_id=f"<{i}@x.org>", papers=("p1",), data=data, now=NOW)
    return email


def test_a_row_in_flight_points_into_the_spool_and_reads_back_the_same_bytes(
        tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    ledger = Ledger(db)
    data = [message(i) for i in range(4)]
    emails = [begin(ledger, i, d) for i, d in enumerate(data)]
    spool = tmp_path / "digest.db.spool"
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600  # message bodies: the owner only
    for email, d in zip(emails, data):
        assert len(stored(db, email) or b"") == 25
        assert ledger.stored_message(email, ED) == d
        # another connection (another shard, or the run after a crash) reads them too
        assert Ledger(db).stored_message(email, ED) == d
    ledger.mark_sent(emails[0], ED, now=NOW)
    assert stored(db, emails[0]) is None and ledger.stored_message(emails[0], ED) is None
    ledger.close()


def test_the_bytes_survive_a_crash_of_the_process_that_wrote_them(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    code = (
        "import os, sys\n"
        "from datetime import date, datetime, timezone\n"
        "from pathlib import Path\n"
        "from digest.ledger import Ledger\n"
        "ledger = Ledger(Path(sys.argv[1]))\n"
        "ledger.begin('a@x.org', date(2026, 11, 25), message_id='<a@x.org>', papers=('p1',),"
        " data=sys.stdin.buffer.read(), now=datetime(2026, 11, 25, 7, tzinfo=timezone.utc))\n"
        "os._exit(0)  # no close, no cleanup: as kill -9 leaves it\n")
    data = message(7)
    subprocess.run([sys.executable, "-c", code, str(db)], input=data, check=True,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    ledger = Ledger(db)
    row = ledger.get("a@x.org", ED)
    assert row is not None and row.state == "sending"
    assert ledger.stored_message("a@x.org", ED) == data


def test_rows_still_in_flight_keep_their_bytes_when_the_ring_goes_round(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    ledger = Ledger(db)
    flying = {begin(ledger, i, message(i, BIG)): message(i, BIG) for i in range(3)}
    for i in range(3, 3 + 2 * RING_BYTES // BIG):  # twice round, each finished at once
        email = begin(ledger, i, message(i, BIG))
        assert ledger.stored_message(email, ED) == message(i, BIG)
        ledger.mark_sent(email, ED, now=NOW)
    assert (tmp_path / "digest.db.spool").stat().st_size <= RING_BYTES
    for email, data in flying.items():
        kept = stored(db, email) or b""
        assert 25 < len(kept) < len(data) // 10  # moved into the row, compressed
        assert ledger.stored_message(email, ED) == data
        ledger.mark_sent(email, ED, now=NOW, archive=timedelta(days=30))
        assert ledger.archived_message(email, ED) == data


def test_two_writers_share_one_ring_without_overlapping(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    a, b = Ledger(db), Ledger(db)  # two connections, as two shards have
    sent = {}
    for i in range(60):  # ~1.9 times round the ring, alternating writers
        data = message(i, BIG // 2 + i * 977)
        sent[begin(a if i % 2 else b, i, data)] = data
        if i % 3 == 0:
            for email, d in sent.items():
                assert a.stored_message(email, ED) == d, email
    for email, d in sent.items():
        assert b.stored_message(email, ED) == d, email


def test_a_record_written_over_or_gone_reads_as_lost(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    ledger = Ledger(db)
    first, second = begin(ledger, 1, message(1)), begin(ledger, 2, message(2, 3 * PAGE))
    spool = tmp_path / "digest.db.spool"
    with open(spool, "r+b") as f:  # one page of the first record never reached the disk
        f.seek(2 * PAGE)
        f.write(b"\0" * PAGE)
    assert ledger.stored_message(first, ED) is None  # lost: the run renders it again
    assert ledger.stored_message(second, ED) == message(2, 3 * PAGE)
    ledger.close()
    spool.unlink()  # gone between two runs
    ledger = Ledger(db)
    assert ledger.stored_message(second, ED) is None
    assert not spool.exists()  # reading makes no spool
    third = begin(ledger, 3, message(3))  # a new spool is started
    assert ledger.stored_message(third, ED) == message(3)
    # a deferred row whose bytes were lost keeps none (a later run builds the message anew)
    ledger.mark_deferred(first, ED, now=NOW, code=451, error="later")
    assert stored(db, first) is None and ledger.stored_message(first, ED) is None


def test_a_deferred_row_takes_its_bytes_out_of_the_spool(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    ledger = Ledger(db)
    email = begin(ledger, 1, message(1))
    ledger.mark_deferred(email, ED, now=NOW, code=451, error="later")
    other = begin(ledger, 2, message(2))
    assert ledger.mark_ambiguous(other, ED, now=NOW, error="no reply") == "deferred"
    ledger.close()
    (tmp_path / "digest.db.spool").unlink()  # the ring going round does the same
    ledger = Ledger(db)
    assert ledger.stored_message(email, ED) == message(1)
    assert ledger.stored_message(other, ED) == message(2)


def test_where_the_spool_cannot_take_the_bytes_the_row_keeps_them(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    ledger = Ledger(db)
    huge = message(1, RING_BYTES + PAGE)  # bigger than the ring
    email = begin(ledger, 1, huge)
    assert len(stored(db, email) or b"") == len(huge) + 1
    assert ledger.stored_message(email, ED) == huge
    ledger.close()
    db2 = tmp_path / "other.db"
    (tmp_path / "other.db.spool").mkdir()  # a spool that cannot be opened as a file
    ledger = Ledger(db2)
    email = begin(ledger, 2, message(2))
    assert len(stored(db2, email) or b"") == len(message(2)) + 1
    assert ledger.stored_message(email, ED) == message(2)


def test_a_begin_that_fails_as_the_ring_goes_round_leaves_no_reference_behind(
        tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    ledger = Ledger(db)
    flying = {begin(ledger, i, message(i, BIG)): message(i, BIG)
              for i in range(RING_BYTES // BIG - 1)}  # the ring full of rows being sent
    with sqlite3.connect(db) as conn:  # this one row's insert fails (a full disk, say)
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON deliveries WHEN NEW.email = "
                     "'boom@x.org' BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(LedgerError, match="boom"):
        ledger.begin("boom@x.org", ED, message_id="<boom@x.org>", papers=("p1",),
                     data=message(0, BIG), now=NOW)
    for i in range(100, 110):  # the rewound ring is written over from its start
        begin(ledger, i, message(i, BIG))
    for email, data in flying.items():
        assert ledger.stored_message(email, ED) == data, email
