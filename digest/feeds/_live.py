"""The live listings added to the HTTP feeds: arXiv's RSS announcements by category, and the
bioRxiv/medRxiv details API paged by cursor; and one call, ``fetch_feed``, that fetches any
configured live feed for a day and says how it went (a ``FeedReport``).

arXiv's terms: at most one request every 3 seconds (one getter paces every arXiv request of a
run, RSS and API alike), a descriptive User-Agent, and conditional requests: the RSS feed is
asked with ``If-None-Match``/``If-Modified-Since`` from the validators kept beside the
database, and a ``304`` reuses the stored body. bioRxiv publishes no limit; we keep to one
request a second.

May import: httpx, the feeds stage's parsers and getter, ``digest.models``, ``digest.errors``.
The endpoints are a parameter (``Endpoints``): tests point them at a local server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from digest.errors import FeedError
from digest.feeds._cache import HttpCache
from digest.feeds._http import (
    ARXIV_INTERVAL,
    ArxivSource,
    Fetched,
    HttpGetter,
    HuggingFaceSource,
    PaperSource,
    display_url,
    fetch_latest,
)
from digest.feeds._rss import parse_listing
from digest.feeds._rxiv import NO_POSTS, Record, latest, parse_details, subject_key
from digest.models import FeedReport, FeedSettings, Paper

log = logging.getLogger(__name__)

RXIV_INTERVAL = 1.0  # seconds between bioRxiv/medRxiv requests (no published limit)
MAX_PAGES = 100  # a day of bioRxiv is a few hundred records; this bounds a runaway cursor
WEEKEND = "weekend (no announcements on Saturdays and Sundays)"


@dataclass(frozen=True)
class Endpoints:
    """Where each service lives (the real ones by default)."""

    huggingface: str = "https://huggingface.co/api/daily_papers"
    arxiv_api: str = "https://export.arxiv.org/api/query"
    arxiv_rss: str = "https://rss.arxiv.org/rss"
    rxiv: str = "https://api.biorxiv.org/details"

    @classmethod
    def at(cls, base: str) -> Endpoints:
        """Every service under one base URL (a local test server)."""
        base = base.rstrip("/")
        return cls(f"{base}/api/daily_papers", f"{base}/api/query", f"{base}/rss",
                   f"{base}/details")


class ArxivRssSource:
    """``rss.arxiv.org/rss/<cat>+<cat>``: the latest announcement of those categories."""

    name = "arxiv_rss"

    def __init__(self, http: HttpGetter, categories: tuple[str, ...], *, cross: bool = False,
                 base: str = Endpoints.arxiv_rss, cache: HttpCache | None = None,
                 limit: int = 2000) -> None:
        if not categories:
            raise FeedError("feed.categories", "source arxiv_rss needs at least one category")
        self.http, self.cross, self.cache, self.limit = http, cross, cache, limit
        self.url = f"{base.rstrip('/')}/{'+'.join(categories)}"

    def fetch_listing(self, day: date) -> Fetched:
        """The latest announcement (``day`` stands in if the channel has no date)."""
        headers: dict[str, str] = {}
        held = self.cache.get(self.url) if self.cache is not None else None
        if held is not None:
            if held.etag:
                headers["If-None-Match"] = held.etag
            if held.last_modified:
                headers["If-Modified-Since"] = held.last_modified
        response = self.http.get(self.url, {}, headers or None)
        unchanged = response.status_code == 304 and held is not None
        body = held.body if unchanged and held is not None else response.content
        if unchanged:
            log.info("%s: not modified since the last fetch", self.url)
        listing = parse_listing(body, self.url, cross=self.cross)
        if self.cache is not None and not unchanged:
            # only a body that parsed is kept: a cut-off answer must not become "not modified"
            self.cache.put(self.url, response.headers.get("ETag"),
                           response.headers.get("Last-Modified"), body)
        return Fetched(listing.papers[: self.limit], listing.day or day, self.name)


class RxivSource:
    """``api.biorxiv.org/details/<server>/<day>/<day>/<cursor>/json``, every page."""

    def __init__(self, http: HttpGetter, server: str, *, subjects: tuple[str, ...] = (),
                 revisions: bool = False, base: str = Endpoints.rxiv, limit: int = 2000) -> None:
        self.http, self.name, self.subjects = http, server, subjects
        self.revisions, self.base, self.limit = revisions, base.rstrip("/"), limit

    def fetch(self, day: date) -> tuple[Paper, ...]:
        records: list[Record] = []
        cursor = 0
        # The API filters on one subject (and silently ignores a name it does not know, so
        # the records are filtered again below); several subjects: fetch all, filter here.
        params = {"category": subject_key(self.subjects[0]).replace(" ", "_")} \
            if len(self.subjects) == 1 else {}
        for _page in range(MAX_PAGES):
            url = f"{self.base}/{self.name}/{day.isoformat()}/{day.isoformat()}/{cursor}/json"
            full = display_url(url, params)
            response = self.http.get(url, params)
            if not response.content.strip():
                raise FeedError(full, f"an empty answer (HTTP {response.status_code} with no "
                                      "body)")
            try:
                data = json.loads(response.content)
            except ValueError as exc:
                raise FeedError(full, f"malformed JSON (a cut-off answer?): {exc}") from None
            page = parse_details(data, full, server=self.name)
            records.extend(page.records)
            if page.status == NO_POSTS or not page.count:
                break
            cursor += page.count
            if page.total is None or cursor >= page.total:
                break
        else:
            log.warning("%s: stopped after %d pages", self.name, MAX_PAGES)
        return latest(records, revisions=self.revisions, subjects=self.subjects)[: self.limit]


@dataclass
class Getters:
    """One paced getter per service for a whole run, shared by every feed that uses it."""

    make: Callable[[float], HttpGetter]
    made: dict[str, HttpGetter] = field(default_factory=dict)

    def for_(self, service: str, interval: float) -> HttpGetter:
        if service not in self.made:
            self.made[service] = self.make(interval)
        return self.made[service]


def _why_nothing(feed: FeedSettings, day: date, today: date, announced: bool) -> str:
    """Why ``feed`` has nothing for ``day``; ``announced``: the service published ``day``'s
    listing and it is empty (arXiv RSS says so with the channel's date)."""
    if feed.source in ("biorxiv", "medrxiv"):
        return f"no preprints posted on {day}" + (" yet" if day >= today else "")
    if day.weekday() >= 5:
        return WEEKEND
    if announced or day < today:
        return f"holiday (nothing was announced on {day})"
    return f"not yet announced (nothing listed for {day} yet)"


def fetch_feed(feed: FeedSettings, day: date, today: date, getters: Getters, *,
               endpoints: Endpoints = Endpoints(), walk_back: int = 0,
               http_cache: HttpCache | None = None) -> tuple[tuple[Paper, ...], FeedReport, bool]:
    """One live feed for ``day``: its papers, its report and whether the answer is final (the
    day's listing is out, or the day will have none). A failure is a ``down`` report (with the
    error), not an exception: the caller decides what a down feed means."""
    name = feed.label
    try:
        source: PaperSource
        if feed.source == "arxiv_rss":
            rss = ArxivRssSource(getters.for_("arxiv", ARXIV_INTERVAL), feed.categories,
                                 cross=feed.cross, base=endpoints.arxiv_rss, cache=http_cache,
                                 limit=feed.limit)
            fetched = rss.fetch_listing(day)
        else:
            if feed.source == "huggingface":
                source = HuggingFaceSource(getters.for_("huggingface", 0.0), limit=feed.limit,
                                           url=endpoints.huggingface)
            elif feed.source == "arxiv":
                source = ArxivSource(getters.for_("arxiv", ARXIV_INTERVAL), feed.categories,
                                     limit=feed.limit, url=endpoints.arxiv_api)
            elif feed.source in ("biorxiv", "medrxiv"):
                source = RxivSource(getters.for_("rxiv", RXIV_INTERVAL), feed.source,
                                    subjects=feed.categories, revisions=feed.revisions,
                                    base=endpoints.rxiv, limit=feed.limit)
            else:
                raise FeedError(name, f"{feed.source} is not a live feed")
            fetched = fetch_latest(source, day, walk_back=walk_back)
    except FeedError as exc:
        return (), FeedReport(name, feed.source, "down", 0, day, str(exc)), False
    announced = feed.source == "arxiv_rss" and fetched.day >= day
    dated = feed.source in ("biorxiv", "medrxiv")
    if not fetched.papers:
        reason = _why_nothing(feed, day, today, announced)
        final = announced or day < today or (day.weekday() >= 5 and not dated)
        return (), FeedReport(name, feed.source, "empty", 0, day, reason), final
    note = ""
    if fetched.day < day:  # the day's list is not out (or there is none): an earlier day's
        note = f"{_why_nothing(feed, day, today, False)}; latest listing is {fetched.day}"
    final = fetched.day >= day or day < today
    report = FeedReport(name, feed.source, "ok", len(fetched.papers), fetched.day, note)
    return fetched.papers, report, final
