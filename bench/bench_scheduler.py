"""Scheduler costs at scale: one command, prints a table.

    .venv/bin/python bench/bench_scheduler.py [--subscribers 10000]

Measures, on a real SQLite job store in a temp dir: the first ``digest run`` start (every job
added), a restart with nothing changed (every job kept: the catch-up-preserving path), a
restart after 1% of subscribers changed schedule, and ``digest schedule --next 3`` maths for
everyone; plus the process's peak RSS. Subscribers spread over 24 timezones and 60 distinct
schedules, as a real list would.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from digest.models import Config, Settings, Subscriber
from digest.schedule import upcoming
from digest.schedule._jobs import build_scheduler, jobs_path, reconcile

ZONES = ("UTC", "Europe/London", "Europe/Berlin", "Europe/Helsinki", "Asia/Kolkata",
         "Asia/Tokyo", "Asia/Shanghai", "Australia/Sydney", "Pacific/Auckland",
         "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
         "America/Sao_Paulo", "Africa/Lagos", "Africa/Nairobi", "Asia/Dubai", "Asia/Singapore",
         "Europe/Madrid", "Europe/Moscow", "America/Toronto", "America/Mexico_City",
         "Asia/Seoul", "Pacific/Honolulu")
SCHEDULES = tuple(f"{m} {h} * * {d}" for m in (0, 30) for h in (6, 7, 8, 9, 12)
                  for d in ("*", "mon-fri", "1,3,5", "sun", "sat,sun", "1-4"))


def subscribers(n: int) -> tuple[Subscriber, ...]:
    return tuple(Subscriber(email=f"user{i}@example.org", name=None,
                            timezone=ZONES[i % len(ZONES)],
                            schedule=SCHEDULES[(i * 7) % len(SCHEDULES)],
                            max_papers=10, topics=()) for i in range(n))


def timed_reconcile(config: Config) -> tuple[float, str]:
    scheduler = build_scheduler(jobs_path(config.settings))
    scheduler.start(paused=True)
    try:
        start = time.perf_counter()
        changes = reconcile(scheduler, config)
        return time.perf_counter() - start, str(changes)
    finally:
        scheduler.shutdown(wait=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    n = parser.parse_args().subscribers
    subs = subscribers(n)
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        settings = Settings(database=Path(tmp) / "digest.db")
        config = Config(path=Path(tmp) / "subscribers.yaml", settings=settings,
                        subscribers=subs)
        seconds, what = timed_reconcile(config)
        rows.append(("first start (add every job)", seconds, what))
        seconds, what = timed_reconcile(config)
        rows.append(("restart, nothing changed", seconds, what))
        changed = tuple(replace(s, schedule="15 10 * * *") if i % 100 == 0 else s
                        for i, s in enumerate(subs))
        seconds, what = timed_reconcile(replace(config, subscribers=changed))
        rows.append(("restart, 1% rescheduled", seconds, what))
        size = jobs_path(settings).stat().st_size
    start = time.perf_counter()
    table = upcoming(subs, datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 3)
    rows.append(("digest schedule --next 3", time.perf_counter() - start,
                 f"{sum(len(r.runs) for r in table)} send times"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"{n:,} subscribers, job store {size / 1e6:.1f} MB, peak RSS {peak:.0f} MB")
    print(f"{'step':<30} {'seconds':>8} {'per subscriber':>15}  result")
    for name, seconds, what in rows:
        print(f"{name:<30} {seconds:>8.2f} {seconds / n * 1e3:>12.3f} ms  {what}")


if __name__ == "__main__":
    main()
