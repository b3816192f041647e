"""What only the PostgreSQL ledger does, on the real server: the atomic claim with a lease,
queued rows, re-publishing stale rows, frozen editions, the global rate bucket, the advisory
send lock, surviving a dropped connection, and a claim race between processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg
import pytest

from digest.errors import LockedError
from digest.ledger import AdvisoryLock, PostgresLedger
from digest.models import Paper, PostgresDatabase, Summary

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
ED = date(2026, 11, 25)


@pytest.fixture
def ledger(pg_database: PostgresDatabase) -> Iterator[PostgresLedger]:
    with PostgresLedger(pg_database) as opened:
        yield opened


def test_claim_takes_a_row_once_and_a_lease_blocks_others(ledger: PostgresLedger) -> None:
    assert ledger.enqueue([("A@x.org", ED), ("b@x.org", ED)], run="r1", now=NOW) == (
        ("a@x.org", ED), ("b@x.org", ED))
    assert ledger.get("a@x.org", ED) is None  # queued is a promise, not a delivery
    assert ledger.edition_state("a@x.org", ED).row is None
    assert ledger.selection_state("a@x.org", ED).row is None
    first = ledger.claim("a@x.org", ED, token="w1", lease=60, run="r1", now=NOW)
    assert first is not None and first.before is None and first.run == "r1"
    assert ledger.claim("a@x.org", ED, token="w2", lease=60, run="r1", now=NOW) is None
    again = ledger.claim("a@x.org", ED, token="w1", lease=60, run="r1", now=NOW)
    assert again is not None and again.before is None  # the same holder may repeat its claim
    ledger.begin("a@x.org", ED, message_id="<m@x>", papers=("p1",), data=b"m", now=NOW)
    ledger.mark_sent("a@x.org", ED, now=NOW)
    assert ledger.claim("a@x.org", ED, token="w3", lease=60, run="r1", now=NOW) is None
    # enqueueing the same edition again publishes nothing for the sent row
    assert ledger.enqueue([("a@x.org", ED), ("b@x.org", ED)], run="r2", now=NOW) == (
        ("b@x.org", ED),)
    (status,) = ledger.status()
    assert (status.queued, status.sending, status.sent) == (1, 0, 1)


def test_an_expired_lease_is_taken_over_and_the_row_is_a_possible_duplicate(
        ledger: PostgresLedger) -> None:
    claim = ledger.claim("a@x.org", ED, token="w1", lease=0.2, run="r1", now=NOW)
    assert claim is not None
    ledger.begin("a@x.org", ED, message_id="<m@x>", papers=("p1",), data=b"bytes", now=NOW)
    (status,) = ledger.status()
    assert status.sending == 1 and status.oldest_lease is not None
    assert ledger.claim("a@x.org", ED, token="w2", lease=60, run="r1", now=NOW) is None
    time.sleep(0.4)  # the first worker died holding it
    taken = ledger.claim("a@x.org", ED, token="w2", lease=60, run="r1", now=NOW)
    assert taken is not None and taken.before is not None
    assert (taken.before.state, taken.before.message_id) == ("sending", "<m@x>")
    assert ledger.stored_message("a@x.org", ED) == b"bytes"


def test_a_claim_that_sent_nothing_is_released(ledger: PostgresLedger) -> None:
    ledger.enqueue([("a@x.org", ED)], run="r1", now=NOW)
    claim = ledger.claim("a@x.org", ED, token="w1", lease=60, run="r1", now=NOW)
    assert claim is not None
    assert ledger.release(claim) is True
    assert ledger.status() == ()
    other = ledger.claim("b@x.org", ED, token="w1", lease=60, run="r1", now=NOW)
    assert other is not None
    ledger.give_up(other, now=NOW, error="b@x.org is not in this worker's config")
    row = ledger.get("b@x.org", ED)
    assert row is not None and (row.state, row.error) == (
        "failed", "b@x.org is not in this worker's config")


def test_stale_rows_are_handed_out_once(ledger: PostgresLedger) -> None:
    ledger.enqueue([("a@x.org", ED), ("b@x.org", ED)], run="r1", now=NOW)
    assert ledger.stale(requeue_after=3600, retry_after=3600) == ()
    time.sleep(0.3)
    stale = ledger.stale(requeue_after=0.2, retry_after=3600)
    assert {(s.email, s.run) for s in stale} == {("a@x.org", "r1"), ("b@x.org", "r1")}
    assert ledger.stale(requeue_after=0.2, retry_after=3600) == ()  # just re-published
    claim = ledger.claim("a@x.org", ED, token="w1", lease=0.1, run="r1", now=NOW)
    assert claim is not None
    time.sleep(0.3)
    assert [s.email for s in ledger.stale(requeue_after=3600, retry_after=3600)] == ["a@x.org"]
    ledger.claim("a@x.org", ED, token="w2", lease=60, run="r1", now=NOW)
    ledger.begin("a@x.org", ED, message_id="<m@x>", papers=(), data=b"m", now=NOW)
    ledger.mark_deferred("a@x.org", ED, now=NOW, code=451, error="later")
    time.sleep(0.3)
    assert [s.email for s in ledger.stale(requeue_after=3600, retry_after=0.2)] == ["a@x.org"]


def test_a_failed_republish_hands_the_rows_out_again(ledger: PostgresLedger) -> None:
    # a worker died mid-send (its lease expired) and the broker was down when the reconciler
    # re-published the row: released, the next pass must find it again, not never.
    ledger.enqueue([("a@x.org", ED), ("b@x.org", ED)], run="r1", now=NOW)
    assert ledger.claim("a@x.org", ED, token="w1", lease=0.1, run="r1", now=NOW) is not None
    time.sleep(0.3)
    stale = ledger.stale(requeue_after=3600, retry_after=3600)
    assert [s.email for s in stale] == ["a@x.org"]
    assert ledger.stale(requeue_after=3600, retry_after=3600) == ()  # marked as re-published
    ledger.release_stale(stale)
    assert [s.email for s in ledger.stale(requeue_after=3600, retry_after=3600)] == ["a@x.org"]
    ledger.release_stale(())  # nothing to release: no statement, no error


def test_a_frozen_edition_comes_back_equal(ledger: PostgresLedger) -> None:
    papers = (Paper(id="2611.00001", title="A model", abstract="We do it.", authors=("Ada",),
                    published=NOW, listed=ED, categories=("cs.LG",), upvotes=3,
                    ai_keywords=("k",)),
              Paper(id="2611.00002", title="B", abstract="B."))
    summaries = {"2611.00001": Summary(paper_id="2611.00001", title="A model",
                                       headline="We do it.", results=("It works.",))}
    run = ledger.freeze_edition(papers, summaries, now=NOW)
    assert ledger.freeze_edition(papers, summaries, now=NOW) == run  # stored once
    frozen = ledger.frozen_edition(run)
    assert frozen is not None
    assert frozen.papers == papers and frozen.summaries == summaries
    assert ledger.frozen_edition("nope") is None


def test_the_rate_bucket_is_shared(pg_database: PostgresDatabase) -> None:
    with PostgresLedger(pg_database) as one, PostgresLedger(pg_database) as two:
        one.suppressed(), two.suppressed()  # both connected (and the schema made) first
        slots, waits = [], []
        for i in range(6):
            asked = time.monotonic()
            waits.append((one if i % 2 else two).take_token("smtp", rate=10.0))
            slots.append(asked + waits[-1])  # when this taker may send
    # whoever asks, no two takers get slots closer than 1/rate (asking costs milliseconds, so
    # most of them had to wait for theirs)
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    assert all(g > 0.08 for g in gaps), gaps
    assert waits[0] == 0.0 and sum(1 for w in waits if w > 0.02) >= 3, waits


def test_advisory_lock_is_one_holder_per_schema(pg_database: PostgresDatabase,
                                                tmp_path: Path) -> None:
    with AdvisoryLock(pg_database):
        with pytest.raises(LockedError, match=r"another digest process \(server pid \d+"):
            AdvisoryLock(pg_database).acquire()
    with AdvisoryLock(pg_database) as lock:  # released with its connection
        assert lock.held


def test_a_dropped_connection_is_mended(pg_database: PostgresDatabase) -> None:
    name = f"victim-{uuid.uuid4().hex[:8]}"  # only this ledger's session is terminated
    with PostgresLedger(PostgresDatabase(f"{pg_database.url}&application_name={name}")
                        ) as ledger:
        ledger.suppress("a@x.org", now=NOW)
        with psycopg.connect(pg_database.url, autocommit=True) as admin:
            killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM "
                                   "pg_stat_activity WHERE application_name = %s",
                                   (name,)).fetchone()
        assert killed == (1,)
        assert ledger.is_suppressed("a@x.org")  # reconnected, ran once more
        ledger.begin("b@x.org", ED, message_id="<m@x>", papers=(), data=None, now=NOW)
        assert ledger.get("b@x.org", ED) is not None


CLAIMER = """
import json, sys, uuid
from datetime import date, datetime, timezone
from digest.ledger import PostgresLedger
from digest.models import PostgresDatabase
now = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
me = uuid.uuid4().hex
won = []
with PostgresLedger(PostgresDatabase(sys.argv[1])) as ledger:
    sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
    for i in range(int(sys.argv[2])):
        email = f"r{i}@x.org"
        claim = ledger.claim(email, date(2026, 11, 25), token=me, lease=300, run="r", now=now)
        if claim is None:
            continue
        ledger.begin(email, claim.edition, message_id=f"<{i}@x>", papers=(), data=None, now=now)
        won.append(email)  # "sent" here: the one claimant
        ledger.mark_sent(email, claim.edition, now=now)
