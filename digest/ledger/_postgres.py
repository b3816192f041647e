"""The PostgreSQL ledger: the same contract as the SQLite one, for many senders on many machines.

Owns: ``PostgresLedger`` (deliveries, suppressions, frozen editions and the global send-rate
bucket in one database, schema by Alembic), the atomic claim with a lease that lets queue
workers share the deliveries table, and ``AdvisoryLock`` (one sender or scheduler per database,
a session-level ``pg_try_advisory_lock`` the server drops when the holder's connection dies).

One connection per ledger object in autocommit mode, guarded by a lock (like the SQLite one):
every statement is its own transaction, so a dropped connection (a restart, a
``pg_terminate_backend``) is mended by reconnecting and running the statement once more. Every
statement is written so that running it twice is harmless (upserts, guarded updates, a claim
that its own token may repeat).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from digest.errors import LockedError
import digest.ledger._blob as _blob
from digest.ledger._contract import (
    Claim,
    EditionState,
    EditionStatus,
    FrozenEdition,
    SelectionState,
    StaleRow,
)
from digest.ledger._frozen import dump_edition, dump_left_out, load_edition, load_left_out
from digest.ledger._migrate import migrate
from digest.errors import LedgerError
from digest.ledger._sqlite import (
    AMBIGUOUS_LIMIT,
    HISTORY_STATES,
    ArchivedEdition,
    LedgerRow,
    SkipRow,
    _feedback,
)
from digest.models import (
    DeliveryState,
    Feedback,
    LeftOut,
    Paper,
    PostgresDatabase,
    Preferences,
    Summary,
)

if TYPE_CHECKING:
    import psycopg

_T = TypeVar("_T")

_ROW_COLUMNS = ("email, edition, state, message_id, papers, attempts, created_at, updated_at, "
                "sent_at, last_code, last_error, possible_duplicate, message IS NOT NULL, "
                "ambiguous")
_VISIBLE = "state <> 'queued'"  # a queued row is a promise, not yet a delivery
# An attempt's outcome; the lease ends with it: a finished row is nobody's any more.
_FINISH = ("UPDATE deliveries SET state = %s, updated_at = %s, last_code = %s, "
           "last_error = %s, sent_at = CASE WHEN %s THEN %s ELSE sent_at END, "
           "message = CASE WHEN %s THEN message ELSE NULL END, "
           "claimed_by = NULL, lease_until = NULL WHERE email = %s AND edition = %s")


# The held ``sent``s (``mark_sent(hold=True)``), as arrays: what ``_FINISH`` writes of a
# ``sent`` (kept in step with it), for many rows at once; the rows it changed.
_HELD = ("UPDATE deliveries AS h SET state = 'sent', updated_at = v.at, last_code = v.code, "
         "last_error = v.reply, sent_at = v.at, message = NULL, claimed_by = NULL, "
         "lease_until = NULL FROM unnest(%s::text[], %s::date[], %s::timestamptz[], "
         "%s::int[], %s::text[]) AS v (email, edition, at, code, reply) "
         "WHERE h.email = v.email AND h.edition = v.edition RETURNING h.email, h.edition")
_BEGIN = ("INSERT INTO deliveries AS d (email, edition, state, message_id, papers, attempts, "
          "created_at, updated_at, possible_duplicate, message) "
          "VALUES (%s, %s, 'sending', %s, %s, 1, %s, %s, %s, %s) "
          "ON CONFLICT (email, edition) DO UPDATE SET state = 'sending', "
          "message_id = excluded.message_id, papers = excluded.papers, "
          "attempts = d.attempts + 1, updated_at = excluded.updated_at, "
          "possible_duplicate = d.possible_duplicate OR excluded.possible_duplicate, "
          "message = COALESCE(excluded.message, d.message)")
# ``begin`` with the held ``sent``s in the same statement (one round trip, one commit): it
# fails whole (a division by zero) unless every held row was there to change.
_BEGIN_AFTER_HELD = (f"WITH held AS ({_HELD}) {_BEGIN} "
                     "RETURNING (SELECT 1 / (count(*) = %s)::int FROM held)")


# One subscriber's edition in one statement, one row (``edition_state``, ``selection_state``):
# suppressed, the preferences (4 columns, NULL when none), the row (14, NULL when none); for a
# selection also the history's papers and the feedback (oldest first, as ``feedback_for``
# orders it) as arrays, NULL when none. One round trip instead of one per table.
_EDITION_COLUMNS = ("EXISTS (SELECT 1 FROM suppressions WHERE email = %(email)s), "
                    "p.email, p.paused_until, p.max_papers, p.updated_at, d.*")
_EDITION_FROM = ("FROM (SELECT 1) AS one "
                 "LEFT JOIN preferences p ON p.email = %(email)s "
                 f"LEFT JOIN (SELECT {_ROW_COLUMNS} FROM deliveries WHERE email = %(email)s "
                 f"AND edition = %(edition)s AND {_VISIBLE}) d ON true")
_EDITION_STATE = f"SELECT {_EDITION_COLUMNS} {_EDITION_FROM}"
_SELECTION_STATE = (
    f"SELECT {_EDITION_COLUMNS}, "
    "(SELECT array_agg(papers) FROM deliveries WHERE email = %(email)s "
    "AND state = ANY(%(states)s)), "
    "(SELECT array_agg(ARRAY[paper_id, verdict, title, abstract] ORDER BY created_at, paper_id) "
    f"FROM feedback WHERE email = %(email)s) {_EDITION_FROM}")


def _row(r: Sequence[Any]) -> LedgerRow:
    return LedgerRow(
        email=str(r[0]), edition=cast(date, r[1]), state=cast(DeliveryState, r[2]),
        message_id=None if r[3] is None else str(r[3]), papers=tuple(json.loads(str(r[4]))),
        attempts=int(r[5]), created=cast(datetime, r[6]), updated=cast(datetime, r[7]),
        sent_at=cast(datetime | None, r[8]), code=None if r[9] is None else int(r[9]),
        error=None if r[10] is None else str(r[10]), possible_duplicate=bool(r[11]),
        has_message=bool(r[12]), ambiguous=int(r[13]))


def _preferences(r: Sequence[Any]) -> Preferences:
    return Preferences(email=str(r[0]), paused_until=cast(date | None, r[1]),
                       max_papers=None if r[2] is None else int(r[2]),
                       updated=cast(datetime, r[3]))


def _ts(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("ledger timestamps must be timezone-aware")
    return now


def _norm(email: str) -> str:
    return email.strip().lower()


class PostgresLedger:
    """The ledger in the PostgreSQL database at ``database.url`` (its schema migrated by
    Alembic on first use; the tables live in the connection's ``search_path``).

    ``mark_sent(hold=True)`` as the SQLite ledger's: the ``sent`` waits in memory and goes
    in the same statement as the next ``begin`` (a transaction of four statements fewer a
    message), or with ``flush()``; every other call commits what is held first, but the two
    per-subscriber reads, which do so only for a held row of their own."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database
        self.path = database  # what messages name (str() is the URL)
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.RLock()
        # (email, edition) -> (when, code, reply) of a held ``sent``
        self._held: dict[tuple[str, date], tuple[datetime, int | None, str | None]] = {}

    # ------------------------------------------------------------------ connection

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg  # only for PostgreSQL users (it takes a while to import)

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(self.database.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise LedgerError(self.database.url, f"cannot connect ({_first_line(exc)})") from exc
        try:
            migrate(self.database, conn)
            if conn.info.server_version >= 120000:  # the setting came with PostgreSQL 12
                # psycopg prepares a statement from its 5th run, and PostgreSQL then settles
                # on one generic plan for it: made while the table was small, it was kept as
                # the deliveries grew, and a run's per-row update went from 0.1 ms to 0.85
                # at 6,000 rows (a delivery's four calls 1.1 -> 3.5 ms at 9,000). Each run
                # planned for its own values keeps them flat (docs/delivery.md).
                conn.execute("SET plan_cache_mode = force_custom_plan")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T], *,
             row: tuple[str, date] | None = None, held: bool = False) -> _T:
        """Run ``work`` on the connection; once more on a fresh one if the connection was
        lost (every statement here is safe to repeat). The held ``sent``s are committed first
        unless ``work`` takes them itself (``held``) or reads only ``row``, not held."""
        import psycopg

        with self._mutex:
            if self._held and not held and (row is None or row in self._held):
                self.flush()
            for attempt in (1, 2):
                conn = self._connect()
                try:
                    return work(conn)
                except psycopg.OperationalError as exc:
                    self._drop()
                    if attempt == 2:
                        raise LedgerError(self.database.url, _first_line(exc)) from exc
                except psycopg.Error as exc:
                    raise LedgerError(self.database.url, _first_line(exc)) from exc
            raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[object] | dict[str, object] = (), *,
              row: tuple[str, date] | None = None) -> list[tuple[Any, ...]]:
        return self._run(lambda c: c.execute(sql, params).fetchall(), row=row)

    def _held_arrays(self) -> tuple[list[Any], ...]:
        """``_HELD``'s five arrays: emails, editions, times, codes, replies."""
        keys = list(self._held)
        return ([k[0] for k in keys], [k[1] for k in keys],
                *([self._held[k][i] for k in keys] for i in range(3)))

    def holds(self, email: str, edition: date) -> bool:
        return False

    def flush(self) -> None:
        """Commit the held ``mark_sent`` writes now (a run calls it before it waits). A held
        ``sent`` whose row is gone is dropped and raised, the others committed."""
        with self._mutex:
            if not self._held:
                return

            def work(c: psycopg.Connection[Any]) -> set[tuple[str, date]]:
                with c.transaction():
                    c.execute("SET LOCAL synchronous_commit = off")  # as mark_sent's own
                    return {(str(e), d) for e, d in c.execute(_HELD, self._held_arrays())}
            changed = self._run(work, held=True)
            missing = [key for key in self._held if key not in changed]
            self._held.clear()
            if missing:
                raise LedgerError(self.database.url, f"no delivery row for {missing[0][0]} "
                                  f"edition {missing[0][1]}")

    def _write(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> int:
        return self._run(lambda c: c.execute(sql, params).rowcount)

    def _lazy(self, sql: str, params: Sequence[object] | dict[str, object] = ()
              ) -> list[tuple[Any, ...]]:
        """A statement whose commit need not wait for the disk (``synchronous_commit=off``):
        a claim, or the outcome of an attempt. The next durable commit (the next ``begin``)
        flushes it; a server crash may forget the last few, which leaves the row ``sending``,
        re-sent as a possible duplicate: the guarantee of a message in flight at a crash.
        ``begin`` itself is always durable, before any byte leaves."""
        def work(c: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            with c.transaction():
                c.execute("SET LOCAL synchronous_commit = off")
                cur = c.execute(sql, params)
                return cur.fetchall() if cur.description else [(cur.rowcount,)]
        return self._run(work)

    def _drop(self) -> None:
        import psycopg

        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def close(self) -> None:
        """Commit what is held, then close (closed even when that commit fails)."""
        with self._mutex:
            try:
                self.flush()
            finally:
                self._drop()

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def history(self) -> dict[str, frozenset[str]]:
        states = list(HISTORY_STATES)
        acc: dict[str, set[str]] = {}
        for email, papers in self._read(
                "SELECT email, papers FROM deliveries WHERE state = ANY(%s)", (states,)):
            acc.setdefault(str(email), set()).update(json.loads(str(papers)))
        return {k: frozenset(v) for k, v in acc.items()}

    def history_for(self, email: str) -> frozenset[str]:
        states = list(HISTORY_STATES)
        found: set[str] = set()
        for (papers,) in self._read("SELECT papers FROM deliveries WHERE email = %s "
                                    "AND state = ANY(%s)", (_norm(email), states)):
            found.update(json.loads(str(papers)))
        return frozenset(found)

    def suppressed(self) -> frozenset[str]:
        return frozenset(str(r[0]) for r in self._read("SELECT email FROM suppressions"))

    def is_suppressed(self, email: str) -> bool:
        return bool(self._read("SELECT 1 FROM suppressions WHERE email = %s", (_norm(email),)))

    def get(self, email: str, edition: date) -> LedgerRow | None:
        rows = self._read(f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE email = %s "
                          f"AND edition = %s AND {_VISIBLE}", (_norm(email), edition))
        return _row(rows[0]) if rows else None

    def edition_state(self, email: str, edition: date) -> EditionState:
        key = _norm(email)
        (r,) = self._read(_EDITION_STATE, {"email": key, "edition": edition},
                          row=(key, edition))
        return EditionState(suppressed=bool(r[0]),
                            preferences=None if r[1] is None else _preferences(r[1:5]),
                            row=None if r[5] is None else _row(r[5:19]))

    def selection_state(self, email: str, edition: date) -> SelectionState:
        key = _norm(email)
        (r,) = self._read(_SELECTION_STATE, {"email": key, "edition": edition,
                                             "states": list(HISTORY_STATES)},
                          row=(key, edition))
        history: set[str] = set()
        for papers in r[19] or ():
            history.update(json.loads(str(papers)))
        return SelectionState(
            suppressed=bool(r[0]), preferences=None if r[1] is None else _preferences(r[1:5]),
            row=None if r[5] is None else _row(r[5:19]), history=frozenset(history),
            feedback=None if r[20] is None else _feedback([(key, *f) for f in r[20]])[key])

    def rows(self, email: str | None = None, *, limit: int | None = None
             ) -> tuple[LedgerRow, ...]:
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        if email is None:
            found = self._read(f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE {_VISIBLE} "
                               f"ORDER BY edition DESC, email{tail}")
        else:
            found = self._read(f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE email = %s AND "
                               f"{_VISIBLE} ORDER BY edition DESC{tail}", (_norm(email),))
        return tuple(_row(r) for r in found)

    def pending(self) -> tuple[LedgerRow, ...]:
        return tuple(_row(r) for r in self._read(
            f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE state IN ('sending', 'deferred') "
            "ORDER BY edition, email"))

    def stored_message(self, email: str, edition: date) -> bytes | None:
        rows = self._read("SELECT message FROM deliveries WHERE email = %s AND edition = %s",
                          (_norm(email), edition))
        if not rows or rows[0][0] is None:
            return None
        return _blob.unpack(bytes(rows[0][0]))

    def status(self) -> tuple[EditionStatus, ...]:
        """Per edition: how many rows in each state, and the oldest live lease."""
        found = self._read(
            "SELECT edition, "
            "count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'sending'),"
            " count(*) FILTER (WHERE state = 'sent'), count(*) FILTER (WHERE state = 'deferred'),"
            " count(*) FILTER (WHERE state = 'failed'), count(*) FILTER (WHERE state = 'uncertain'),"
            " count(*) FILTER (WHERE possible_duplicate),"
            " min(lease_until) FILTER (WHERE state = 'sending') "
            "FROM deliveries GROUP BY edition ORDER BY edition DESC")
        return tuple(EditionStatus(edition=r[0], queued=r[1], sending=r[2], sent=r[3],
                                   deferred=r[4], failed=r[5], uncertain=r[6],
                                   possible_duplicates=r[7], oldest_lease=r[8]) for r in found)

    # ------------------------------------------------------------------ state changes

    def begin(self, email: str, edition: date, *, message_id: str, papers: tuple[str, ...],
              data: bytes | None, now: datetime, possible_duplicate: bool = False,
              hold: bool = False) -> None:
        """As the SQLite ledger, but written at once whatever ``hold`` says (``holds`` is
        always False), with the held ``sent``s in the same statement."""
        import psycopg

        blob = None if data is None else _blob.pending(data)  # as the SQLite ledger
        params = (_norm(email), edition, message_id, json.dumps(list(papers)), _ts(now),
                  _ts(now), possible_duplicate, blob)
        with self._mutex:
            if (params[0], edition) in self._held:
                self.flush()  # the same row twice in one statement: not allowed
            if not self._held:
                self._write(_BEGIN, params)
                return
            try:
                self._run(lambda c: c.execute(_BEGIN_AFTER_HELD, (
                    *self._held_arrays(), *params, len(self._held))), held=True)
            except LedgerError as exc:
                if not isinstance(exc.__cause__, psycopg.errors.DivisionByZero):
                    raise
                self.flush()  # raises for the held row that is gone; the rest committed
                self._write(_BEGIN, params)
                return
            self._held.clear()

    def mark_sent(self, email: str, edition: date, *, now: datetime, code: int | None = 250,
                  reply: str | None = None, archive: timedelta | None = None,
                  hold: bool = False) -> None:
        """As the SQLite ledger: with ``archive`` the sent bytes move to the archive in the
        same transaction, and this subscriber's archived editions older than that go.
        ``hold`` (without ``archive``): written with this ledger's next ``begin`` or
        ``flush()``."""
        address = _norm(email)
        if hold and archive is None:
            with self._mutex:
                self._held[address, edition] = (_ts(now), code, reply)
            return

        def work(c: psycopg.Connection[Any]) -> int:
            with c.transaction():
                c.execute("SET LOCAL synchronous_commit = off")
                if archive is not None:
                    c.execute("DELETE FROM archive WHERE email = %s AND sent_at < %s",
                              (address, _ts(now - archive)))
                    found = c.execute(
                        "SELECT message_id, message FROM deliveries WHERE email = %s AND "
                        "edition = %s AND message IS NOT NULL AND message_id IS NOT NULL",
                        (address, edition)).fetchall()
                    for message_id, blob in found:  # compressed for the archive's days
                        c.execute(
                            "INSERT INTO archive (email, edition, message_id, sent_at, message) "
                            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (email, edition) DO UPDATE "
                            "SET message_id = excluded.message_id, sent_at = excluded.sent_at, "
                            "message = excluded.message",
                            (address, edition, message_id, _ts(now), _blob.compact(bytes(blob))))
                    # the left-out matches live as long as their edition's archive row
                    c.execute("DELETE FROM left_out l WHERE l.email = %s AND l.edition <> %s "
                              "AND NOT EXISTS (SELECT 1 FROM archive a WHERE a.email = l.email "
                              "AND a.edition = l.edition)", (address, edition))
                return c.execute(_FINISH, ("sent", _ts(now), code, reply, True, _ts(now), False,
                                           address, edition)).rowcount
        if self._run(work) != 1:
            raise LedgerError(self.database.url, f"no delivery row for {email} edition {edition}")

    def mark_deferred(self, email: str, edition: date, *, now: datetime, code: int | None,
                      error: str) -> None:
        self._finish(email, edition, "deferred", now=now, code=code, error=error,
                     keep_message=True)
        self._compact(email, edition)

    def _compact(self, email: str, edition: date) -> None:
        """As the SQLite ledger: the bytes of a row that stays, compressed."""
        rows = self._read("SELECT message FROM deliveries WHERE email = %s AND edition = %s",
                          (_norm(email), edition))
        if rows and rows[0][0] is not None and _blob.is_raw(bytes(rows[0][0])):
            self._lazy("UPDATE deliveries SET message = %s WHERE email = %s AND edition = %s",
                       (_blob.compact(bytes(rows[0][0])), _norm(email), edition))

    def mark_failed(self, email: str, edition: date, *, now: datetime, code: int | None,
                    error: str) -> None:
        self._finish(email, edition, "failed", now=now, code=code, error=error,
                     keep_message=False)

    def _finish(self, email: str, edition: date, state: DeliveryState, *, now: datetime,
                code: int | None, error: str | None, keep_message: bool,
                sent: bool = False) -> None:
        changed = self._lazy(_FINISH, (state, _ts(now), code, error, sent, _ts(now),
                                       keep_message, _norm(email), edition))[0][0]
        if changed != 1:
            raise LedgerError(self.database.url, f"no delivery row for {email} edition {edition}")

    def create(self) -> None:
        """Connect (and migrate) now: ``digest run`` at start."""
        self._run(lambda c: None)

    def recorded_since(self, first: date) -> frozenset[tuple[str, date]]:
        return frozenset((str(e), cast(date, d)) for e, d in self._read(
            f"SELECT email, edition FROM deliveries WHERE edition >= %s AND {_VISIBLE}",
            (first,)))

    def mark_ambiguous(self, email: str, edition: date, *, now: datetime,
                       error: str) -> DeliveryState:
        """As the SQLite ledger: the first unknown outcome leaves the row ``deferred``, the
        ``AMBIGUOUS_LIMIT``-th holds it ``uncertain`` (and ends any lease: nobody sends it)."""
        rows = self._lazy(
            "UPDATE deliveries SET ambiguous = ambiguous + 1, updated_at = %(now)s, "
            "last_code = NULL, last_error = %(error)s, possible_duplicate = TRUE, "
            "state = CASE WHEN ambiguous + 1 >= %(limit)s THEN 'uncertain' ELSE 'deferred' END, "
            "claimed_by = CASE WHEN ambiguous + 1 >= %(limit)s THEN NULL ELSE claimed_by END, "
            "lease_until = CASE WHEN ambiguous + 1 >= %(limit)s THEN NULL ELSE lease_until END "
            "WHERE email = %(email)s AND edition = %(edition)s RETURNING state",
            {"now": _ts(now), "error": error, "limit": AMBIGUOUS_LIMIT, "email": _norm(email),
             "edition": edition})
        if len(rows) != 1:
            raise LedgerError(self.database.url, f"no delivery row for {email} edition {edition}")
        self._compact(email, edition)
        return cast(DeliveryState, rows[0][0])

    def resolve(self, email: str, edition: date, *, sent: bool, now: datetime) -> LedgerRow:
        """As the SQLite ledger: the admin's word on an ``uncertain`` row."""
        row = self.get(email, edition)
        if row is None or row.state != "uncertain":
            state = "no such row" if row is None else f"it is {row.state}"
            raise LedgerError(self.database.url, f"{email} edition {edition} is not uncertain "
                              f"({state}); only uncertain rows are resolved")
        if sent:
            self._finish(email, edition, "sent", now=now, code=None,
                         error="resolved by the admin: it arrived", keep_message=False, sent=True)
        else:
            self._write("UPDATE deliveries SET state = 'deferred', ambiguous = %s, "
                        "created_at = %s, updated_at = %s, last_error = %s, queued_at = NULL "
                        "WHERE email = %s AND edition = %s",
                        (AMBIGUOUS_LIMIT - 1, _ts(now), _ts(now),
                         "resolved by the admin: send it again", _norm(email), edition))
        resolved = self.get(email, edition)
        assert resolved is not None
        return resolved

    def suppress(self, email: str, *, now: datetime, source: str = "cli") -> bool:
        return self._write("INSERT INTO suppressions (email, created_at, source) "
                           "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                           (_norm(email), _ts(now), source)) == 1

    def unsuppress(self, email: str) -> bool:
        return self._write("DELETE FROM suppressions WHERE email = %s", (_norm(email),)) == 1

    def record_feedback(self, email: str, paper: Paper, verdict: str, *, now: datetime) -> None:
        if verdict not in ("more", "less"):
            raise ValueError(verdict)
        self._write("INSERT INTO feedback (email, paper_id, verdict, title, abstract, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (email, paper_id) DO UPDATE SET "
                    "verdict = excluded.verdict, title = excluded.title, abstract = "
                    "excluded.abstract, created_at = excluded.created_at",
                    (_norm(email), paper.id, verdict, paper.title, paper.abstract, _ts(now)))

    def feedback(self) -> dict[str, Feedback]:
        return _feedback(self._read("SELECT email, paper_id, verdict, title, abstract FROM "
                                    "feedback ORDER BY created_at, paper_id"))

    def feedback_for(self, email: str) -> Feedback | None:
        key = email.strip().lower()
        return _feedback(self._read("SELECT email, paper_id, verdict, title, abstract FROM "
                                    "feedback WHERE email = %s ORDER BY created_at, paper_id",
                                    (key,))).get(key)

    def note_skip(self, email: str, edition: date, reason: str, *, now: datetime) -> None:
        self._write("INSERT INTO skips (email, edition, reason, at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (email, edition) DO UPDATE SET reason = excluded.reason, "
                    "at = excluded.at", (_norm(email), edition, reason, _ts(now)))

    def skips(self, email: str | None = None, *, limit: int | None = None
              ) -> tuple[SkipRow, ...]:
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        where = "WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.email = s.email AND " \
                f"d.edition = s.edition AND d.{_VISIBLE})"
        params: tuple[object, ...] = ()
        if email is not None:
            where += " AND s.email = %s"
            params = (_norm(email),)
        found = self._read(f"SELECT s.email, s.edition, s.reason, s.at FROM skips s {where} "
                           f"ORDER BY s.edition DESC, s.email{tail}", params)
        return tuple(SkipRow(str(r[0]), cast(date, r[1]), str(r[2]), cast(datetime, r[3]))
                     for r in found)

    def suppression_source(self, email: str) -> str | None:
        rows = self._read("SELECT source FROM suppressions WHERE email = %s", (_norm(email),))
        return str(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ digest serve

    def known_addresses(self) -> frozenset[str]:
        return frozenset(str(r[0]) for r in self._read(
            "SELECT email FROM deliveries UNION SELECT email FROM suppressions "
            "UNION SELECT email FROM preferences"))

    def preferences(self, email: str) -> Preferences | None:
        rows = self._read("SELECT email, paused_until, max_papers, updated_at FROM preferences "
                          "WHERE email = %s", (_norm(email),))
        return _preferences(rows[0]) if rows else None

    def all_preferences(self) -> tuple[Preferences, ...]:
        return tuple(_preferences(r) for r in self._read(
            "SELECT email, paused_until, max_papers, updated_at FROM preferences ORDER BY email"))

    def set_preferences(self, email: str, *, paused_until: date | None,
                        max_papers: int | None, now: datetime) -> None:
        address = _norm(email)
        if paused_until is None and max_papers is None:
            self._write("DELETE FROM preferences WHERE email = %s", (address,))
            return
        self._write(
            "INSERT INTO preferences (email, paused_until, max_papers, updated_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (email) DO UPDATE SET "
            "paused_until = excluded.paused_until, max_papers = excluded.max_papers, "
            "updated_at = excluded.updated_at", (address, paused_until, max_papers, _ts(now)))

    def archived(self, email: str) -> tuple[ArchivedEdition, ...]:
        return tuple(
            ArchivedEdition(email=str(r[0]), edition=cast(date, r[1]), message_id=str(r[2]),
                            sent_at=cast(datetime, r[3]))
            for r in self._read("SELECT email, edition, message_id, sent_at FROM archive "
                                "WHERE email = %s ORDER BY edition DESC", (_norm(email),)))

    def keep_left_out(self, email: str, edition: date, matches: Sequence[LeftOut]) -> None:
        self._write("INSERT INTO left_out (email, edition, matches) VALUES (%s, %s, %s) "
                    "ON CONFLICT (email, edition) DO UPDATE SET matches = excluded.matches",
                    (_norm(email), edition, dump_left_out(matches)))

    def archived_left_out(self, email: str, edition: date) -> tuple[LeftOut, ...] | None:
        rows = self._read("SELECT l.matches FROM left_out l JOIN archive a "
                          "ON a.email = l.email AND a.edition = l.edition "
                          "WHERE l.email = %s AND l.edition = %s", (_norm(email), edition))
        return load_left_out(bytes(rows[0][0])) if rows else None

    def archived_message(self, email: str, edition: date) -> bytes | None:
        rows = self._read("SELECT message FROM archive WHERE email = %s AND edition = %s",
                          (_norm(email), edition))
        return _blob.unpack(bytes(rows[0][0])) if rows else None

    # ------------------------------------------------------------------ the queue's side

    def enqueue(self, entries: Iterable[tuple[str, date]], *, run: str, now: datetime
                ) -> tuple[tuple[str, date], ...]:
        """Write ``queued`` rows for (email, edition) pairs; return those a task must be
        published for: new rows, rows still queued (their run updated) and deferred rows.
        Sent, failed and in-flight rows are left alone."""
        emails: list[str] = []
        editions: list[date] = []
        for email, edition in entries:
            emails.append(_norm(email))
            editions.append(edition)
        if not emails:
            return ()
        found = self._read(
            "INSERT INTO deliveries AS d (email, edition, state, run, created_at, updated_at, "
            "queued_at) SELECT e, ed, 'queued', %(run)s, %(now)s, %(now)s, clock_timestamp() "
            "FROM unnest(%(emails)s::text[], %(editions)s::date[]) AS t(e, ed) "
            "ON CONFLICT (email, edition) DO UPDATE SET queued_at = excluded.queued_at, "
            "run = CASE WHEN d.state = 'queued' THEN excluded.run ELSE d.run END "
            "WHERE d.state IN ('queued', 'deferred') RETURNING email, edition",
            {"run": run, "now": _ts(now), "emails": emails, "editions": editions})
        return tuple((str(e), cast(date, ed)) for e, ed in found)

    def claim(self, email: str, edition: date, *, token: str, lease: float, run: str,
              now: datetime) -> Claim | None:
        """Take (email, edition) for one send attempt, atomically: None when it is already
        sent or failed, or held by a live lease (someone else is sending it). The row as it
        was before the claim comes back, so the sender knows a fresh row from one in flight
        at a crash. The same ``token`` may claim again (a retry after a lost connection)."""
        found = self._lazy(
            "INSERT INTO deliveries AS d (email, edition, state, run, created_at, updated_at, "
            "claimed_by, lease_until, claimed_from) VALUES (%(email)s, %(edition)s, 'sending', "
            "%(run)s, %(now)s, %(now)s, %(token)s, "
            "clock_timestamp() + %(lease)s * interval '1 second', NULL) "
            "ON CONFLICT (email, edition) DO UPDATE SET state = 'sending', "
            "claimed_by = excluded.claimed_by, lease_until = excluded.lease_until, "
            "claimed_from = CASE WHEN d.claimed_by = excluded.claimed_by "
            "THEN d.claimed_from ELSE d.state END "
            "WHERE d.state IN ('queued', 'deferred') OR (d.state = 'sending' AND "
            "(d.lease_until IS NULL OR d.lease_until < clock_timestamp() "
            "OR d.claimed_by = excluded.claimed_by)) "
            f"RETURNING claimed_from, d.run, {_ROW_COLUMNS}",
            {"email": _norm(email), "edition": edition, "run": run, "now": _ts(now),
             "token": token, "lease": float(lease)})
        if not found:
            return None
        prior, row_run, rest = found[0][0], found[0][1], found[0][2:]
        row = _row(rest)
        before: LedgerRow | None
        if prior is None or prior == "queued" or (prior == "sending" and row.message_id is None):
            before = None  # nothing of this edition can have left yet
        else:
            before = LedgerRow(**{**row.__dict__, "state": cast(DeliveryState, prior)})
        return Claim(email=row.email, edition=row.edition, token=token,
                     run=None if row_run is None else str(row_run), before=before)

    def release(self, claim: Claim) -> bool:
        """Give up a claim that sent nothing (the subscriber had nothing new): the row goes
        away, as if never queued. True if it was still ours and had nothing stored."""
        return self._write(
            "DELETE FROM deliveries WHERE email = %s AND edition = %s AND state = 'sending' "
            "AND claimed_by = %s AND message_id IS NULL",
            (claim.email, claim.edition, claim.token)) == 1

    def give_up(self, claim: Claim, *, now: datetime, error: str) -> None:
        """Mark a claimed row failed for a reason outside SMTP (e.g. the subscriber is not in
        the worker's config), so no reconciler re-publishes it forever."""
        self._write(
            "UPDATE deliveries SET state = 'failed', updated_at = %s, last_error = %s, "
            "claimed_by = NULL, lease_until = NULL, message = NULL "
            "WHERE email = %s AND edition = %s AND claimed_by = %s",
            (_ts(now), error, claim.email, claim.edition, claim.token))

    def stale(self, *, requeue_after: float, retry_after: float, limit: int = 10_000
              ) -> tuple[StaleRow, ...]:
        """Rows whose task was lost or must run again, marked as re-published: ``queued``
        ones older than ``requeue_after`` seconds, ``sending`` ones whose lease expired, and
        ``deferred`` ones last published ``retry_after`` seconds ago."""
        found = self._read(
            "UPDATE deliveries SET queued_at = clock_timestamp() WHERE (email, edition) IN ("
            "SELECT email, edition FROM deliveries WHERE "
            "(state = 'queued' AND queued_at < clock_timestamp() - %(rq)s * interval '1 second')"
            " OR (state = 'sending' AND lease_until < clock_timestamp() "
            "AND (queued_at IS NULL OR queued_at < lease_until)) "
            " OR (state = 'deferred' AND (queued_at IS NULL OR "
            "queued_at < clock_timestamp() - %(ra)s * interval '1 second')) "
            "ORDER BY edition, email LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            "RETURNING email, edition, run",
            {"rq": float(requeue_after), "ra": float(retry_after), "limit": int(limit)})
        return tuple(StaleRow(str(e), cast(date, ed), None if r is None else str(r))
                     for e, ed, r in found)

    def release_stale(self, rows: Sequence[StaleRow]) -> None:
        """Undo ``stale``'s mark for rows whose re-publish failed (the broker was down), so
        the next pass hands them out again: an expired ``sending`` row would otherwise never
        be stale again (its mark is newer than its lease), and a ``deferred`` one would wait
        ``retry_after`` more. ``queued`` rows keep the mark: ``requeue_after`` brings them
        back anyway."""
        if not rows:
            return
        self._write(
            "UPDATE deliveries SET queued_at = NULL WHERE state IN ('sending', 'deferred') "
            "AND (email, edition) IN (SELECT * FROM unnest(%s::text[], %s::date[]))",
            ([r.email for r in rows], [r.edition for r in rows]))

    def freeze_edition(self, papers: Sequence[Paper], summaries: dict[str, Summary], *,
                       now: datetime) -> str:
        """Store a run's papers and summaries once; return the run id (a content hash, so
        the same content is stored once however often it is frozen)."""
        text = dump_edition(papers, summaries)
        run = hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]
        self._write("INSERT INTO editions (run, created_at, content) VALUES (%s, %s, %s) "
                    "ON CONFLICT (run) DO NOTHING", (run, _ts(now), text))
        return run

    def frozen_edition(self, run: str) -> FrozenEdition | None:
        found = self._read("SELECT content FROM editions WHERE run = %s", (run,))
        return load_edition(str(found[0][0])) if found else None

    def take_token(self, bucket: str, *, rate: float, burst: float = 1.0) -> float:
        """One send's worth from the shared bucket ``bucket`` refilled at ``rate`` per second;
        returns how many seconds the caller must wait before sending (0 if a token was
        there). Taking always succeeds: a wait is a reservation, so waiters never race."""
        def work(c: psycopg.Connection[Any]) -> float:
            c.execute("INSERT INTO rate_buckets (name, tokens, updated_at) VALUES "
                      "(%s, %s, clock_timestamp()) ON CONFLICT DO NOTHING", (bucket, burst))
            found = c.execute(
                "UPDATE rate_buckets SET tokens = LEAST(%(burst)s, tokens + EXTRACT(EPOCH FROM "
                "clock_timestamp() - updated_at) * %(rate)s) - 1, updated_at = clock_timestamp()"
                " WHERE name = %(name)s RETURNING tokens",
                {"burst": float(burst), "rate": float(rate), "name": bucket}).fetchone()
            tokens = float(found[0]) if found else 0.0
            return 0.0 if tokens >= 0 else -tokens / rate
        return self._run(work)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class AdvisoryLock:
    """One holder per database: a session-level advisory lock keyed on the database and
    schema (``what`` tells a sender from a scheduler). The server releases it when the
    holding connection ends, so a ``kill -9`` or a lost machine leaves no stale lock."""

    def __init__(self, database: PostgresDatabase, what: str = "sending") -> None:
        self.database = database
        self.what = what
        self._conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(self.database.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise LedgerError(self.database.url, f"cannot connect ({_first_line(exc)})") from exc
        key = conn.execute(
            "SELECT ('x' || substr(md5(current_database() || '/' || current_schema() || '/' "
            "|| %s), 1, 16))::bit(64)::bigint", (f"paper-digest {self.what}",)).fetchone()
        assert key is not None
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key[0],)).fetchone()
        if not got or not got[0]:
            holder = conn.execute(
                "SELECT a.pid, a.client_addr, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND "
                "l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                (key[0],)).fetchone()
            conn.close()
            who = "unknown" if holder is None else \
                f"server pid {holder[0]}" + (f" from {holder[1]}" if holder[1] else "")
            raise LockedError(f"another digest process ({who}) is {self.what} with "
                              f"{self.database}")
        self._conn = conn

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # closing the session drops the lock
            self._conn = None

    @property
    def held(self) -> bool:
        """Still ours: the connection holding the lock is alive."""
        import psycopg

        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def __enter__(self) -> AdvisoryLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
