"""SQLite writers of one ledger take turns on ``<database>.writers`` (a flock around each write
transaction), so a waiting writer is woken when the turn is free instead of sleeping in
SQLite's busy handler; SQLite's own lock still decides (a failure to take turns only loses the
speed-up)."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from digest.ledger import Ledger

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
ED = date(2026, 11, 25)


@contextmanager
def turn_held(db: Path) -> Iterator[None]:
    """Another writer's turn: the flock held on its own open file, as another process's is."""
    fd = os.open(f"{db}.writers", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def turn_is_free(db: Path) -> bool:
    fd = os.open(f"{db}.writers", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def begin(ledger: Ledger, email: str) -> None:
    ledger.begin(email, ED, message_id=f"<{email}>", papers=("p1",), data=b"body", now=NOW)


def test_a_write_waits_for_the_turn_and_goes_ahead_when_it_is_free(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    with Ledger(db) as ledger:
        begin(ledger, "first@x.org")  # the file and its schema exist
        assert stat.S_IMODE(Path(f"{db}.writers").stat().st_mode) == 0o600
        done = threading.Event()

        def write() -> None:
            begin(ledger, "second@x.org")
            done.set()

        with turn_held(db):
            writer = threading.Thread(target=write)
            writer.start()
            assert not done.wait(0.3), "the write went ahead while another writer had the turn"
            with Ledger(db) as reader:  # reads never wait for a turn
                assert reader.get("second@x.org", ED) is None
                assert reader.get("first@x.org", ED) is not None
        writer.join(10)
        assert done.is_set()
        row = ledger.get("second@x.org", ED)
        assert row is not None and row.state == "sending"
        assert turn_is_free(db)  # given back after the write


def test_the_turn_is_given_back_after_every_kind_of_write(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    with Ledger(db) as ledger:
        begin(ledger, "a@x.org")
        assert turn_is_free(db)
        # mark_sent with an archive is one transaction around nested writes
        ledger.mark_sent("a@x.org", ED, now=NOW, archive=timedelta(days=30))
        assert turn_is_free(db)
        row = ledger.get("a@x.org", ED)
        assert row is not None and row.state == "sent"
        begin(ledger, "b@x.org")
        ledger.mark_deferred("b@x.org", ED, now=NOW, code=451, error="try later")
        assert turn_is_free(db)


def test_a_failed_write_gives_the_turn_back(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    with Ledger(db) as ledger:
        begin(ledger, "a@x.org")
        try:
            ledger.begin("a@x.org", ED, message_id="<m>", papers=("p1",), data=b"x",
                         now=NOW.replace(tzinfo=None))  # refused before it is written
        except ValueError:
            pass
        assert turn_is_free(db)
        try:
            ledger._write("INSERT INTO no_such_table VALUES (1)", ())
        except Exception as exc:  # LedgerError naming the file
            assert str(db) in str(exc)
        assert turn_is_free(db)


def test_writes_still_work_when_the_turn_file_cannot_be_opened(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    Path(f"{db}.writers").mkdir()  # not a file: opening it for writing fails
    with Ledger(db) as ledger:
        begin(ledger, "a@x.org")
        ledger.mark_sent("a@x.org", ED, now=NOW)
        row = ledger.get("a@x.org", ED)
        assert row is not None and row.state == "sent"


def test_a_symlinked_ledger_takes_turns_with_the_file_itself(tmp_path: Path) -> None:
    real = tmp_path / "real" / "digest.db"
    real.parent.mkdir()
    link = tmp_path / "link.db"
    with Ledger(real) as ledger:
        begin(ledger, "a@x.org")
    link.symlink_to(real)
    with Ledger(link) as ledger:
        done = threading.Event()

        def write() -> None:
            begin(ledger, "b@x.org")
            done.set()

        with turn_held(real):
            writer = threading.Thread(target=write)
            writer.start()
            assert not done.wait(0.3)
        writer.join(10)
        assert done.is_set()
    assert not Path(f"{link}.writers").exists()
