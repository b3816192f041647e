"""``mark_sent(hold=True)``, on both ledgers: the ``sent`` waits in memory for the ledger's
next write, which commits it with that write (a run's next ``begin``: SQLite in the same
transaction, PostgreSQL in the same statement), or for ``flush()`` / ``close()``. What another
process sees is read through a second connection to the same database; what this ledger
answers itself is never stale."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from digest.errors import LedgerError
from digest.ledger import LedgerStore, open_ledger
from digest.models import PostgresDatabase

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
ED = date(2026, 11, 25)


def begin(ledger: LedgerStore, email: str) -> None:
    ledger.begin(email, ED, message_id=f"<{email}.1@example.org>", papers=("p1",),
                 data=b"Subject: hi\r\n\r\nbody\r\n", now=NOW)


def state(database: Path | PostgresDatabase, email: str) -> str | None:
    """The row's state as another process would read it (its own connection)."""
    with open_ledger(database) as other:
        row = other.get(email, ED)
        return None if row is None else row.state


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    database: Path | PostgresDatabase = tmp_path / "digest.db" if request.param == "sqlite" \
        else request.getfixturevalue("pg_database")
    led = open_ledger(database)
    led.create()
    try:
        yield led
    finally:
        led.close()


def test_a_held_sent_is_committed_with_the_next_begin(ledger: LedgerStore) -> None:
    begin(ledger, "ada@example.org")
    ledger.mark_sent("ada@example.org", ED, now=NOW, code=250, reply="OK", hold=True)
    assert state(ledger.path, "ada@example.org") == "sending"
    begin(ledger, "bob@example.org")  # one transaction: bob's begin and ada's sent
    assert state(ledger.path, "ada@example.org") == "sent"
    assert state(ledger.path, "bob@example.org") == "sending"
    row = ledger.get("ada@example.org", ED)
    assert row is not None and (row.code, row.error, row.sent_at) == (250, "OK", NOW)
    assert not row.has_message  # the bytes dropped as ever


def test_flush_and_close_commit_what_is_held(ledger: LedgerStore) -> None:
    for email in ("ada@example.org", "bob@example.org"):
        begin(ledger, email)
    ledger.mark_sent("ada@example.org", ED, now=NOW, hold=True)
    ledger.flush()
    assert state(ledger.path, "ada@example.org") == "sent"
    ledger.mark_sent("bob@example.org", ED, now=NOW, hold=True)
    ledger.close()
    assert state(ledger.path, "bob@example.org") == "sent"


def test_this_ledgers_own_reads_see_what_it_holds(ledger: LedgerStore) -> None:
    for email in ("ada@example.org", "bob@example.org", "cy@example.org"):
        begin(ledger, email)
    ledger.mark_sent("ada@example.org", ED, now=NOW, hold=True)
    # a run's per-subscriber reads of another row leave it held...
    ledger.selection_state("cy@example.org", ED)
    ledger.edition_state("cy@example.org", ED)
    assert state(ledger.path, "ada@example.org") == "sending"
    # ...and of the held row see it sent (committed first)
    own = ledger.edition_state("ada@example.org", ED).row
    assert own is not None and own.state == "sent"
    assert state(ledger.path, "ada@example.org") == "sent"
    # any other read commits first too
    ledger.mark_sent("bob@example.org", ED, now=NOW, hold=True)
    assert [r.state for r in ledger.pending()] == ["sending"]  # cy only
    assert state(ledger.path, "bob@example.org") == "sent"


def test_every_kind_of_write_commits_what_is_held(ledger: LedgerStore) -> None:
    for email in ("ada@example.org", "bob@example.org", "cy@example.org"):
        begin(ledger, email)
    ledger.mark_sent("ada@example.org", ED, now=NOW, hold=True)
    ledger.suppress("zed@example.org", now=NOW)  # a one-statement write
    assert state(ledger.path, "ada@example.org") == "sent"
    ledger.mark_sent("bob@example.org", ED, now=NOW, hold=True)
    ledger.mark_deferred("cy@example.org", ED, now=NOW, code=451, error="later")
    assert state(ledger.path, "bob@example.org") == "sent"
    assert state(ledger.path, "cy@example.org") == "deferred"


