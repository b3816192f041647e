"""Writes tests/schedule/fixtures/jobs-fields-pickled.db: a job store as ``digest run`` wrote it
before triggers pickled as their value (commit 35f0202 and earlier: each
``WallClockCronTrigger`` pickled field by field, its expressions' objects included), for
test_jobs_store_compat.py. Run with that code on the path, never with today's:

    git worktree add /tmp/old 35f0202
    PYTHONPATH=/tmp/old python tests/schedule/make_old_jobs_store.py

The clock reads ``MADE_AT`` (APScheduler's ``datetime.now`` rebound, as shifted_run.py does),
so the stored next run times are fixed: the night before Berlin springs forward."""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apscheduler.schedulers.base as schedulers_base
from apscheduler.triggers.date import DateTrigger

from digest.models import Config, Settings, Subscriber
from digest.schedule._jobs import FIRE_FUNC, build_scheduler, reconcile

MADE_AT = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
# (email, schedule, timezone): a daily UTC time, a time Berlin's spring-forward skips, the two
# restricted day fields (an OrTrigger of two), a wildcard hour (skip_repeats off), weekdays
SUBSCRIBERS = (
    ("daily@example.org", "0 7 * * *", "UTC"),
    ("skipped@example.org", "30 2 * * *", "Europe/Berlin"),
    ("either@example.org", "0 8 1 * mon", "America/New_York"),
    ("hourly@example.org", "30 * * * *", "America/New_York"),
    ("weekdays@example.org", "15 6 * * mon-fri", "Asia/Kolkata"),
)
CATCH_UP_HOURS = 12
RETRY = ("daily@example.org#retry-2026-03-28", datetime(2026, 3, 29, 6, 0, tzinfo=UTC),
         datetime(2026, 3, 28, 7, 0, tzinfo=UTC))  # (id, when, the run time it stands for)
OUT = Path(__file__).parent / "fixtures" / "jobs-fields-pickled.db"


def config(database: Path) -> Config:
    from datetime import timedelta

    settings = Settings(sender="Digest <digest@example.org>", database=database,
                        catch_up=timedelta(hours=CATCH_UP_HOURS))
    subs = tuple(Subscriber(email=email, name=None, timezone=tz, schedule=schedule,
                            max_papers=5, topics=()) for email, schedule, tz in SUBSCRIBERS)
    return Config(settings=settings, subscribers=subs, path=Path("subscribers.yaml"))


def main() -> None:
    class _Made(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return MADE_AT.astimezone(tz)

    schedulers_base.datetime = _Made  # type: ignore[misc]
    with tempfile.TemporaryDirectory() as tmp:
        jobs = Path(tmp) / "digest.db.jobs"
        scheduler = build_scheduler(jobs)
        scheduler.start(paused=True)
        reconcile(scheduler, config(Path(tmp) / "digest.db"))
        retry_id, when, run_time = RETRY
        scheduler.add_job(FIRE_FUNC, DateTrigger(when), id=retry_id, name="retry daily",
                          kwargs={"email": "daily@example.org", "run_time": run_time},
                          misfire_grace_time=None, coalesce=True)
        scheduler.shutdown(wait=False)
        scheduler._jobstores["default"].engine.dispose()  # the WAL checkpointed into the file
        OUT.parent.mkdir(exist_ok=True)
        shutil.copy(jobs, OUT)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
