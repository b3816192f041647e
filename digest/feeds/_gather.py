"""A run's papers from every configured feed, merged, with a report per feed.

``settings.feeds`` (or the single ``settings.feed``) are fetched for the fetch day (``now``'s UTC
date), each tagged with its name (``Paper.feeds``) so a subscriber's ``feeds:`` can pick, then
merged: the same paper from two feeds is one paper carrying both feeds, both sets of links and
the Hugging Face upvotes. A day's answer is stored beside the database and reused: a feed is
fetched once per fetch day once its listing is out (``final``), and at most once per
``RECHECK`` while it is not (today's arXiv list before the announcement); a failure is shared
by the runs of the next ``DOWN_RECHECK`` (a burst of fires asks a failing service once). A
feed that fails is
reported ``down`` and the others still make the run; only when every feed of several fails
(or the only feed) does the run fail with ``FeedError``, as it did with one feed.

May import: the feeds stage, ``digest.models``, ``digest.errors``. httpx only through ``_live``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import FeedError
from digest.feeds._cache import DayCache, DayEntry, HttpCache, cache_dir
from digest.feeds._parse import merge_papers, parse_json
from digest.feeds._write import paper_to_dict
from digest.models import FeedReport, FeedSettings, FeedState, Paper, PostgresDatabase, Settings

if TYPE_CHECKING:
    import httpx

    from digest.feeds._http import RetryPolicy
    from digest.feeds._live import Endpoints, Getters

log = logging.getLogger(__name__)

RECHECK = timedelta(hours=1)  # a listing not out yet is asked again after this long
DOWN_RECHECK = timedelta(minutes=5)  # a feed that failed: runs this close share the failure
WALK_BACK_DAYS = 7  # weekends and holidays leave days with no list; a week covers any of them


@dataclass(frozen=True)
class Gathered:
    """The run's papers and how each feed did."""

    papers: tuple[Paper, ...]
    reports: tuple[FeedReport, ...]
    day: date  # the fetch day


def describe_reports(reports: tuple[FeedReport, ...] | list[FeedReport],
                     names: tuple[str, ...] = ()) -> str:
    """``"feeds: hf: empty (weekend ...); bio: down (...); ml: 12 papers (2026-09-24)"``, for
    the feeds in ``names`` (all when empty); "" when there is nothing to say."""
    shown = [r for r in reports if not names or r.name in names]
    if not shown:
        return ""
    return "feeds: " + "; ".join(str(r) + (f", {r.reason}" if r.state == "ok" and r.reason
                                           else "") for r in shown)


def reports_for_day(database: Path | PostgresDatabase, day: date) -> tuple[FeedReport, ...]:
    """What each feed said on fetch day ``day`` (empty if nothing was fetched then, or the
    ledger is in PostgreSQL: the day cache lives beside a SQLite file only)."""
    if not isinstance(database, Path):
        return ()
    return DayCache(cache_dir(database)).reports(day)


def fetch_day(now: datetime) -> date:
    return (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).astimezone(
        timezone.utc).date()


def _tag(papers: tuple[Paper, ...], name: str) -> tuple[Paper, ...]:
    return tuple(dataclasses.replace(p, feeds=(name,)) for p in papers)


def _local(feed: FeedSettings, day: date,
           load: Callable[[Path], tuple[Paper, ...]],
           sample: Callable[[], tuple[Paper, ...]]) -> tuple[tuple[Paper, ...], FeedReport]:
    if feed.source == "sample":
        papers = sample()
    elif feed.path is None:
        raise FeedError("settings.feed", "source 'file' needs a path")
    else:
        papers = load(feed.path)
    state: FeedState = "ok" if papers else "empty"
    return papers, FeedReport(feed.label, feed.source, state, len(papers), day,
                              "" if papers else "the file has no papers")