def test_a_held_sent_for_a_missing_row_is_reported_and_the_others_still_commit(
        ledger: LedgerStore) -> None:
    begin(ledger, "ada@example.org")
    ledger.mark_sent("nobody@example.org", ED, now=NOW, hold=True)
    ledger.mark_sent("ada@example.org", ED, now=NOW, hold=True)
    with pytest.raises(LedgerError, match="no delivery row for nobody@example.org"):
        begin(ledger, "bob@example.org")
    # bob's begin is not there; ada's sent is kept (still held on SQLite, where the whole
    # transaction rolled back; committed on PostgreSQL) and the bad one is gone for good
    assert state(ledger.path, "bob@example.org") is None
    ledger.flush()
    assert state(ledger.path, "ada@example.org") == "sent"
    begin(ledger, "bob@example.org")
    assert state(ledger.path, "bob@example.org") == "sending"


def test_without_hold_a_sent_is_committed_at_once(ledger: LedgerStore) -> None:
    begin(ledger, "ada@example.org")
    ledger.mark_sent("ada@example.org", ED, now=NOW)
    assert state(ledger.path, "ada@example.org") == "sent"


# ``begin(hold=True)``: SQLite holds it for its next write or flush (``holds`` says so), which a
# run makes before the message's body is written; PostgreSQL writes it at once.

def held_begin(ledger: LedgerStore, email: str,
               data: bytes | None = b"Subject: hi\r\n\r\nbody\r\n") -> None:
    ledger.begin(email, ED, message_id=f"<{email}.1@example.org>", papers=("p1",), data=data,
                 now=NOW, hold=True)


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[LedgerStore]:
    led = open_ledger(tmp_path / "digest.db")
    try:
        yield led
    finally:
        led.close()


def test_held_begins_are_committed_together_by_a_flush_bytes_and_all(
        sqlite_ledger: LedgerStore) -> None:
    ledger = sqlite_ledger  # a fresh file, not even connected before the flush
    held_begin(ledger, "ada@example.org")
    held_begin(ledger, "bob@example.org", data=None)
    assert not Path(ledger.path).exists()  # nothing written yet, not even the file
    assert ledger.holds("Ada@Example.org", ED) and not ledger.holds("cy@example.org", ED)
    ledger.flush()
    assert not ledger.holds("ada@example.org", ED)
    assert (state(ledger.path, "ada@example.org"), state(ledger.path, "bob@example.org")) \
        == ("sending", "sending")
    with open_ledger(ledger.path) as other:  # the spooled bytes are readable elsewhere too
        assert other.stored_message("ada@example.org", ED) == b"Subject: hi\r\n\r\nbody\r\n"
        row = other.get("ada@example.org", ED)
        assert row is not None and (row.attempts, row.message_id, row.papers) \
            == (1, "<ada@example.org.1@example.org>", ("p1",))


def test_a_held_begin_goes_first_in_the_next_write_and_its_own_reads(
        sqlite_ledger: LedgerStore) -> None:
    ledger = sqlite_ledger
    begin(ledger, "cy@example.org")
    held_begin(ledger, "ada@example.org")
    # a read of another row leaves it held; a read of its own row sees it
    assert ledger.edition_state("cy@example.org", ED).row is not None
    assert state(ledger.path, "ada@example.org") is None
    own = ledger.edition_state("ada@example.org", ED).row
    assert own is not None and own.state == "sending"
    # a refusal before the body: the write that records it commits the begin first
    held_begin(ledger, "bob@example.org")
    ledger.mark_deferred("bob@example.org", ED, now=NOW, code=451, error="later")
    assert state(ledger.path, "bob@example.org") == "deferred"
    # a held sent, then a held begin of the same row's next attempt: in that order
    ledger.mark_sent("cy@example.org", ED, now=NOW, hold=True)
    held_begin(ledger, "cy@example.org")
    ledger.close()
    with open_ledger(ledger.path) as other:
        row = other.get("cy@example.org", ED)
    assert row is not None and (row.state, row.attempts) == ("sending", 2)


def test_a_held_begin_is_committed_when_the_ledger_closes(sqlite_ledger: LedgerStore) -> None:
    held_begin(sqlite_ledger, "ada@example.org")
    sqlite_ledger.close()
    assert state(sqlite_ledger.path, "ada@example.org") == "sending"


def test_postgresql_writes_a_held_begin_at_once(pg_database: PostgresDatabase) -> None:
    with open_ledger(pg_database) as ledger:
        ledger.create()
        held_begin(ledger, "ada@example.org")
        assert not ledger.holds("ada@example.org", ED)
        assert state(pg_database, "ada@example.org") == "sending"
