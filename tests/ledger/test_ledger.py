"""The ledger contract on both backends (a real SQLite file in tmp_path; a fresh schema in the
real PostgreSQL), plus what only SQLite has: the file, its WAL mode, the flock send lock."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from digest.errors import LedgerError, LockedError
from digest.ledger import EditionState, Ledger, LedgerStore, SelectionState, SendLock, open_ledger
from digest.ledger._sqlite import send_lock
from digest.models import Feedback, LeftOut, Paper, PostgresDatabase

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
ED = date(2026, 11, 25)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | PostgresDatabase:
    """Each contract test once per backend."""
    if request.param == "sqlite":
        return tmp_path / "digest.db"
    found: PostgresDatabase = request.getfixturevalue("pg_database")
    return found


@pytest.fixture
def ledger(database: Path | PostgresDatabase) -> Iterator[LedgerStore]:
    with open_ledger(database) as opened:
        yield opened


def test_missing_file_reads_empty_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "digest.db"
    ledger = Ledger(db)
    assert ledger.history() == {}
    assert ledger.suppressed() == frozenset()
    assert ledger.rows() == ()
    assert ledger.get("a@x.org", ED) is None
    assert ledger.edition_state("a@x.org", ED) == EditionState(False, None, None)
    assert ledger.selection_state("a@x.org", ED) == SelectionState(
        False, None, None, history=frozenset(), feedback=None)
    assert ledger.unsuppress("a@x.org") is False
    assert not db.exists() and not db.parent.exists()


def test_schema_and_wal_created_on_first_write(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    with Ledger(db) as ledger:
        ledger.begin("A@X.org", ED, message_id="<m1@x>", papers=("p1",), data=b"x", now=NOW)
        wal_mode = stat.S_IMODE(Path(f"{db}-wal").stat().st_mode)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"deliveries", "suppressions"} <= tables
    conn.close()
    # addresses and message bodies: the owner's only, the WAL beside it too
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert wal_mode == 0o600
    assert not list(tmp_path.glob(".digest.db.new-*"))


V1_SCHEMA = """
CREATE TABLE deliveries (
    email TEXT NOT NULL, edition TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'deferred', 'failed')),
    message_id TEXT, papers TEXT NOT NULL DEFAULT '[]', attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, sent_at TEXT, last_code INTEGER,
    last_error TEXT, possible_duplicate INTEGER NOT NULL DEFAULT 0, message BLOB,
    PRIMARY KEY (email, edition));
CREATE TABLE suppressions (email TEXT PRIMARY KEY, created_at TEXT NOT NULL,
                           source TEXT NOT NULL);
INSERT INTO deliveries (email, edition, state, message_id, papers, attempts, created_at,
                        updated_at) VALUES ('a@x.org', '2026-11-25', 'sending', '<m@x>',
                        '["p1"]', 1, '2026-11-25T09:00:00+00:00', '2026-11-25T09:00:00+00:00');