def gather(settings: Settings, now: datetime, *,
           load: Callable[[Path], tuple[Paper, ...]],
           sample: Callable[[], tuple[Paper, ...]],
           client: httpx.Client | None = None, endpoints: Endpoints | None = None,
           retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic, use_cache: bool = True) -> Gathered:
    """Every configured feed for ``now``'s fetch day (see the module docstring)."""
    day = fetch_day(now)
    today = day
    feeds = settings.feed_list
    local = settings.database if isinstance(settings.database, Path) else None
    folder = cache_dir(local or Path("digest.db"))
    # A loaded config's database is absolute; Settings built in code with the relative
    # default (a library caller, a test) get no cache rather than one in the working folder,
    # and a PostgreSQL ledger has no folder beside it.
    use_cache = use_cache and local is not None and local.is_absolute()
    days = DayCache(folder) if use_cache else None
    results: list[tuple[tuple[Paper, ...], FeedReport]] = []
    live = [f for f in feeds if f.source not in ("sample", "file")]
    getters: Getters | None = None
    owned: httpx.Client | None = None
    try:
        for feed in feeds:
            if feed.source in ("sample", "file"):
                results.append(_local(feed, day, load, sample))
                continue
            held = days.get(day, feed.label) if days is not None else None
            age = now - held.fetched_at if held is not None else RECHECK
            if held is not None and timedelta(0) <= age and (
                    age < DOWN_RECHECK if held.report.state == "down"
                    else held.final or age < RECHECK):
                papers = parse_json(held.papers, f"{folder}/day-{day}.json") \
                    if held.papers else ()
                results.append((papers, held.report))
                continue
            if getters is None:
                getters, owned = _getters(feeds, client, retry, sleep, clock)
            from digest.feeds._live import Endpoints, fetch_feed

            papers, report, final = fetch_feed(
                feed, day, today, getters, endpoints=endpoints or Endpoints(),
                walk_back=WALK_BACK_DAYS, http_cache=HttpCache(folder) if use_cache else None)
            if days is not None:  # a down feed too: `digest history` tells why, later
                days.put(day, DayEntry(report, [paper_to_dict(p) for p in papers], now, final))
            results.append((papers, report))
    finally:
        if owned is not None:
            owned.close()
    reports = tuple(r for _, r in results)
    for report in reports:
        level = logging.WARNING if report.state == "down" else logging.INFO
        log.log(level, "feed %s", report)
    down = [r for r in reports if r.state == "down"]
    if live and len(down) == len(live) and len(down) == len(feeds):
        if len(down) == 1:
            raise FeedError(*_split(down[0]))
        raise FeedError("settings.feeds", "every feed is down: " + "; ".join(
            f"{r.name}: {r.reason}" for r in down))
    named = bool(settings.feeds)
    papers = merge_papers(*(_tag(p, r.name) if named else p for p, r in results))
    return Gathered(papers, reports, day)


def fetch_one(feed: FeedSettings, day: date, *, walk_back: int = 0,
              client: httpx.Client | None = None, endpoints: Endpoints | None = None
              ) -> tuple[tuple[Paper, ...], FeedReport]:
    """One live feed for ``day``, uncached (``digest fetch``); a ``down`` feed raises
    ``FeedError``, an empty one is zero papers with the report saying why."""
    from digest.feeds._live import Endpoints, fetch_feed

    getters, owned = _getters((feed,), client, None, time.sleep, time.monotonic)
    try:
        papers, report, _final = fetch_feed(feed, day, fetch_day(datetime.now(timezone.utc)),
                                            getters, endpoints=endpoints or Endpoints(),
                                            walk_back=walk_back)
    finally:
        if owned is not None:
            owned.close()
    if report.state == "down":
        raise FeedError(*_split(report))
    return papers, report


def _split(report: FeedReport) -> tuple[str, str]:
    """A down report's ``"<url>: <message>"`` back into FeedError's two parts."""
    where, sep, message = report.reason.partition(": ")
    return (where, message) if sep else (report.name, report.reason)


def _getters(feeds: tuple[FeedSettings, ...], client: httpx.Client | None,
             retry: RetryPolicy | None, sleep: Callable[[float], None],
             clock: Callable[[], float]) -> tuple[Getters, httpx.Client | None]:
    import httpx

    from digest.feeds._http import USER_AGENT, HttpGetter, RetryPolicy
    from digest.feeds._live import Getters

    owned = None
    if client is None:
        timeout = max(f.timeout for f in feeds)
        client = owned = httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT},
                                      limits=httpx.Limits(max_connections=2),
                                      follow_redirects=True)
    policy = retry or RetryPolicy()
    getters = Getters(lambda interval: HttpGetter(client, min_interval=interval, retry=policy,
                                                  sleep=sleep, clock=clock))
    return getters, owned
