"""``digest run`` with a shifted clock, for end-to-end tests: ``python shifted_run.py START
--config FILE``. The clock reads START now and runs on at real speed, for the daemon (injected
as its ``clock``) and for APScheduler (its scheduler loop and misfire check read
``datetime.now`` at module level, so those two names are rebound here, in the test process).
Lets a test fire a 08:00 schedule seconds after start instead of waiting for the wall clock."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apscheduler.executors.base as executors_base
import apscheduler.schedulers.base as schedulers_base

from digest.cli.cmd_run import run_daemon
from digest.errors import DigestError


def shift_clock(start: datetime) -> Any:
    offset = start - datetime.now(UTC)

    class _Shifted(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + offset

    schedulers_base.datetime = _Shifted  # type: ignore[misc]
    executors_base.datetime = _Shifted  # type: ignore[misc]
    return lambda: datetime.now(UTC) + offset


def main(argv: list[str]) -> int:
    start, flag, config = argv
    assert flag == "--config", argv
    try:
        run_daemon(Path(config), verbose=False, clock=shift_clock(datetime.fromisoformat(start)))
    except DigestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