PRAGMA user_version=1;
"""


def test_a_schema_1_ledger_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    conn.close()
    with Ledger(db) as ledger:
        (row,) = ledger.rows()
        assert (row.email, row.state, row.papers, row.ambiguous) == ("a@x.org", "sending",
                                                                      ("p1",), 0)
        assert ledger.mark_ambiguous("a@x.org", ED, now=NOW, error="crash") == "deferred"
        assert ledger.mark_ambiguous("a@x.org", ED, now=NOW, error="late") == "uncertain"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


def test_an_empty_ledger_file_is_refused_as_lost_not_taken_as_new(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    db.write_bytes(b"")
    with pytest.raises(LedgerError, match=r"is empty \(0 bytes\), so it is not a ledger"):
        Ledger(db).rows()
    with pytest.raises(LedgerError, match="--new-ledger"):
        Ledger(db).begin("a@x.org", ED, message_id="<m@x>", papers=(), data=b"x", now=NOW)
    assert db.stat().st_size == 0  # left as found


def test_ambiguous_outcomes_resend_once_then_hold_until_resolved(ledger: LedgerStore) -> None:
    for email in ("a@x.org", "b@x.org"):
        ledger.begin(email, ED, message_id=f"<{email}>", papers=("p1",), data=b"body",
                     now=NOW)
        assert ledger.mark_ambiguous(email, ED, now=NOW, error="no reply") == "deferred"
        assert ledger.stored_message(email, ED) == b"body"  # the re-send replays it
        ledger.begin(email, ED, message_id=f"<{email}>", papers=("p1",), data=None,
                     now=NOW)
        assert ledger.mark_ambiguous(email, ED, now=NOW, error="no reply") == "uncertain"
    assert ledger.pending() == ()  # nothing re-sends an uncertain row
    assert ledger.history() == {"a@x.org": frozenset({"p1"}), "b@x.org": frozenset({"p1"})}
    assert ledger.resolve("a@x.org", ED, sent=True, now=NOW).state == "sent"
    again = ledger.resolve("b@x.org", ED, sent=False, now=NOW)
    assert (again.state, again.has_message, again.ambiguous) == ("deferred", True, 1)
    ledger.begin("b@x.org", ED, message_id="<b@x.org>", papers=("p1",), data=None, now=NOW)
    assert ledger.mark_ambiguous("b@x.org", ED, now=NOW, error="no reply") == "uncertain"
    with pytest.raises(LedgerError, match="is not uncertain"):
        ledger.resolve("a@x.org", ED, sent=True, now=NOW)


def test_state_lifecycle_and_history(ledger: LedgerStore) -> None:
    ledger.begin("A@X.org", ED, message_id="<m1@x>", papers=("p1", "p2"), data=b"hello",
                 now=NOW)
    row = ledger.get("a@x.org", ED)
    assert row is not None
    assert (row.email, row.state, row.attempts, row.message_id) == ("a@x.org", "sending", 1,
                                                                    "<m1@x>")
    assert row.has_message and ledger.stored_message("a@x.org", ED) == b"hello"
    # sending counts as possibly sent: a crash must not make the papers come again
    assert ledger.history() == {"a@x.org": frozenset({"p1", "p2"})}

    # deferred: its papers are fixed and will go out, so a new selection leaves them out too
    ledger.mark_deferred("a@x.org", ED, now=NOW, code=451, error="try later")
    assert ledger.history() == {"a@x.org": frozenset({"p1", "p2"})}
    assert [r.email for r in ledger.pending()] == ["a@x.org"]
    assert ledger.stored_message("a@x.org", ED) == b"hello"  # kept for the retry

    ledger.begin("a@x.org", ED, message_id="<m1@x>", papers=("p1", "p2"), data=None, now=NOW,
                 possible_duplicate=True)
    ledger.mark_sent("a@x.org", ED, now=NOW, code=250, reply="ok")
    row = ledger.get("a@x.org", ED)
    assert row is not None
    assert (row.state, row.attempts, row.code, row.possible_duplicate) == ("sent", 2, 250, True)
    assert row.sent_at == NOW and not row.has_message
    assert ledger.pending() == ()

    ledger.begin("b@x.org", ED, message_id="<m2@x>", papers=("p3",), data=b"b", now=NOW)
    ledger.mark_failed("b@x.org", ED, now=NOW, code=550, error="no such user")
    row = ledger.get("b@x.org", ED)
    assert row is not None and row.state == "failed" and row.error == "no such user"
    assert ledger.history() == {"a@x.org": frozenset({"p1", "p2"})}
    assert ledger.history_for("A@x.org") == frozenset({"p1", "p2"})
    assert ledger.history_for("b@x.org") == frozenset()
    assert [r.email for r in ledger.rows()] == ["a@x.org", "b@x.org"]
    assert [r.email for r in ledger.rows("B@x.org")] == ["b@x.org"]
    (status,) = ledger.status()
    assert (status.edition, status.sent, status.failed, status.sending, status.deferred,
            status.possible_duplicates) == (ED, 1, 1, 0, 0, 1)


def test_finish_without_row_is_an_error(ledger: LedgerStore) -> None:
    with pytest.raises(LedgerError, match="no delivery row for a@x.org edition 2026-11-25"):
        ledger.mark_sent("a@x.org", ED, now=NOW)


def test_suppressions(ledger: LedgerStore) -> None:
    assert ledger.suppress(" Bob@X.org ", now=NOW) is True
    assert ledger.suppress("bob@x.org", now=NOW) is False
    assert ledger.suppressed() == frozenset({"bob@x.org"})
    assert ledger.is_suppressed("BOB@x.org")
    assert ledger.unsuppress("bob@X.org") is True
    assert ledger.suppressed() == frozenset()


def test_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    db.write_text("this is not sqlite " * 100)
    with pytest.raises(LedgerError, match="digest.db: not a usable SQLite database"):
        Ledger(db).history()


def test_send_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "digest.db"
    with subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from digest.ledger import SendLock\n"
         f"l = SendLock(Path({str(db)!r})); l.acquire(); print('held', flush=True); "
         "sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with pytest.raises(LockedError) as info:
                SendLock(db).acquire()
            assert str(info.value).startswith(
                f"another digest process (pid {holder.pid}) is sending with digest.db")
        finally:
            holder.kill()  # like kill -9: the kernel must drop the lock
            holder.wait()
    with send_lock(db):  # free again, no stale lock
        pass
    with SendLock(db):
        pass


# --------------------------------------------------------------------------- digest serve


def test_sent_bytes_are_archived_only_when_asked(ledger: LedgerStore) -> None:
    for who, archive in (("a@x.org", timedelta(days=30)), ("b@x.org", None)):
        ledger.begin(who, ED, message_id=f"<{who}>", papers=("p1",), data=b"the bytes",
                     now=NOW)
        ledger.mark_sent(who, ED, now=NOW, archive=archive)
        assert ledger.stored_message(who, ED) is None  # gone from the delivery row
    [kept] = ledger.archived("A@X.org")
    assert (kept.edition, kept.message_id, kept.sent_at) == (ED, "<a@x.org>", NOW)
    assert ledger.archived_message("a@x.org", ED) == b"the bytes"
    assert ledger.archived("b@x.org") == () and ledger.archived_message("b@x.org", ED) is None


def test_mark_sent_of_a_missing_row_archives_nothing(ledger: LedgerStore) -> None:
    ledger.suppress("z@x.org", now=NOW)  # creates the file
    with pytest.raises(LedgerError, match="no delivery row"):
        ledger.mark_sent("a@x.org", ED, now=NOW, archive=timedelta(days=1))
    assert ledger.archived("a@x.org") == ()
    ledger.begin("a@x.org", ED, message_id="<m>", papers=(), data=b"x", now=NOW)
    ledger.mark_sent("a@x.org", ED, now=NOW, archive=timedelta(days=1))  # still works


def test_the_archive_keeps_each_subscriber_archive_for(ledger: LedgerStore) -> None:
    for day in range(10):
        when = NOW + timedelta(days=day)
        for who in ("a@x.org", "b@x.org"):
            ledger.begin(who, when.date(), message_id=f"<{day}{who}>", papers=(),
                         data=b"x", now=when)
            if who == "a@x.org" or day < 3:  # b's last send is on day 2
                ledger.mark_sent(who, when.date(), now=when, archive=timedelta(days=3))
    assert [e.edition.day for e in ledger.archived("a@x.org")] == [4, 3, 2, 1]
    assert len(ledger.archived("b@x.org")) == 3  # pruned only when b gets mail


MISSED = (LeftOut(paper_id="2411.00001", title="Ünïcode & <b>", authors="A, B et al.",
                  url="https://arxiv.org/abs/2411.00001", tags=("LLM · in title",)),
          LeftOut(paper_id="x", title="No link", authors="", url=None))


def test_left_out_matches_show_only_once_archived_and_round_trip(ledger: LedgerStore) -> None:
    ledger.begin("a@x.org", ED, message_id="<m>", papers=("p",), data=b"x", now=NOW)
    ledger.keep_left_out("A@x.org", ED, MISSED)
    assert ledger.archived_left_out("a@x.org", ED) is None  # not sent (archived) yet
    ledger.mark_sent("a@x.org", ED, now=NOW, archive=timedelta(days=3))
    assert ledger.archived_left_out("A@X.org", ED) == MISSED
    assert ledger.archived_left_out("a@x.org", ED + timedelta(days=1)) is None
    assert ledger.archived_left_out("b@x.org", ED) is None


def test_left_out_matches_are_kept_as_long_as_their_archive_row(ledger: LedgerStore) -> None:
    for day in range(6):
        when = NOW + timedelta(days=day)
        ledger.begin("a@x.org", when.date(), message_id=f"<{day}>", papers=(), data=b"x",
                     now=when)
        ledger.keep_left_out("a@x.org", when.date(), MISSED[:1])
        if day != 4:  # day 4 failed for good: its matches never show, and go with day 5
            ledger.mark_sent("a@x.org", when.date(), now=when, archive=timedelta(days=3))
        else:
            ledger.mark_failed("a@x.org", when.date(), now=when, code=550, error="no")
    kept = [e.edition for e in ledger.archived("a@x.org")]
    assert [d.day for d in kept] == [30, 28, 27]  # 3 days back from Nov 30; the 29th failed
    assert all(ledger.archived_left_out("a@x.org", d) == MISSED[:1] for d in kept)
    if isinstance(ledger, Ledger):  # and the rows of the others are gone, not just hidden
        rows = sqlite3.connect(ledger.path).execute(
            "SELECT edition FROM left_out ORDER BY edition").fetchall()
        assert [r[0] for r in rows] == sorted(d.isoformat() for d in kept)


def test_preferences_round_trip_and_an_empty_choice_is_no_row(ledger: LedgerStore) -> None:
    assert ledger.preferences("a@x.org") is None
    ledger.set_preferences("A@x.org", paused_until=date(2026, 12, 1), max_papers=4, now=NOW)
    got = ledger.preferences("a@x.org")
    assert got is not None and (got.paused_until, got.max_papers, got.updated) == (
        date(2026, 12, 1), 4, NOW)
    assert got.paused_on(ED) and not got.paused_on(date(2026, 12, 1))
    ledger.set_preferences("a@x.org", paused_until=None, max_papers=None, now=NOW)
    assert ledger.preferences("a@x.org") is None and ledger.all_preferences() == ()


def test_known_addresses_span_deliveries_suppressions_and_preferences(ledger: LedgerStore) -> None:
    ledger.begin("a@x.org", ED, message_id="<m>", papers=(), data=None, now=NOW)
    ledger.suppress("b@x.org", now=NOW, source="web")
    ledger.set_preferences("c@x.org", paused_until=None, max_papers=2, now=NOW)
    assert ledger.known_addresses() == {"a@x.org", "b@x.org", "c@x.org"}
    assert ledger.suppression_source("b@x.org") == "web"
    assert ledger.suppression_source("a@x.org") is None


def test_skips_say_why_until_the_edition_is_sent(ledger: LedgerStore) -> None:
    at = datetime(2026, 9, 24, 9, tzinfo=timezone.utc)
    day = date(2026, 9, 24)
    ledger.note_skip("Ada@Example.org", day, "nothing new: no new papers match your topics",
                     now=at)
    ledger.note_skip("ada@example.org", day, "nothing new: 1 matching paper was already sent",
                     now=at)  # the latest reason wins
    (skip,) = ledger.skips("ada@example.org")
    assert (skip.email, skip.edition, skip.at) == ("ada@example.org", day, at)
    assert skip.reason == "nothing new: 1 matching paper was already sent"
    assert ledger.skips("bob@example.org") == ()
    ledger.begin("ada@example.org", day, message_id="<m@x>", papers=("2609.26811",),
                 data=b"x", now=at)
    assert ledger.skips() == ()  # a delivery row for the edition wins over the skip


def test_the_send_lock_is_keyed_on_the_resolved_database_file(tmp_path: Path) -> None:
    """A symlink to the database (or to its folder) is the same ledger: a second sender
    through it must be refused, not allowed to send every edition again."""
    db = tmp_path / "data" / "digest.db"
    db.parent.mkdir()
    (tmp_path / "link.db").symlink_to(db)
    (tmp_path / "alias").symlink_to(db.parent, target_is_directory=True)
    with SendLock(db):
        for other in (tmp_path / "link.db", tmp_path / "alias" / "digest.db"):
            with pytest.raises(LockedError, match="another digest process"):
                SendLock(other).acquire()


def test_feedback_keeps_the_latest_verdict_with_the_papers_text(ledger: LedgerStore) -> None:
    paper = Paper(id="2406.01234", title="T", abstract="An abstract.")
    other = Paper(id="2406.05678", title="U", abstract="Another.")
    assert ledger.feedback() == {}
    ledger.record_feedback("A@x.org", paper, "more", now=NOW)
    ledger.record_feedback("a@x.org", other, "more", now=NOW + timedelta(seconds=1))
    assert ledger.feedback() == {"a@x.org": Feedback(more=(paper, other), less=())}
    ledger.record_feedback("a@x.org", paper, "less", now=NOW + timedelta(seconds=2))
    assert ledger.feedback() == {"a@x.org": Feedback(more=(other,), less=(paper,))}
    # one address's, read alone (what a delivery reads), is the same record
    assert ledger.feedback_for(" A@X.org") == Feedback(more=(other,), less=(paper,))
    assert ledger.feedback_for("b@x.org") is None
    with pytest.raises(ValueError):
        ledger.record_feedback("a@x.org", paper, "maybe", now=NOW)


def _separately(ledger: LedgerStore, email: str, edition: date) -> SelectionState:
    """What ``selection_state`` must equal: the five reads it stands for, one by one."""
    return SelectionState(suppressed=ledger.is_suppressed(email),
                          preferences=ledger.preferences(email), row=ledger.get(email, edition),
                          history=ledger.history_for(email), feedback=ledger.feedback_for(email))


def test_one_subscribers_edition_read_at_once_is_the_separate_reads(ledger: LedgerStore) -> None:
    """``edition_state`` and ``selection_state`` (one statement each) answer what
    ``is_suppressed``, ``preferences``, ``get``, ``history_for`` and ``feedback_for`` answer,
    for an address with everything, with nothing, with only some, and never another's."""
    earlier = ED - timedelta(days=7)
    # a@: every table, and rows in each state the history counts or not
    ledger.begin("a@x.org", earlier, message_id="<e@x>", papers=("p1", "p2"), data=b"e", now=NOW)
    ledger.mark_sent("a@x.org", earlier, now=NOW, code=250, reply="ok")
    ledger.begin("a@x.org", ED - timedelta(days=1), message_id="<f@x>", papers=("p9",),
                 data=b"f", now=NOW)
    ledger.mark_failed("a@x.org", ED - timedelta(days=1), now=NOW, code=550, error="no")
    ledger.begin("a@x.org", ED, message_id="<d@x>", papers=("p2", "p3"), data=b"d", now=NOW,
                 possible_duplicate=True)
    ledger.mark_deferred("a@x.org", ED, now=NOW, code=451, error="later")
    ledger.suppress("a@x.org", now=NOW)
    ledger.set_preferences("a@x.org", paused_until=date(2026, 12, 1), max_papers=3, now=NOW)
    # feedback out of order: the same second (then by paper id), and an older one given later
    for pid, verdict, at in (("2406.9", "more", NOW), ("2406.1", "less", NOW),
                             ("2406.5", "more", NOW - timedelta(days=1)),
                             ("2406.3", "more", NOW)):
        ledger.record_feedback("a@x.org", Paper(id=pid, title=f"T {pid}", abstract="It's 'x'."),
                               verdict, now=at)
    # c@: only an uncertain row this edition (counted by the history) and a preference
    ledger.begin("c@x.org", ED, message_id="<c@x>", papers=("p7",), data=b"c", now=NOW)
    ledger.mark_ambiguous("c@x.org", ED, now=NOW, error="no reply")
    ledger.mark_ambiguous("c@x.org", ED, now=NOW, error="no reply")
    ledger.set_preferences("c@x.org", paused_until=None, max_papers=5, now=NOW)
    # d@: only feedback and a suppression
    ledger.record_feedback("d@x.org", Paper(id="2406.2", title="D", abstract=""), "less", now=NOW)
    ledger.suppress("d@x.org", now=NOW)

    a = ledger.selection_state(" A@X.org", ED)
    assert a == _separately(ledger, "a@x.org", ED)
    assert a.suppressed and a.row is not None and a.row.state == "deferred"
    assert a.history == frozenset({"p1", "p2", "p3"})  # not the failed edition's p9
    assert a.feedback is not None and [p.id for p in a.feedback.more] == [
        "2406.5", "2406.3", "2406.9"]
    assert ledger.selection_state("a@x.org", earlier) == _separately(ledger, "a@x.org", earlier)
    for email in ("a@x.org", "b@x.org", "c@x.org", "d@x.org"):
        for edition in (earlier, ED, ED + timedelta(days=1)):
            every = _separately(ledger, email, edition)
            assert ledger.selection_state(email, edition) == every, (email, edition)
            assert ledger.edition_state(email.upper(), edition) == EditionState(
                every.suppressed, every.preferences, every.row), (email, edition)
    assert ledger.selection_state("b@x.org", ED) == SelectionState(
        False, None, None, history=frozenset(), feedback=None)


