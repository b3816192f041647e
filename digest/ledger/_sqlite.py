"""The delivery ledger: what went out, to whom, once per edition.

Owns: the SQLite file in ``settings.database`` (one row per (subscriber, edition) with its state
``sending -> sent | deferred | failed | uncertain``, Message-ID, papers, attempts, timestamps, last SMTP
reply, possible-duplicate flag and, while the message is not yet accepted, its bytes
so a retry or a post-crash re-send replays exactly the same message: kept in
``<database>.spool`` while in flight, ``_spool``), the suppression list,
what subscribers chose on ``digest serve``'s preferences page (``preferences``: laid over the
YAML, never written into it), the archive of sent messages the web view renders (``archive``:
filled by ``mark_sent(archive=True)``) with the matches each edition left out (``left_out``,
its "N more matched" page), and the one-sender-per-database lock (``SendLock``). May import
models and errors only; it is an I/O edge (files), never a pure stage.

Timestamps are the caller's ``now`` (ISO 8601, aware), so runs with ``--now`` stay consistent.
Each state change is its own committed transaction: a ``kill -9`` at any point leaves the file
telling the truth about what may have left.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TypeVar, cast

from digest.errors import LedgerError, LockedError
import digest.ledger._blob as _blob
import digest.ledger._spool as _spool
from digest.ledger._contract import EditionState, EditionStatus, SelectionState
from digest.ledger._frozen import dump_left_out, load_left_out
from digest.ledger._migrate import create_sqlite, migrate
from digest.models import DeliveryState, Feedback, LeftOut, Paper, PostgresDatabase, Preferences

# How many attempts may end not knowing whether the server accepted the message (no reply to
# the final ".", or in flight at a crash) before the row is held ``uncertain``: the first is
# re-sent once, with the same bytes and Message-ID; after the second nothing is sent again
# until the admin says (``resolve``).
AMBIGUOUS_LIMIT = 2

# Editions whose papers a new selection leaves out (see ``Ledger.history``).
HISTORY_STATES = ("sent", "sending", "deferred", "uncertain")


@dataclass(frozen=True)
class LedgerRow:
    """One (subscriber, edition) as recorded."""

    email: str
    edition: date
    state: DeliveryState
    message_id: str | None
    papers: tuple[str, ...]
    attempts: int
    created: datetime
    updated: datetime
    sent_at: datetime | None
    code: int | None
    error: str | None
    possible_duplicate: bool
    has_message: bool  # the bytes are stored, so a retry replays them exactly
    ambiguous: int = 0  # attempts that ended not knowing whether the server accepted


@dataclass(frozen=True)
class ArchivedEdition:
    """One sent edition kept for the browser view (its bytes via ``archived_message``)."""

    email: str
    edition: date
    message_id: str
    sent_at: datetime


@dataclass(frozen=True)
class SkipRow:
    """An edition that sent nothing, and why."""

    email: str
    edition: date
    reason: str
    at: datetime


def _preferences(r: tuple[object, ...]) -> Preferences:
    return Preferences(email=str(r[0]),
                       paused_until=None if r[1] is None else date.fromisoformat(str(r[1])),
                       max_papers=None if r[2] is None else int(cast(int, r[2])),
                       updated=datetime.fromisoformat(str(r[3])))


_ROW_COLUMNS = ("email, edition, state, message_id, papers, attempts, created_at, updated_at, "
                "sent_at, last_code, last_error, possible_duplicate, message IS NOT NULL, ambiguous")


def _row(r: tuple[object, ...]) -> LedgerRow:
    return LedgerRow(
        email=str(r[0]), edition=date.fromisoformat(str(r[1])),
        state=cast(DeliveryState, r[2]),
        message_id=None if r[3] is None else str(r[3]),
        papers=tuple(json.loads(str(r[4]))), attempts=int(cast(int, r[5])),
        created=datetime.fromisoformat(str(r[6])), updated=datetime.fromisoformat(str(r[7])),
        sent_at=None if r[8] is None else datetime.fromisoformat(str(r[8])),
        code=None if r[9] is None else int(cast(int, r[9])),
        error=None if r[10] is None else str(r[10]),
        possible_duplicate=bool(r[11]), has_message=bool(r[12]), ambiguous=int(cast(int, r[13])))


# One subscriber's edition in one statement (``edition_state``, ``selection_state``): each
# table's part is a branch of a UNION ALL, tagged by its first column and padded with NULLs to
# the row's width. Per address these tables hold a row or a few, so a statement per table cost
# more in Python and sqlite3 than in SQLite (docs/delivery.md).
_WIDTH = 14  # the columns of _ROW_COLUMNS


def _part(tag: str, columns: str, count: int, rest: str) -> str:
    return f"SELECT '{tag}', {columns}{', NULL' * (_WIDTH - count)} {rest}"


_EDITION_STATE = " UNION ALL ".join((
    _part("r", _ROW_COLUMNS, _WIDTH,
          "FROM deliveries WHERE email = :email AND edition = :edition"),
    _part("s", "NULL", 1, "FROM suppressions WHERE email = :email"),
    _part("p", "email, paused_until, max_papers, updated_at", 4,
          "FROM preferences WHERE email = :email")))
# ... and the history and feedback: the history as one row, the papers of its editions joined
# (each a JSON array, so with commas and brackets around they read back as one JSON array of
# them), no row when there is none; the feedback's rows unordered (see ``_parts``). A row per
# edition and an ORDER BY made the statement half as costly again on a ledger of 5 editions a
# subscriber.
_SELECTION_STATE = " UNION ALL ".join((
    _EDITION_STATE,
    _part("h", "group_concat(papers)", 1, "FROM deliveries WHERE email = :email AND state IN ("
          + ", ".join(f"'{s}'" for s in HISTORY_STATES) + ") HAVING count(*)"),
    _part("f", "email, paper_id, verdict, title, abstract, created_at", 6,
          "FROM feedback WHERE email = :email")))


def _parts(rows: list[tuple[object, ...]]) -> tuple[
        bool, Preferences | None, LedgerRow | None, set[str], list[tuple[object, ...]]]:
    """The tagged rows of ``_EDITION_STATE`` or ``_SELECTION_STATE``: suppressed, preferences,
    the row, the history's papers and the feedback rows (as ``_feedback`` takes them)."""
    suppressed, chosen, row = False, None, None
    history: set[str] = set()
    feedback: list[tuple[object, ...]] = []
    for r in rows:
        tag = r[0]
        if tag == "r":
            row = _row(r[1:])
        elif tag == "s":
            suppressed = True
        elif tag == "p":
            chosen = _preferences(r[1:5])
        elif tag == "h":
            history.update(*json.loads(f"[{r[1]}]"))
        else:
            feedback.append(r)
    if feedback:
        # oldest first, as ``feedback_for``'s ORDER BY created_at, paper_id: both TEXT, and
        # SQLite compares text as UTF-8 bytes, which order as Python orders str
        feedback.sort(key=lambda f: (str(f[6]), str(f[2])))
    return suppressed, chosen, row, history, [f[1:6] for f in feedback]


