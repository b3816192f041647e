"""Live paper feeds over HTTP: the Hugging Face Daily Papers API and the arXiv API.

Owns: the polite HTTP getter (timeouts, bounded retries with exponential backoff on 429, 5xx and
transport errors, a minimum interval between requests for arXiv's one-request-per-3-seconds
rule, one connection), the two live sources, and the walk back over days that have no list
yet (today's list may not exist at 6 am; weekends are empty). Every failure becomes one
``FeedError`` line naming the URL.

May import: httpx, ``digest.feeds`` (the parsers), ``digest.models``, ``digest.errors``. It is
the live half of the feeds stage: only ``feeds.papers_for`` (lazily) and the CLI import it.
The ``httpx.Client``, the sleep and the clock are injected, so tests serve recorded payloads
through ``httpx.MockTransport`` and never wait or touch the internet.
"""

from __future__ import annotations

import json
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import metadata
from typing import Protocol

import httpx

from digest.errors import FeedError
from digest.feeds._parse import ATOM, fold_ws, merge_papers, parse_payload
from digest.models import FeedSettings, Paper

log = logging.getLogger(__name__)

HF_URL = "https://huggingface.co/api/daily_papers"
ARXIV_URL = "https://export.arxiv.org/api/query"
ARXIV_INTERVAL = 3.0  # seconds between arXiv API requests, per arXiv's terms of use
try:  # identify ourselves politely; arXiv's terms ask for a descriptive User-Agent
    _VERSION = metadata.version("paper-digest")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    _VERSION = "dev"
USER_AGENT = (f"paper-digest/{_VERSION} (self-hosted daily paper email digests; "
              "one fetch per feed per day)")
_CATEGORY = re.compile(r"^[a-z-]+(\.[A-Za-z-]+)?$")

Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    backoff: float = 1.0  # first wait in seconds; doubles after each failed try
    max_wait: float = 60.0  # cap on any one wait, Retry-After included


@dataclass(frozen=True)
class Fetched:
    """What a live fetch returned: the papers and the day whose list they are."""

    papers: tuple[Paper, ...]
    day: date
    source: str


class HttpGetter:
    """GET with retries and a minimum interval between requests (also between retries)."""

    def __init__(self, client: httpx.Client, *, min_interval: float = 0.0,
                 retry: RetryPolicy = RetryPolicy(), sleep: Sleep = time.sleep,
                 clock: Clock = time.monotonic) -> None:
        self.client, self.min_interval, self.retry = client, min_interval, retry
        self.sleep, self.clock = sleep, clock
        self.requests = 0
        self._last: float | None = None

    def _delay(self, wait: float) -> float:
        """How long to wait before the next request: ``wait``, or longer to keep the pace."""
        if self._last is None:
            return wait
        return max(wait, self.min_interval - (self.clock() - self._last))

    def get(self, url: str, params: dict[str, str],
            headers: dict[str, str] | None = None) -> httpx.Response:
        """A 2xx (or, for a conditional request, 304) response, or ``FeedError`` naming the
        full URL. An HTML page where a feed was expected (a proxy's or portal's error page,
        often served with 200) is retried like a 503."""
        full = display_url(url, params)
        host = httpx.URL(url).host
        wait, problem = 0.0, ""
        for attempt in range(self.retry.attempts):
            delay = self._delay(wait)
            if attempt:
                log.warning("%s: %s; retrying in %.0f s", full, problem, delay)
            if delay > 0:
                self.sleep(delay)
            self._last = self.clock()
            wait = min(self.retry.backoff * 2 ** attempt, self.retry.max_wait)
            self.requests += 1
            try:
                response = self.client.get(url, params=params, headers=headers)
            except httpx.TransportError as exc:  # DNS, refused, TLS, timeouts
                detail = fold_ws(str(exc)) or type(exc).__name__
                problem = f"cannot reach {host}: {detail}"
                continue
            except httpx.HTTPError as exc:
                raise FeedError(full, f"request failed: {fold_ws(str(exc))}") from None
            if response.status_code == 304 and headers:
                return response
            if response.is_success:
                page = _html_title(response)
                if page is None:
                    return response
                problem = f"HTTP {response.status_code} but an HTML page ({page}), not the feed"
                continue
            problem = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            if response.status_code == 429 or response.status_code >= 500:
                wait = max(wait, min(_retry_after(response), self.retry.max_wait))
                continue
            _raise_http_error(response, full, problem)
        raise FeedError(full, f"{problem} (gave up after {self.retry.attempts} attempts)")