# --------------------------------------------------------------------------- stored bytes


def _stored_length(ledger: LedgerStore, table: str, email: str) -> int:
    """The length of the blob a row holds (how it is kept, not what it reads back as)."""
    mark = "?" if isinstance(ledger, Ledger) else "%s"
    rows = ledger._read(f"SELECT length(message) FROM {table} WHERE email = {mark}",  # type: ignore[attr-defined]
                        (email,))
    return int(rows[0][0])


def test_bytes_in_flight_are_kept_as_they_are_and_compressed_when_they_stay(
        ledger: LedgerStore) -> None:
    body = b"Subject: the same line again\r\n" * 400  # 12 KB that compresses well
    for who in ("a@x.org", "b@x.org", "c@x.org", "d@x.org"):
        ledger.begin(who, ED, message_id=f"<{who}>", papers=("p1",), data=body, now=NOW)
        # in flight: not compressed (the row is rewritten a moment later): SQLite's row
        # points into the spool beside it (tests/ledger/test_spool.py), PostgreSQL's holds
        # the bytes behind one marker byte
        assert _stored_length(ledger, "deliveries", who) == (
            25 if isinstance(ledger, Ledger) else len(body) + 1)
    ledger.mark_deferred("a@x.org", ED, now=NOW, code=451, error="later")
    assert ledger.mark_ambiguous("b@x.org", ED, now=NOW, error="no reply") == "deferred"
    ledger.mark_sent("c@x.org", ED, now=NOW, archive=timedelta(days=30))
    for who, table in (("a@x.org", "deliveries"), ("b@x.org", "deliveries"),
                       ("c@x.org", "archive")):  # stays for days: compressed
        assert _stored_length(ledger, table, who) < len(body) // 10
    assert ledger.stored_message("a@x.org", ED) == body  # the retry replays the same bytes
    assert ledger.stored_message("b@x.org", ED) == body
    assert ledger.archived_message("c@x.org", ED) == body
    assert ledger.stored_message("d@x.org", ED) == body
    # the retry of a deferred row keeps the compressed bytes (begin with data=None)
    ledger.begin("a@x.org", ED, message_id="<a@x.org>", papers=("p1",), data=None, now=NOW)
    assert ledger.stored_message("a@x.org", ED) == body


def test_bytes_stored_compressed_by_an_earlier_version_still_read(ledger: LedgerStore) -> None:
    import zlib

    ledger.begin("a@x.org", ED, message_id="<a@x.org>", papers=("p1",), data=b"x", now=NOW)
    mark = "?" if isinstance(ledger, Ledger) else "%s"
    ledger._write(f"UPDATE deliveries SET message = {mark} WHERE email = {mark}",  # type: ignore[attr-defined]
                  (zlib.compress(b"old bytes", 1), "a@x.org"))
    assert ledger.stored_message("a@x.org", ED) == b"old bytes"
    ledger.mark_sent("a@x.org", ED, now=NOW, archive=timedelta(days=30))
    assert ledger.archived_message("a@x.org", ED) == b"old bytes"
