"""The schedule stage: APScheduler jobs from each subscriber's cron schedule and the ``digest run``
daemon.

Edge (clock, job store). May import every stage but the CLI.
"""

from __future__ import annotations

from digest.schedule._daemon import Daemon, fire, utc_now
from digest.schedule._jobs import upcoming

__all__ = ["Daemon", "fire", "upcoming", "utc_now"]