_BEGIN = ("INSERT INTO deliveries (email, edition, state, message_id, papers, attempts, "
          "created_at, updated_at, possible_duplicate, message) "
          "VALUES (?, ?, 'sending', ?, ?, 1, ?, ?, ?, ?) "
          "ON CONFLICT (email, edition) DO UPDATE SET state = 'sending', "
          "message_id = excluded.message_id, papers = excluded.papers, "
          "attempts = attempts + 1, updated_at = excluded.updated_at, "
          "possible_duplicate = MAX(possible_duplicate, excluded.possible_duplicate), "
          "message = COALESCE(excluded.message, message)")


_FINISH = ("UPDATE deliveries SET state = ?, updated_at = ?, last_code = ?, last_error = ?, "
           "sent_at = CASE WHEN ? THEN ? ELSE sent_at END, "
           "message = CASE WHEN ? THEN message ELSE NULL END "
           "WHERE email = ? AND edition = ?")


def _key(email: str, edition: date) -> tuple[str, str]:
    """A delivery row's key as stored: the folded address, the edition's ISO date."""
    return email.strip().lower(), edition.isoformat()


def _finish_params(email: str, edition: date, state: DeliveryState, *, now: datetime,
                   code: int | None, error: str | None, keep_message: bool,
                   sent: bool) -> tuple[object, ...]:
    """``_FINISH``'s parameters; the row's key (email, edition) last."""
    return (state, _ts(now), code, error, int(sent), _ts(now), int(keep_message),
            *_key(email, edition))


_last_ts: tuple[datetime | None, str] = (None, "")
_T = TypeVar("_T")


def _ts(now: datetime) -> str:
    # A run writes its one ``now`` two or three times a delivery: the same object is worked
    # out once (by identity: equal instants in other zones print differently). One tuple,
    # read and replaced whole, so threads never see half of another's.
    global _last_ts
    last = _last_ts
    if last[0] is now:
        return last[1]
    if now.tzinfo is None:
        raise ValueError("ledger timestamps must be timezone-aware")
    text = now.isoformat()
    _last_ts = (now, text)
    return text