def _html_title(response: httpx.Response) -> str | None:
    """``"title: ..."`` if the body is an HTML page, else None. Judged by the body, not the
    Content-Type: some APIs label their JSON text/html."""
    head = response.content[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head.startswith((b"<!doctype html", b"<html")):
        return None
    match = re.search(rb"<title>(.*?)</title>", response.content[:4096], re.I | re.S)
    title = fold_ws(match.group(1).decode("utf-8", "replace")) if match else ""
    return f"title: {title}" if title else "untitled"


def display_url(url: str, params: dict[str, str]) -> str:
    """The request URL as a person reads it (not percent-encoded), for messages."""
    return f"{url}?{'&'.join(f'{k}={v}' for k, v in params.items())}" if params else url


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:  # the HTTP-date form: fall back to our own backoff
        return 0.0


def _raise_http_error(response: httpx.Response, full: str, problem: str) -> None:
    """A 4xx: arXiv sends an Atom error entry (HTTP 400), HF a JSON ``{"error": ...}``; show the
    service's own message when there is one, else the status line."""
    message = _service_message(response.content)
    raise FeedError(full, f"{problem}: {message}" if message else problem)


def _service_message(body: bytes) -> str | None:
    try:
        data = json.loads(body)
        return fold_ws(data["error"]) if isinstance(data, dict) and isinstance(
            data.get("error"), str) else None
    except (ValueError, RecursionError):
        pass
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for entry in root.iter(f"{ATOM}entry"):
        if "/api/errors" in (entry.findtext(f"{ATOM}id") or ""):
            return "arXiv API error: " + fold_ws(entry.findtext(f"{ATOM}summary") or "unknown")
    return None


class PaperSource(Protocol):
    """A live feed that lists papers by day."""

    name: str

    def fetch(self, day: date) -> tuple[Paper, ...]: ...


class HuggingFaceSource:
    """``GET /api/daily_papers?date=YYYY-MM-DD&limit=N``: the day's trending list (UTC date)."""

    name = "huggingface"

    def __init__(self, http: HttpGetter, *, limit: int = 100, url: str = HF_URL) -> None:
        self.http, self.limit, self.url = http, limit, url

    def fetch(self, day: date) -> tuple[Paper, ...]:
        params = {"date": day.isoformat(), "limit": str(self.limit)}
        response = self.http.get(self.url, params)
        # the 2024 shape has no submittedOnDailyAt: the day we asked for is the list's day
        return parse_payload(response.content, display_url(self.url, params), listed=day)


class ArxivSource:
    """The arXiv API: papers in ``categories`` submitted on ``day`` (UTC), newest first, in
    pages, at most one request per ``ARXIV_INTERVAL`` seconds (enforced by the getter)."""

    name = "arxiv"

    def __init__(self, http: HttpGetter, categories: Sequence[str], *, limit: int = 100,
                 page_size: int = 200, url: str = ARXIV_URL) -> None:
        bad = [c for c in categories if not _CATEGORY.match(c)]
        if bad or not categories:
            listed = ", ".join(bad) or "(none)"
            raise FeedError("feed.categories", f"not arXiv categories: {listed}")
        self.http, self.categories = http, tuple(categories)
        self.limit, self.page_size, self.url = limit, page_size, url

    def fetch(self, day: date) -> tuple[Paper, ...]:
        stamp = day.strftime("%Y%m%d")
        cats = " OR ".join(f"cat:{c}" for c in self.categories)
        query = f"({cats}) AND submittedDate:[{stamp}0000 TO {stamp}2359]"
        papers: list[Paper] = []
        start = 0
        while start < self.limit:
            size = min(self.page_size, self.limit - start)
            params = {"search_query": query, "start": str(start), "max_results": str(size),
                      "sortBy": "submittedDate", "sortOrder": "descending"}
            response = self.http.get(self.url, params)
            page = parse_payload(response.content, display_url(self.url, params))
            papers.extend(page)
            start += size
            if len(page) < size:  # the last page (a skipped bad entry may end paging early)
                break
        return merge_papers(papers)[: self.limit]


def fetch_latest(source: PaperSource, day: date, *, walk_back: int = 0) -> Fetched:
    """``day``'s papers, or those of the latest earlier day (at most ``walk_back`` days back)
    that has any. Nothing in the whole window is an empty result, logged, not an error."""
    for back in range(walk_back + 1):
        papers = source.fetch(day - timedelta(days=back))
        if papers:
            return Fetched(papers, day - timedelta(days=back), source.name)
    log.warning("%s: no papers listed from %s back to %s", source.name,
                day.isoformat(), (day - timedelta(days=walk_back)).isoformat())
    return Fetched((), day, source.name)


def fetch_papers(source: str, day: date, *, client: httpx.Client | None = None,
                 walk_back: int = 0, categories: Sequence[str] = FeedSettings().categories,
                 limit: int = 100, timeout: float = 30.0, retry: RetryPolicy = RetryPolicy(),
                 sleep: Sleep = time.sleep, clock: Clock = time.monotonic) -> Fetched:
    """Fetch ``source`` ("huggingface" or "arxiv") for ``day``, walking back over empty days.

    Pass ``client`` to reuse a connection or, in tests, an ``httpx.MockTransport``; without one
    a client with ``timeout`` and a single connection is made and closed here."""
    own = client is None
    if client is None:
        client = httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT},
                              limits=httpx.Limits(max_connections=1), follow_redirects=True)
    try:
        paper_source: PaperSource
        if source == "huggingface":
            http = HttpGetter(client, retry=retry, sleep=sleep, clock=clock)
            paper_source = HuggingFaceSource(http, limit=limit)
        elif source == "arxiv":
            http = HttpGetter(client, min_interval=ARXIV_INTERVAL, retry=retry, sleep=sleep,
                              clock=clock)
            paper_source = ArxivSource(http, categories, limit=limit)
        else:
            raise FeedError(source, "not a live feed (expected huggingface or arxiv)")
        return fetch_latest(paper_source, day, walk_back=walk_back)
    finally:
        if own:
            client.close()
