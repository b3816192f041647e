"""Live feeds through ``httpx.MockTransport`` serving the recorded fixtures: never the
internet, never a real wait (the sleep and the clock are a fake that only counts)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

import httpx
import paths
import pytest

from digest.errors import FeedError
from digest.feeds import fetch_papers, load_papers, merge_papers, papers_for
from digest.feeds._http import (
    ARXIV_INTERVAL,
    ArxivSource,
    Fetched,
    HttpGetter,
    RetryPolicy,
)
from digest.models import FeedSettings, Settings

FIXTURES = paths.FIXTURES
OURS = paths.HANDMADE
HF = (FIXTURES / "hf_daily_papers.json").read_bytes()
DAY = date(2026, 6, 12)

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Recorder:
    """Serves responses from ``handler`` and remembers each request and when it came."""

    def __init__(self, handler: Handler, time: FakeTime) -> None:
        self.handler, self.time = handler, time
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(self.time.now)
        return self.handler(request)


def fetch(handler: Handler, source: str = "huggingface", *, walk_back: int = 0,
          categories: tuple[str, ...] = ("cs.LG",), limit: int = 100
          ) -> tuple[Fetched, Recorder, FakeTime]:
    time = FakeTime()
    rec = Recorder(handler, time)
    with httpx.Client(transport=httpx.MockTransport(rec)) as client:
        result = fetch_papers(source, DAY, client=client, sleep=time.sleep, clock=time.clock,
                              walk_back=walk_back, categories=categories, limit=limit)
    return result, rec, time


def test_huggingface_ok() -> None:
    result, rec, time = fetch(lambda r: httpx.Response(200, content=HF))
    assert len(result.papers) == 9 and result.day == DAY
    (request,) = rec.requests
    assert request.url.host == "huggingface.co" and request.url.path == "/api/daily_papers"
    assert dict(request.url.params) == {"date": "2026-06-12", "limit": "100"}
    assert time.sleeps == []


def test_huggingface_429_then_ok_honours_retry_after(caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "5"}),
                    httpx.Response(200, content=HF)])
    with caplog.at_level(logging.WARNING, logger="digest.feeds"):
        result, rec, time = fetch(lambda r: next(answers))
    assert len(result.papers) == 9
    assert len(rec.requests) == 2 and time.sleeps == [5.0]
    assert "HTTP 429 Too Many Requests; retrying in 5 s" in caplog.text


def test_server_errors_are_retried_with_backoff_then_one_clear_error() -> None:
    time = FakeTime()
    rec = Recorder(lambda r: httpx.Response(503), time)
    with httpx.Client(transport=httpx.MockTransport(rec)) as client, \
            pytest.raises(FeedError) as err:
        fetch_papers("huggingface", DAY, client=client, sleep=time.sleep, clock=time.clock,
                     retry=RetryPolicy(attempts=4, backoff=1.0))
    assert len(rec.requests) == 4 and time.sleeps == [1.0, 2.0, 4.0]  # exponential
    assert str(err.value) == ("https://huggingface.co/api/daily_papers?date=2026-06-12&limit=100:"
                              " HTTP 503 Service Unavailable (gave up after 4 attempts)")


def test_offline_is_one_clear_line() -> None:
    def offline(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution",
                                 request=request)
    time = FakeTime()
    with httpx.Client(transport=httpx.MockTransport(offline)) as client, \
            pytest.raises(FeedError) as err:
        fetch_papers("huggingface", DAY, client=client, sleep=time.sleep, clock=time.clock,
                     retry=RetryPolicy(attempts=2))
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(": cannot reach huggingface.co: [Errno -3] Temporary failure in "
                            "name resolution (gave up after 2 attempts)")
    assert message.startswith("https://huggingface.co/api/daily_papers?date=2026-06-12")


def test_a_timeout_is_retried_like_a_transport_error() -> None:
    answers: list[httpx.Response | Exception] = [httpx.ReadTimeout("timed out"),
                                                 httpx.Response(200, content=HF)]

    def flaky(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    result, rec, time = fetch(flaky)
    assert len(result.papers) == 9 and len(rec.requests) == 2
    assert time.sleeps == [1.0]


def test_arxiv_400_error_body_gives_arxivs_message_without_retrying() -> None:
    body = (FIXTURES / "arxiv_api_error_400.atom.xml").read_bytes()
    time = FakeTime()
    rec = Recorder(lambda r: httpx.Response(400, content=body), time)
    with httpx.Client(transport=httpx.MockTransport(rec)) as client, \
            pytest.raises(FeedError) as err:
        fetch_papers("arxiv", DAY, client=client, sleep=time.sleep, clock=time.clock)
    assert len(rec.requests) == 1
    message = str(err.value)
    # the URL as a person reads it, not percent-encoded
    assert message.startswith("https://export.arxiv.org/api/query?search_query=(cat:cs.LG OR "
                              "cat:cs.CL OR cat:cs.CV OR cat:cs.AI) AND submittedDate:"
                              "[202606120000 TO 202606122359]&start=0&max_results=100")
    assert message.endswith(": HTTP 400 Bad Request: arXiv API error: incorrect id format for abc")


def test_other_client_errors_are_not_retried() -> None:
    time = FakeTime()
    rec = Recorder(lambda r: httpx.Response(404, text="<html>not here</html>"), time)
    with httpx.Client(transport=httpx.MockTransport(rec)) as client, \
            pytest.raises(FeedError, match=r"limit=100: HTTP 404 Not Found$"):
        fetch_papers("huggingface", DAY, client=client, sleep=time.sleep, clock=time.clock)
    assert len(rec.requests) == 1


def test_a_garbled_200_body_names_the_url() -> None:
    with pytest.raises(FeedError, match=r"date=2026-06-12&limit=100: malformed JSON at line 1"):
        fetch(lambda r: httpx.Response(200, content=b"[{"))


def test_arxiv_query_pages_and_paces_requests_three_seconds_apart() -> None:
    page = (FIXTURES / "arxiv_api.atom.xml").read_bytes()  # 5 entries a page
    time = FakeTime()
    rec = Recorder(lambda r: httpx.Response(200, content=page), time)
    with httpx.Client(transport=httpx.MockTransport(rec)) as client:
        http = HttpGetter(client, min_interval=ARXIV_INTERVAL, sleep=time.sleep, clock=time.clock)
        papers = ArxivSource(http, ("cs.LG", "cs.CL"), limit=12, page_size=5).fetch(DAY)
    # the fake serves the same 5 ids on every page: merged, so 5 papers from 3 requests
    assert len(rec.requests) == 3 and len(papers) == 5
    params = [dict(r.url.params) for r in rec.requests]
    assert params[0]["search_query"] == ("(cat:cs.LG OR cat:cs.CL) AND "
                                         "submittedDate:[202606120000 TO 202606122359]")
    assert params[0]["sortBy"] == "submittedDate" and params[0]["sortOrder"] == "descending"
    assert [(p["start"], p["max_results"]) for p in params] == [("0", "5"), ("5", "5"), ("10", "2")]
    assert all(b - a >= ARXIV_INTERVAL for a, b in zip(rec.times, rec.times[1:]))
    assert rec.requests[0].url.host == "export.arxiv.org"


def test_arxiv_stops_at_a_short_page() -> None:
    page = (FIXTURES / "arxiv_api.atom.xml").read_bytes()
    result, rec, _ = fetch(lambda r: httpx.Response(200, content=page), "arxiv", limit=100)
    assert len(rec.requests) == 1 and len(result.papers) == 5


def test_arxiv_retries_also_keep_the_three_second_pace(caplog: pytest.LogCaptureFixture) -> None:
    page = (FIXTURES / "arxiv_api.atom.xml").read_bytes()
    answers = iter([httpx.Response(503), httpx.Response(200, content=page)])
    with caplog.at_level(logging.WARNING, logger="digest.feeds"):
        result, rec, time = fetch(lambda r: next(answers), "arxiv", limit=100)
    assert "HTTP 503 Service Unavailable; retrying in 3 s" in caplog.text
    assert len(result.papers) == 5
    assert rec.times[1] - rec.times[0] >= ARXIV_INTERVAL  # not the 1 s backoff


def test_arxiv_empty_day_walks_back_to_the_latest_day_with_papers() -> None:
    empty = (FIXTURES / "arxiv_api_empty.atom.xml").read_bytes()
    page = (FIXTURES / "arxiv_api.atom.xml").read_bytes()

    def by_day(request: httpx.Request) -> httpx.Response:
        has = "20260610" in request.url.params["search_query"]
        return httpx.Response(200, content=page if has else empty)
    result, rec, _ = fetch(by_day, "arxiv", walk_back=3)
    assert result.day == date(2026, 6, 10) and len(result.papers) == 5
    assert len(rec.requests) == 3


def test_huggingface_walks_back_over_a_weekend() -> None:
    def by_day(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=HF if request.url.params["date"] == "2026-06-12"
                              else b"[]")
    time = FakeTime()
    rec = Recorder(by_day, time)
    with httpx.Client(transport=httpx.MockTransport(rec)) as client:
        result = fetch_papers("huggingface", date(2026, 6, 14), client=client, walk_back=7,
                              sleep=time.sleep, clock=time.clock)
    assert result.day == DAY and len(result.papers) == 9
    assert [r.url.params["date"] for r in rec.requests] == ["2026-06-14", "2026-06-13",
                                                            "2026-06-12"]


def test_nothing_in_the_whole_window_is_empty_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="digest.feeds"):
        result, rec, _ = fetch(lambda r: httpx.Response(200, content=b"[]"), walk_back=2)
    assert result.papers == () and len(rec.requests) == 3
    assert "huggingface: no papers listed from 2026-06-12 back to 2026-06-10" in caplog.text


def test_legacy_hf_items_take_the_requested_day_as_their_list_day() -> None:
    legacy = (FIXTURES / "hf_daily_papers_2024-10-25_legacy.json").read_bytes()
    result, _, _ = fetch(lambda r: httpx.Response(200, content=legacy))
    assert {p.listed for p in result.papers} == {DAY}


def test_dedupe_across_live_huggingface_and_arxiv() -> None:
    overlap = (OURS / "arxiv_overlap.atom.xml").read_bytes()
    hf, _, _ = fetch(lambda r: httpx.Response(200, content=HF))
    ax, _, _ = fetch(lambda r: httpx.Response(200, content=overlap), "arxiv")
    merged = merge_papers(hf.papers, ax.papers)
    assert len(merged) == 9
    msa = next(p for p in merged if p.id == "2606.13392")
    assert msa.upvotes == 103 and msa.categories == ("cs.LG", "cs.CL")


def test_bad_categories_are_refused_before_any_request() -> None:
    with pytest.raises(FeedError, match="not arXiv categories: cs.LG OR all:x"):
        fetch(lambda r: httpx.Response(200), "arxiv", categories=("cs.LG OR all:x",))


def test_papers_for_live_feed_uses_nows_utc_date_and_walks_back() -> None:
    seen: list[str] = []

    def by_day(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["date"])
        return httpx.Response(200, content=HF if request.url.params["date"] == "2026-06-12"
                              else b"[]")
    # 20:30 on the 12th in New York is already the 13th in UTC: the feed day is the UTC date
    now = datetime(2026, 6, 12, 20, 30, tzinfo=ZoneInfo("America/New_York"))
    settings = Settings(feed=FeedSettings(source="huggingface"))
    with httpx.Client(transport=httpx.MockTransport(by_day)) as client:
        papers = papers_for(settings, None, now, client=client)
    assert seen == ["2026-06-13", "2026-06-12"] and len(papers) == 9
    assert papers == load_papers(FIXTURES / "hf_daily_papers.json")