class Ledger:
    """The SQLite ledger at ``path``. Reading a missing file gives empty answers and creates
    nothing; the first write creates the file and its schema (WAL mode).

    One connection shared by the sending threads, guarded by a lock: every write is a tiny
    transaction, so serializing them costs little and keeps SQLite's threading rules simple.

    ``mark_sent(hold=True)`` keeps the row's ``sent`` in memory until this ledger's next
    write, which commits it in its own transaction (a run's next ``begin``: one commit a
    message instead of two), or ``flush()``. Every read flushes first, but the two a run
    makes per subscriber, which flush only for a held row of their own.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._mutex = threading.RLock()
        self._turns = _WriterTurns(self.path)
        # (email, edition) -> _FINISH's parameters of a held ``sent``
        self._held: dict[tuple[str, str], tuple[object, ...]] = {}
        # (email, edition) -> _BEGIN's parameters but the message, and the message's bytes,
        # of a held ``begin`` (written before the sents: a held sent may be of its row)
        self._begun: dict[tuple[str, str], tuple[tuple[object, ...], bytes | None]] = {}
        self._spool = _spool.Spool(_beside(self.path, ".spool"))

    # ------------------------------------------------------------------ connection

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        try:
            if self.path.exists() and self.path.is_file() and self.path.stat().st_size == 0:
                # SQLite would take it as a new, empty ledger and every edition would go out
                # again: an emptied file is a lost ledger, not a fresh start.
                raise LedgerError(self.path, "is empty (0 bytes), so it is not a ledger: "
                                  "restore it from a backup; to start over on purpose, delete "
                                  "it and run with --new-ledger (every edition is sent again)")
            if create and not self.path.exists():
                self._create_file()
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against process crashes (kill -9) in WAL mode; only a power
            # cut can lose the last commits, and FULL would fsync twice per message.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Python's SQLite is often built with SECURE_DELETE on: every message's bytes,
            # dropped by mark_sent, would be overwritten with zeros first (11 more pages a
            # message). FAST zeroes only where it costs no extra writes; the pages freed are
            # reused by the next message's bytes (docs/delivery.md).
            conn.execute("PRAGMA secure_delete=FAST")
            conn.execute("PRAGMA busy_timeout=10000")
            migrate(self.path, conn)  # Alembic, only when not at the head revision
        except sqlite3.DatabaseError as exc:
            raise LedgerError(self.path, f"not a usable SQLite database ({exc})") from exc
        except OSError as exc:
            raise LedgerError(self.path, f"cannot create the ledger: {exc.strerror or exc} "
                              f"(the folder {self.path.parent} must be writable)") from None
        self._conn = conn
        return conn

    def _create_file(self) -> None:
        """A new ledger appears whole: built under a temporary name, then linked into place
        (never over an existing file), so a ledger file of 0 bytes is always a lost one and
        a concurrent reader never sees a half-made file. Mode 0600: it holds addresses and
        pending message bodies (SQLite gives its -wal and -shm files the same mode)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{threading.get_ident()}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                create_sqlite(tmp, conn)  # the schema the migrations build, at their head
            finally:
                conn.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError:  # a file system without hard links: rename, unless one appeared
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)

    def _read(self, sql: str, params: tuple[object, ...] | dict[str, object] = (), *,
              row: tuple[str, str] | None = None) -> list[tuple[object, ...]]:
        """Rows of ``sql``, after the held writes are committed: all of them, or with ``row``
        (a query that reads no other delivery row) only when that row is held."""
        with self._mutex:
            if self._holding(row):
                self.flush()  # (inside a write transaction they are in it already)
            conn = self._connect(create=False)
            if conn is None:
                return []
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise LedgerError(self.path, str(exc)) from exc

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        return self._written(sql, params, lambda cur: cur.rowcount)

    def _write_returning(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        return self._written(sql, params, sqlite3.Cursor.fetchall)

    def _written(self, sql: str, params: tuple[object, ...],
                 result: Callable[[sqlite3.Cursor], _T]) -> _T:
        """One statement, in its own transaction (with the held writes, if any), and
        ``result`` of its cursor."""
        with self._mutex:
            conn = self._connect(create=True)
            assert conn is not None
            if self._holding() and not conn.in_transaction:  # committed with this write
                with self._transaction():
                    return result(conn.execute(sql, params))
            try:
                with self._turns:
                    return result(conn.execute(sql, params))
            except sqlite3.DatabaseError as exc:
                raise LedgerError(self.path, str(exc)) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its start (``BEGIN
        IMMEDIATE``), in the writers' turn: committed at the end of the block, rolled back on
        any failure (a database error raised as ``LedgerError``). The held writes go first and
        stay held if it rolls back."""
        with self._mutex:
            conn = self._connect(create=True)
            assert conn is not None
            with self._turns:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    begun, held = self._apply_held(conn)
                    yield conn
                    conn.execute("COMMIT")
                    for key in begun:
                        del self._begun[key]
                    for key in held:
                        del self._held[key]
                except BaseException as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.DatabaseError):
                        raise LedgerError(self.path, str(exc)) from exc
                    raise

    def _apply_held(self, conn: sqlite3.Connection
                    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The held writes, run in ``conn``'s open transaction: the keys of the ``begin``s
        (their bytes spooled now, under the write lock), then of the ``sent``s. A sent whose
        row is gone is dropped and raised (``_finish``'s error), the others stay held."""
        begun = list(self._begun)
        for key in begun:
            params, data = self._begun[key]
            conn.execute(_BEGIN, (*params, None if data is None else self._spooled(conn, data)))
        held = list(self._held)
        for key in held:
            if conn.execute(_FINISH, self._held[key]).rowcount != 1:
                del self._held[key]
                raise LedgerError(self.path, f"no delivery row for {key[0]} edition {key[1]}")
        return begun, held

    def _holding(self, row: tuple[str, str] | None = None) -> bool:
        """Whether writes are held (with ``row``: writes of that row)."""
        if row is None:
            return bool(self._held or self._begun)
        return row in self._held or row in self._begun

    def flush(self) -> None:
        """Commit the held ``begin`` and ``mark_sent`` writes now (a run calls it before a
        held begin's message body is written, and before it waits)."""
        with self._mutex:
            if not self._holding():
                return
            if self._conn is None or not self._conn.in_transaction:
                with self._transaction():
                    pass

    def holds(self, email: str, edition: date) -> bool:
        """Whether the ``begin`` of this row is held (not yet committed)."""
        return _key(email, edition) in self._begun

    def create(self) -> None:
        """Make the file and its schema now if missing (``digest run`` at start, so its job
        store never exists without a ledger beside it)."""
        with self._mutex:
            self._connect(create=True)

    def close(self) -> None:
        """Commit what is held, then close (closed even when that commit fails)."""
        with self._mutex:
            try:
                self.flush()
            finally:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                self._turns.close()
                self._spool.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def history(self) -> dict[str, frozenset[str]]:
        """Lower-cased email -> ids of the papers a new selection must leave out: those in
        editions that went out (``sent``), may have (``sending``: in flight during a crash) or
        will (``deferred``: still being retried, with their papers fixed). The one rule of what
        counts as already sent: send, plan, preview and the daemon all read it here."""
        states = HISTORY_STATES
        marks = ", ".join("?" for _ in states)
        acc: dict[str, set[str]] = {}
        for email, papers in self._read(
                f"SELECT email, papers FROM deliveries WHERE state IN ({marks})", states):
            acc.setdefault(str(email), set()).update(json.loads(str(papers)))
        return {k: frozenset(v) for k, v in acc.items()}

    def history_for(self, email: str) -> frozenset[str]:
        """``history()`` for one address, without reading everyone's (one indexed query)."""
        states = HISTORY_STATES
        marks = ", ".join("?" for _ in states)
        found: set[str] = set()
        for (papers,) in self._read(f"SELECT papers FROM deliveries WHERE email = ? AND state "
                                    f"IN ({marks})", (email.strip().lower(), *states)):
            found.update(json.loads(str(papers)))
        return frozenset(found)

    def suppressed(self) -> frozenset[str]:
        """Lower-cased addresses that asked to get nothing."""
        return frozenset(str(r[0]) for r in self._read("SELECT email FROM suppressions"))

    def is_suppressed(self, email: str) -> bool:
        return bool(self._read("SELECT 1 FROM suppressions WHERE email = ?",
                               (email.strip().lower(),)))

    def get(self, email: str, edition: date) -> LedgerRow | None:
        rows = self._read(f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE email = ? AND edition = ?",
                          _key(email, edition))
        return _row(rows[0]) if rows else None

    def edition_state(self, email: str, edition: date) -> EditionState:
        """``is_suppressed``, ``preferences`` and ``get`` in one statement."""
        key = _key(email, edition)
        suppressed, chosen, row, _, _ = _parts(self._read(
            _EDITION_STATE, {"email": key[0], "edition": key[1]}, row=key))
        return EditionState(suppressed=suppressed, preferences=chosen, row=row)

    def selection_state(self, email: str, edition: date) -> SelectionState:
        """``edition_state``, ``history_for`` and ``feedback_for`` in one statement."""
        key = _key(email, edition)
        suppressed, chosen, row, history, feedback = _parts(self._read(
            _SELECTION_STATE, {"email": key[0], "edition": key[1]}, row=key))
        return SelectionState(suppressed=suppressed, preferences=chosen, row=row,
                              history=frozenset(history),
                              feedback=_feedback(feedback).get(key[0]) if feedback else None)

    def rows(self, email: str | None = None, *, limit: int | None = None
             ) -> tuple[LedgerRow, ...]:
        """Recorded editions, newest first (one address, or all; at most ``limit``)."""
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        if email is None:
            found = self._read(f"SELECT {_ROW_COLUMNS} FROM deliveries "
                               f"ORDER BY edition DESC, email{tail}")
        else:
            found = self._read(f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE email = ? "
                               f"ORDER BY edition DESC{tail}", (email.strip().lower(),))
        return tuple(_row(r) for r in found)

    def note_skip(self, email: str, edition: date, reason: str, *, now: datetime) -> None:
        """Record that ``edition`` sent ``email`` nothing, and why (the latest reason wins)."""
        self._write("INSERT INTO skips (email, edition, reason, at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (email, edition) DO UPDATE SET reason = excluded.reason, "
                    "at = excluded.at",
                    (*_key(email, edition), reason, _ts(now)))

    def skips(self, email: str | None = None, *, limit: int | None = None
              ) -> tuple[SkipRow, ...]:
        """Editions that sent nothing and have no delivery row, newest first."""
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        where = "WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.email = s.email AND " \
                "d.edition = s.edition)"
        params: tuple[object, ...] = ()
        if email is not None:
            where += " AND s.email = ?"
            params = (email.strip().lower(),)
        found = self._read(f"SELECT s.email, s.edition, s.reason, s.at FROM skips s {where} "
                           f"ORDER BY s.edition DESC, s.email{tail}", params)
        return tuple(SkipRow(str(r[0]), date.fromisoformat(str(r[1])), str(r[2]),
                             datetime.fromisoformat(str(r[3]))) for r in found)

    def pending(self) -> tuple[LedgerRow, ...]:
        """Rows a run must finish: ``sending`` (in flight at a crash) and ``deferred``."""
        return tuple(_row(r) for r in self._read(
            f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE state IN ('sending', 'deferred') "
            "ORDER BY edition, email"))

    def recorded_since(self, first: date) -> frozenset[tuple[str, date]]:
        """Every (email, edition) with a row, in any state, for editions from ``first`` on:
        what a restarted daemon must not send again (one indexed range query)."""
        return frozenset((str(e), date.fromisoformat(str(d))) for e, d in self._read(
            "SELECT email, edition FROM deliveries WHERE edition >= ?", (first.isoformat(),)))

    def status(self) -> tuple[EditionStatus, ...]:
        """Per edition: how many rows in each state (no leases on SQLite: one sender)."""
        return tuple(EditionStatus(
            edition=date.fromisoformat(str(r[0])), queued=0, sending=int(cast(int, r[1])),
            sent=int(cast(int, r[2])), deferred=int(cast(int, r[3])),
            failed=int(cast(int, r[4])), uncertain=int(cast(int, r[5])),
            possible_duplicates=int(cast(int, r[6])), oldest_lease=None) for r in self._read(
            "SELECT edition, sum(state = 'sending'), sum(state = 'sent'), "
            "sum(state = 'deferred'), sum(state = 'failed'), sum(state = 'uncertain'), "
            "sum(possible_duplicate) FROM deliveries GROUP BY edition ORDER BY edition DESC"))

    def stored_message(self, email: str, edition: date) -> bytes | None:
        """The exact bytes recorded by ``begin``, while the row is not yet accepted."""
        key = _key(email, edition)
        seen: object = None
        with self._mutex:  # the spool's file is this connection's too
            for _ in range(2):  # a rewind between the two reads moved them into the row
                rows = self._read("SELECT message FROM deliveries WHERE email = ? AND "
                                  "edition = ?", key)
                if not rows or rows[0][0] is None or rows[0][0] == seen:
                    return None
                seen = rows[0][0]
                data = self._unpack(cast(bytes, seen))
                if data is not None:
                    return data
        return None

    def _unpack(self, blob: bytes) -> bytes | None:
        """A stored ``message`` value's bytes: in the row, or in the spool while in flight
        (None if they are lost there: the caller renders the edition again)."""
        return self._spool.get(blob) if _spool.is_ref(blob) else _blob.unpack(blob)

    def _kept(self, blob: bytes) -> bytes | None:
        """A stored ``message`` value in its kept form (compressed, in the row)."""
        if _spool.is_ref(blob):
            data = self._spool.get(blob)
            return None if data is None else _blob.kept(data)
        return _blob.compact(blob)

    # ------------------------------------------------------------------ state changes

    def begin(self, email: str, edition: date, *, message_id: str, papers: tuple[str, ...],
              data: bytes | None, now: datetime, possible_duplicate: bool = False,
              hold: bool = False) -> None:
        """Record ``sending`` BEFORE the message leaves (one more attempt). ``data`` is kept
        until the server accepts, so a retry replays the same message: in the spool while in
        flight (``_spool``; in the row, uncompressed, where the spool cannot take it),
        compressed in the row if it stays deferred (``_blob``). ``hold``: committed with this
        ledger's next write or ``flush()``, which the caller makes before a byte of the
        message's body leaves (``holds`` says whether it still has to); a crash before it
        leaves no row, and nothing was delivered."""
        params = (*_key(email, edition), message_id, json.dumps(list(papers)), _ts(now),
                  _ts(now), int(possible_duplicate))
        if hold:
            key = params[:2]
            with self._mutex:
                if key in self._held:  # its earlier attempt's sent goes first
                    self.flush()
                self._begun[key] = (params, data)
            return
        if data is None:
            self._write(_BEGIN, (*params, None))
            return
        with self._transaction() as conn:  # the write lock makes it the spool's one writer
            conn.execute(_BEGIN, (*params, self._spooled(conn, data)))

    def _spooled(self, conn: sqlite3.Connection, data: bytes) -> bytes:
        """``data`` written to the spool, and what the row stores: the reference, or the
        bytes themselves where the spool cannot take them. Called inside a write transaction
        (``BEGIN IMMEDIATE``: no other writer meanwhile)."""
        ref = self._spool.put(data, make_room=lambda: self._unspool(conn))
        return _blob.pending(data) if ref is None else ref

    def _unspool(self, conn: sqlite3.Connection) -> None:
        """Before the spool starts over: no row may point into it any more. The rows being
        sent get their bytes back (compressed, in the row) and that is committed first, so a
        rollback of the caller's transaction cannot leave a reference to a record the ring
        then writes over. Deferred and uncertain rows never point into it (``_compact`` runs
        before their state changes)."""
        while True:
            found = [(address, edition, cast(bytes, blob)) for address, edition, blob in
                     conn.execute("SELECT email, edition, message FROM deliveries WHERE "
                                  "state = 'sending' AND message IS NOT NULL").fetchall()
                     if _spool.is_ref(cast(bytes, blob))]
            if not found:
                return
            for address, edition, blob in found:
                conn.execute("UPDATE deliveries SET message = ? WHERE email = ? AND "
                             "edition = ?", (self._kept(blob), address, edition))
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")  # a writer in between may have spooled more

    def mark_sent(self, email: str, edition: date, *, now: datetime, code: int | None = 250,
                  reply: str | None = None, archive: timedelta | None = None,
                  hold: bool = False) -> None:
        """The server accepted the message: the stored bytes are no longer needed for a retry.
        With ``archive`` (how long to keep them) they move to the archive table in the same
        transaction, for the browser view and the feed of ``digest serve``, and this
        subscriber's archived editions sent longer ago than that are dropped. ``hold``
        (without ``archive``): committed with this ledger's next write or ``flush()``."""
        if archive is None:  # one statement, its own transaction
            params = _finish_params(email, edition, "sent", now=now, code=code, error=reply,
                                    keep_message=False, sent=True)
            if hold:
                with self._mutex:
                    self._held[cast("tuple[str, str]", params[-2:])] = params
                return
            self._finished(params)
            return
        with self._transaction() as conn:
            conn.execute("DELETE FROM archive WHERE email = ? AND sent_at < ?",
                         (email.strip().lower(), _ts(now - archive)))
            found = conn.execute(
                "SELECT message_id, message FROM deliveries WHERE email = ? AND "
                "edition = ? AND message IS NOT NULL AND message_id IS NOT NULL",
                _key(email, edition)).fetchall()
            for message_id, blob in found:  # compressed for the archive's days
                kept = self._kept(cast(bytes, blob))
                if kept is None:  # lost from the spool (a power cut): nothing to show
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO archive (email, edition, message_id, "
                    "sent_at, message) VALUES (?, ?, ?, ?, ?)",
                    (*_key(email, edition), message_id, _ts(now), kept))
            # the left-out matches live as long as their edition's archive row
            conn.execute("DELETE FROM left_out WHERE email = ? AND edition <> ? AND "
                         "edition NOT IN (SELECT edition FROM archive WHERE email = ?)",
                         (*_key(email, edition), email.strip().lower()))
            self._finish(email, edition, "sent", now=now, code=code, error=reply,
                         keep_message=False, sent=True)

    def mark_deferred(self, email: str, edition: date, *, now: datetime, code: int | None,
                      error: str) -> None:
        """A temporary failure: a later run retries the stored message."""
        with self._mutex:
            self._compact(email, edition)
            self._finish(email, edition, "deferred", now=now, code=code, error=error,
                         keep_message=True)

    def _compact(self, email: str, edition: date) -> None:
        """The stored bytes of a row about to stay (deferred, uncertain) in their kept,
        compressed form, in the row: done before its state changes, since only rows being
        sent are looked for when the spool is rewound. Under SQLite's write lock, so no
        rewind can come between reading the reference and reading the spool."""
        key = _key(email, edition)
        with self._transaction() as conn:
            rows = conn.execute("SELECT message FROM deliveries WHERE email = ? AND "
                                "edition = ?", key).fetchall()
            blob = cast("bytes | None", rows[0][0]) if rows else None
            if blob is not None and (_spool.is_ref(blob) or _blob.is_raw(blob)):
                conn.execute("UPDATE deliveries SET message = ? WHERE email = ? AND "
                             "edition = ?", (self._kept(blob), *key))

    def mark_ambiguous(self, email: str, edition: date, *, now: datetime,
                       error: str) -> DeliveryState:
        """An attempt ended without knowing whether the server accepted the message (no reply
        to the final ".", or found ``sending`` after a crash). The first time the row is left
        ``deferred`` (re-sent once, same bytes); at ``AMBIGUOUS_LIMIT`` it is held
        ``uncertain``, which nothing re-sends. Returns the new state."""
        self._compact(email, edition)
        rows = self._write_returning(
            "UPDATE deliveries SET ambiguous = ambiguous + 1, updated_at = ?, last_code = NULL, "
            "last_error = ?, possible_duplicate = 1, "
            "state = CASE WHEN ambiguous + 1 >= ? THEN 'uncertain' ELSE 'deferred' END "
            "WHERE email = ? AND edition = ? RETURNING state",
            (_ts(now), error, AMBIGUOUS_LIMIT, *_key(email, edition)))
        if len(rows) != 1:
            raise LedgerError(self.path, f"no delivery row for {email} edition {edition}")
        return cast(DeliveryState, rows[0][0])

    def resolve(self, email: str, edition: date, *, sent: bool, now: datetime) -> LedgerRow:
        """The admin's word on an ``uncertain`` row: ``sent`` (it arrived: done) or not (send
        it again: ``deferred``, one more unknown outcome holds it again, and ``retry_for``
        counts from now). Raises ``LedgerError`` if the row is not uncertain."""
        row = self.get(email, edition)
        if row is None or row.state != "uncertain":
            state = "no such row" if row is None else f"it is {row.state}"
            raise LedgerError(self.path, f"{email} edition {edition} is not uncertain "
                              f"({state}); only uncertain rows are resolved")
        if sent:
            self._finish(email, edition, "sent", now=now, code=None,
                         error="resolved by the admin: it arrived", keep_message=False, sent=True)
        else:
            self._write("UPDATE deliveries SET state = 'deferred', ambiguous = ?, "
                        "created_at = ?, updated_at = ?, last_error = ? "
                        "WHERE email = ? AND edition = ?",
                        (AMBIGUOUS_LIMIT - 1, _ts(now), _ts(now),
                         "resolved by the admin: send it again", email.strip().lower(),
                         edition.isoformat()))
        resolved = self.get(email, edition)
        assert resolved is not None
        return resolved

    def mark_failed(self, email: str, edition: date, *, now: datetime, code: int | None,
                    error: str) -> None:
        """A permanent failure (5xx, or deferred past ``retry_for``): never retried."""
        self._finish(email, edition, "failed", now=now, code=code, error=error,
                     keep_message=False)

    def _finish(self, email: str, edition: date, state: DeliveryState, *, now: datetime,
                code: int | None, error: str | None, keep_message: bool,
                sent: bool = False) -> None:
        self._finished(_finish_params(email, edition, state, now=now, code=code, error=error,
                                      keep_message=keep_message, sent=sent))

    def _finished(self, params: tuple[object, ...]) -> None:
        if self._write(_FINISH, params) != 1:
            raise LedgerError(self.path, f"no delivery row for {params[-2]} edition "
                              f"{params[-1]}")

    def suppress(self, email: str, *, now: datetime, source: str = "cli") -> bool:
        """Record that ``email`` wants nothing more; True if it was not suppressed before."""
        return self._write("INSERT OR IGNORE INTO suppressions (email, created_at, source) "
                           "VALUES (?, ?, ?)", (email.strip().lower(), _ts(now), source)) == 1

    def record_feedback(self, email: str, paper: Paper, verdict: str, *, now: datetime) -> None:
        """``verdict`` "more" (a like) or "less" (a dislike) of ``paper`` by ``email``, with the
        paper's text; the latest verdict on a paper replaces the earlier one."""
        if verdict not in ("more", "less"):
            raise ValueError(verdict)
        self._write("INSERT OR REPLACE INTO feedback (email, paper_id, verdict, title, abstract, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (email.strip().lower(), paper.id, verdict, paper.title, paper.abstract,
                     _ts(now)))

    def feedback(self) -> dict[str, Feedback]:
        """Lower-cased email -> the papers they liked and disliked, oldest first."""
        return _feedback(self._read("SELECT email, paper_id, verdict, title, abstract FROM "
                                    "feedback ORDER BY created_at, paper_id"))

    def feedback_for(self, email: str) -> Feedback | None:
        """``feedback()`` for one address, without reading everyone's (one indexed query)."""
        key = email.strip().lower()
        return _feedback(self._read("SELECT email, paper_id, verdict, title, abstract FROM "
                                    "feedback WHERE email = ? ORDER BY created_at, paper_id",
                                    (key,))).get(key)

    def unsuppress(self, email: str) -> bool:
        """Lift a suppression; True if there was one."""
        if not self.path.exists():
            return False
        return self._write("DELETE FROM suppressions WHERE email = ?",
                           (email.strip().lower(),)) == 1

    def suppression_source(self, email: str) -> str | None:
        """Who recorded the suppression of ``email`` ('cli', 'token', 'web', ...), if any."""
        rows = self._read("SELECT source FROM suppressions WHERE email = ?",
                          (email.strip().lower(),))
        return str(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ digest serve

    def known_addresses(self) -> frozenset[str]:
        """Every address the ledger has a row for: the web server resolves tokens of people
        who got mail even after the YAML dropped them."""
        return frozenset(str(r[0]) for r in self._read(
            "SELECT email FROM deliveries UNION SELECT email FROM suppressions "
            "UNION SELECT email FROM preferences"))

    def preferences(self, email: str) -> Preferences | None:
        rows = self._read("SELECT email, paused_until, max_papers, updated_at FROM preferences "
                          "WHERE email = ?", (email.strip().lower(),))
        return _preferences(rows[0]) if rows else None

    def all_preferences(self) -> tuple[Preferences, ...]:
        """Every subscriber's choices, by address."""
        return tuple(_preferences(r) for r in self._read(
            "SELECT email, paused_until, max_papers, updated_at FROM preferences ORDER BY email"))

    def set_preferences(self, email: str, *, paused_until: date | None,
                        max_papers: int | None, now: datetime) -> None:
        """Replace ``email``'s choices (``None`` = as the YAML says); a row of nothing but
        ``None`` is removed, so the export lists only real changes."""
        address = email.strip().lower()
        if paused_until is None and max_papers is None:
            self._write("DELETE FROM preferences WHERE email = ?", (address,))
            return
        self._write(
            "INSERT INTO preferences (email, paused_until, max_papers, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET "
            "paused_until = excluded.paused_until, max_papers = excluded.max_papers, "
            "updated_at = excluded.updated_at",
            (address, None if paused_until is None else paused_until.isoformat(), max_papers,
             _ts(now)))

    def archived(self, email: str) -> tuple[ArchivedEdition, ...]:
        """``email``'s archived editions, newest first (without their bytes)."""
        return tuple(
            ArchivedEdition(email=str(r[0]), edition=date.fromisoformat(str(r[1])),
                            message_id=str(r[2]), sent_at=datetime.fromisoformat(str(r[3])))
            for r in self._read("SELECT email, edition, message_id, sent_at FROM archive "
                                "WHERE email = ? ORDER BY edition DESC",
                                (email.strip().lower(),)))

    def keep_left_out(self, email: str, edition: date, matches: Sequence[LeftOut]) -> None:
        """Freeze the matches ``edition`` leaves out (for its "N more matched" page) before its
        message leaves; ``mark_sent(archive=...)`` keeps them beside the archived message."""
        self._write("INSERT OR REPLACE INTO left_out (email, edition, matches) VALUES (?, ?, ?)",
                    (*_key(email, edition), dump_left_out(matches)))

    def archived_left_out(self, email: str, edition: date) -> tuple[LeftOut, ...] | None:
        """The matches an archived edition left out, as frozen at send time; None when the
        edition is not archived or kept none."""
        rows = self._read("SELECT l.matches FROM left_out l JOIN archive a "
                          "ON a.email = l.email AND a.edition = l.edition "
                          "WHERE l.email = ? AND l.edition = ?",
                          _key(email, edition))
        return load_left_out(cast(bytes, rows[0][0])) if rows else None

    def archived_message(self, email: str, edition: date) -> bytes | None:
        """The exact bytes sent for that edition, if archived."""
        rows = self._read("SELECT message FROM archive WHERE email = ? AND edition = ?",
                          _key(email, edition))
        return _blob.unpack(cast(bytes, rows[0][0])) if rows else None


# ---------------------------------------------------------------------- the send lock


def _beside(database: Path, suffix: str) -> Path:
    """A lock file of the ledger ``database``: keyed on the file itself, since a symlink to
    the database (or to its folder) is the same ledger and must meet the same lock."""
    resolved = Path(os.path.realpath(database))
    return resolved.with_name(resolved.name + suffix)


class _WriterTurns:
    """Writers of one ledger on this machine take turns on ``<database>.writers`` (an exclusive
    ``flock`` around each write transaction), ahead of SQLite's own lock.

    SQLite does not queue writers: one that finds the write lock taken sleeps and polls (1, 2,
    5, 10... ms), although a delivery's write holds it for ~0.1 ms. Two shards sending into one
    ledger met that way about once a message and slept ~1 ms each time (docs/delivery.md). A
    waiter on the ``flock`` is woken by the kernel the moment it is free. Only a speed-up:
    SQLite's locking still decides, so a writer that does not take turns (another tool, or a
    file system where ``flock`` fails) is as safe as before, and so is a failure to open the
    file. Re-entrant in the owning thread, which the ``Ledger``'s mutex already serializes."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> None:
        self._depth += 1
        if self._depth > 1:
            return
        if self._fd is None:
            try:
                self._fd = os.open(_beside(self.database, ".writers"),
                                   os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return  # no folder yet, or not writable: SQLite's lock alone decides
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            pass

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:
                pass

    def close(self) -> None:
        if self._fd is not None and self._depth == 0:
            os.close(self._fd)  # drops the lock with it
            self._fd = None


class SendLock:
    """One sending process per database: an exclusive ``flock`` on ``<database>.lock`` holding
    the owner's pid. The kernel drops the lock when the process dies (even by ``kill -9``), so
    a crash never leaves a stale lock behind. Use as a context manager."""

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.path = _beside(self.database, ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LedgerError(self.database, f"cannot create the send lock {self.path}: "
                              f"{exc.strerror or exc} (the database's folder must be "
                              "writable)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(f"another digest process (pid {owner}) is sending with "
                              f"{self.database.name} ({self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Unlink is unsafe (a waiter may already hold the old inode); leave the file.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SendLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def check_new_ledger(database: Path | PostgresDatabase, *, outbox: Path | None = None,
                     allow_new: bool = False) -> None:
    """Before a run that sends: a ledger that does not exist yet, where earlier runs left their
    mark (``<database>.jobs``, or messages in the Maildir ``outbox``), is a LOST ledger, and a
    new one would send every edition again. Refuse unless ``allow_new`` (``--new-ledger``).
    (A 0-byte ledger is refused by ``Ledger`` itself; a PostgreSQL ledger is not a file that
    can be lost this way.)"""
    if allow_new or not isinstance(database, Path) or database.exists():
        return
    signs: list[str] = []
    jobs = Path(database).with_name(Path(database).name + ".jobs")
    if jobs.exists():
        signs.append(str(jobs))
    if outbox is not None:
        count = 0
        for sub in ("new", "cur"):
            try:
                count += sum(1 for entry in os.scandir(Path(outbox) / sub) if entry.is_file())
            except OSError:
                continue
        if count:
            signs.append(f"the outbox {outbox} ({count} message{'s' if count != 1 else ''})")
    if signs:
        raise LedgerError(Path(database), "does not exist, but " + " and ".join(signs)
                          + " show that digest sent from here before: a new ledger would send "
                          "every edition again. Restore the ledger from a backup, or run again "
                          "with --new-ledger to start a new one on purpose")


@contextmanager
def send_lock(database: Path) -> Iterator[SendLock]:
    """``with send_lock(settings.database):`` — raise ``LockedError`` if another process sends."""
    lock = SendLock(database)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def _feedback(rows: list[tuple[object, ...]]) -> dict[str, Feedback]:
    """``Ledger.feedback`` from (email, paper_id, verdict, title, abstract) rows, oldest first
    (both backends)."""
    acc: dict[str, tuple[list[Paper], list[Paper]]] = {}
    for email, paper_id, verdict, title, abstract in rows:
        more, less = acc.setdefault(str(email), ([], []))
        paper = Paper(id=str(paper_id), title=str(title), abstract=str(abstract))
        (more if verdict == "more" else less).append(paper)
    return {k: Feedback(tuple(m), tuple(n)) for k, (m, n) in acc.items()}
