"""A job store written before triggers pickled as their value loads, fires and is written back
by today's code: fixtures/jobs-fields-pickled.db, made by make_old_jobs_store.py with commit
35f0202's code (each trigger pickled field by field), on the REAL SQLite store."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apscheduler.executors.base as executors_base
import apscheduler.schedulers.base as schedulers_base
import make_old_jobs_store as made
import pytest
from test_cron import chained_fires
from apscheduler.triggers.date import DateTrigger

from digest.cron import cron_trigger
from digest.schedule._jobs import build_scheduler, reconcile

FIXTURE = Path(__file__).parent / "fixtures" / "jobs-fields-pickled.db"
EMAILS = {email for email, _, _ in made.SUBSCRIBERS}
RETRY_ID = made.RETRY[0]
# the nights the clocks change in Berlin and New York, 2026, and a quiet week
STARTS = [datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 3, 28, 12, tzinfo=UTC),
          datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 10, 31, 12, tzinfo=UTC),
          datetime(2026, 7, 1, tzinfo=UTC)]


def fires(trigger: Any, n: int = 30) -> list[datetime]:
    """``n`` fires from each start, each searched from the one before, as UTC instants."""
    return chained_fires(trigger, STARTS, n)


def blobs(jobs: Path) -> dict[str, bytes]:
    with sqlite3.connect(jobs) as db:
        return {row[0]: bytes(row[1]) for row in db.execute(
            "SELECT id, job_state FROM apscheduler_jobs")}


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    path = tmp_path / "digest.db.jobs"
    shutil.copy(FIXTURE, path)
    return path


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """APScheduler's clock (its loop's and the misfire check's ``datetime.now``) reads
    ``clock[0]``, as shifted_run.py rebinds it."""
    reading = [made.MADE_AT]

    class _Stopped(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return reading[0].astimezone(tz)

    monkeypatch.setattr(schedulers_base, "datetime", _Stopped)
    monkeypatch.setattr(executors_base, "datetime", _Stopped)
    yield reading


def test_the_fixture_holds_triggers_pickled_field_by_field(jobs: Path) -> None:
    """The premise: every cron job of the fixture is in the old form."""
    stored = blobs(jobs)
    assert set(stored) == EMAILS | {RETRY_ID}
    for email in EMAILS:
        assert b"apscheduler.triggers.cron.fields" in stored[email]
        assert b"_wall_clock" not in stored[email]


def test_old_jobs_load_and_fire_as_fresh_triggers_do(jobs: Path, tmp_path: Path,
                                                     clock: list[datetime]) -> None:
    before = blobs(jobs)
    scheduler = build_scheduler(jobs)
    scheduler.start(paused=True)
    try:
        loaded = {job.id: job for job in scheduler.get_jobs()}
        assert set(loaded) == EMAILS | {RETRY_ID}
        for email, schedule, tz in made.SUBSCRIBERS:
            fresh = cron_trigger(schedule, tz)
            job = loaded[email]
            assert job.next_run_time == fresh.get_next_fire_time(None, made.MADE_AT)
            assert fires(job.trigger) == fires(fresh)
        retry = loaded[RETRY_ID]
        assert isinstance(retry.trigger, DateTrigger)
        assert (retry.next_run_time, retry.kwargs["run_time"]) == made.RETRY[1:]
        # the same config: every job kept as stored, none rewritten
        changes = reconcile(scheduler, made.config(tmp_path / "digest.db"))
        assert (set(changes.kept), changes.added, changes.changed, changes.removed) == (
            EMAILS, (), (), ())
    finally:
        scheduler.shutdown(wait=False)
    assert blobs(jobs) == before


def test_a_pass_fires_old_jobs_and_stores_them_as_values(jobs: Path,
                                                          clock: list[datetime]) -> None:
    """A processing pass after Berlin's spring-forward night: the jobs due (from the old
    pickles) fire once each, and are written back in the new form, moved on to their next
    fire; the ones not due are left as they were."""
    clock[0] = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    before = blobs(jobs)
    fired: list[tuple[str, datetime]] = []
    four = threading.Event()

    def on_submit(email: str, run_time: datetime) -> None:
        fired.append((email, run_time.astimezone(UTC)))
        if len(fired) >= 4:
            four.set()

    scheduler = build_scheduler(jobs, on_submit=on_submit)
    scheduler.start(paused=True)
    try:
        scheduler.resume()
        assert four.wait(10), fired
        scheduler.hold()  # the pass, and its write, are over
    finally:
        scheduler.shutdown(wait=False)
    assert sorted(fired) == sorted([
        ("daily@example.org", datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
        ("skipped@example.org", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),  # 03:30 CEST
        ("hourly@example.org", datetime(2026, 3, 29, 7, 30, tzinfo=UTC)),  # the latest, once
        ("daily@example.org", made.RETRY[2]),  # the retry job, for the run it stands for
    ])
    after = blobs(jobs)
    assert set(after) == EMAILS  # the retry job is done
    moved = {"daily@example.org", "skipped@example.org", "hourly@example.org"}
    for email in EMAILS:
        if email in moved:
            assert b"_wall_clock" in after[email]
            assert b"apscheduler.triggers.cron.fields" not in after[email]
        else:
            assert after[email] == before[email]
    scheduler = build_scheduler(jobs)
    scheduler.start(paused=True)
    try:
        loaded = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    for email, schedule, tz in made.SUBSCRIBERS:
        fresh = cron_trigger(schedule, tz)
        assert fires(loaded[email].trigger) == fires(fresh)
        assert loaded[email].next_run_time == fresh.get_next_fire_time(None, clock[0])
        assert loaded[email].kwargs == {"email": email}  # the fire's run time not stored