print(json.dumps(won))
"""


def test_claim_race_between_processes_sends_each_edition_once(
        ledger: PostgresLedger, pg_database: PostgresDatabase) -> None:
    count = 1000
    ledger.enqueue([(f"r{i}@x.org", ED) for i in range(count)], run="r", now=NOW)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, pg_database.url, str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    for p in procs:  # all connected, then all start at once
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    wins = [json.loads(p.communicate(timeout=240)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    counted = Counter(email for won in wins for email in won)
    assert len(counted) == count and set(counted.values()) == {1}
    assert sum(1 for won in wins if won) >= 2, [len(w) for w in wins]  # they really raced
    (status,) = ledger.status()
    assert (status.sent, status.queued, status.sending) == (count, 0, 0)
    assert all(r.attempts == 1 for r in ledger.rows())



def test_every_statement_is_planned_for_its_own_values(ledger: PostgresLedger) -> None:
    """psycopg prepares a statement from its 5th run and PostgreSQL would then settle on one
    generic plan, made while the deliveries were few and kept as they grew (a run's update
    per row 0.1 -> 0.85 ms at 6,000 rows): the ledger's connection plans each run instead."""
    ledger.get("a@x.org", ED)  # connected
    conn = ledger._conn
    assert conn is not None
    assert conn.execute("SHOW plan_cache_mode").fetchone() == ("force_custom_plan",)
