"""Live feeds against a real HTTP server on 127.0.0.1 serving the recorded payloads: arXiv RSS
listings (new, cross, no replacements; conditional GET; arXiv's pace), bioRxiv/medRxiv details
(DOI ids, latest version, paging), several feeds merged with a report each, the day cache, and
the faults of a network (timeouts, 429 with Retry-After, 503, cut-off bodies, an HTML page
served with 200). Sleeps are recorded, never waited; timeouts are real but short."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import paths
import pytest
from feed_server import FeedServer, Reply, feed_server

from digest.errors import FeedError
from digest.feeds import Endpoints, Gathered, gather_for, load_papers, merge_papers
from digest.feeds._http import USER_AGENT, RetryPolicy
from digest.models import FeedSettings, Settings, Subscriber, Topic
from digest.selection import Selector

UTC = timezone.utc
FIXTURES = paths.FIXTURES
RSS = (FIXTURES / "arxiv_rss.xml").read_bytes()
RSS_LG = (FIXTURES / "arxiv_rss_cs.LG.xml").read_bytes()
RSS_EMPTY = (FIXTURES / "arxiv_rss_physics_2025-12-31_empty.xml").read_bytes()
MEDRXIV = (FIXTURES / "medrxiv_details_2026-09-15.json").read_bytes()
INTEGRON = (FIXTURES / "biorxiv_details_doi_10.1101_2022.09.11.507474.json").read_bytes()
NO_POSTS = (FIXTURES / "biorxiv_details_no_posts_found.json").read_bytes()
NGINX_503 = (FIXTURES / "nginx_503_error_page.html").read_bytes()
HF = (FIXTURES / "hf_daily_papers.json").read_bytes()
FOUR = "cs.LG+cs.AI+cs.CL+stat.ML"
XML = (("Content-Type", "application/rss+xml"),)
JSON = (("Content-Type", "application/json"),)
HTML = (("Content-Type", "text/html"),)
THU = datetime(2026, 9, 24, 9, 0, tzinfo=UTC)  # arxiv_rss.xml's announcement day


class FakeTime:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as s:
        yield s


def run(server: FeedServer, tmp_path: Path, feeds: tuple[FeedSettings, ...], now: datetime, *,
        timeout: float = 5.0, attempts: int = 3, time: FakeTime | None = None,
        single: bool = False) -> Gathered:
    settings = Settings(database=tmp_path / "digest.db",
                        feed=feeds[0] if single else FeedSettings(),
                        feeds=() if single else feeds)
    fake = time or FakeTime()
    with httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT}) as client:
        return gather_for(settings, None, now, client=client,
                          endpoints=Endpoints.at(server.url),
                          retry=RetryPolicy(attempts=attempts, backoff=1.0, max_wait=60.0),
                          sleep=fake.sleep, clock=fake.clock)


def rss(name: str = "ml", cats: tuple[str, ...] = ("cs.LG", "cs.AI", "cs.CL", "stat.ML"),
        cross: bool = False) -> FeedSettings:
    return FeedSettings(source="arxiv_rss", name=name, categories=cats, cross=cross)


# --------------------------------------------------------------------------- arXiv RSS


def test_rss_keeps_new_leaves_replacements_strips_versions(server: FeedServer,
                                                           tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(RSS, headers=XML))
    got = run(server, tmp_path, (rss(),), THU)
    assert [p.id for p in got.papers] == ["2609.26811", "2609.26820"]  # no cross, no replace
    assert all(p.feeds == ("ml",) and p.source == "arxiv-rss" for p in got.papers)
    assert got.reports[0].state == "ok" and got.reports[0].papers == 2
    assert str(got.reports[0].day) == "2026-09-24" and got.reports[0].reason == ""
    (seen,) = server.requests("/rss/")
    assert seen.headers["User-Agent"] == USER_AGENT and "digest" in USER_AGENT
    assert "(" in USER_AGENT  # says what it is, not just a name


def test_rss_cross_lists_when_asked(server: FeedServer, tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(RSS, headers=XML))
    got = run(server, tmp_path, (rss(cross=True),), THU)
    ids = [p.id for p in got.papers]
    assert ids == ["2609.26811", "2609.26820", "2205.06398"]  # 2205.06398v2, version dropped
    assert "2009.13987" not in ids  # the replace item never comes


def test_rss_conditional_get_and_once_per_day(server: FeedServer, tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(RSS, headers=XML + (
        ("Last-Modified", "Thu, 24 Sep 2026 08:58:05 GMT"),), etag='"rss-0924"'))
    first = run(server, tmp_path, (rss(),), THU)
    again = run(server, tmp_path, (rss(),), THU.replace(hour=15))
    assert len(server.requests("/rss/")) == 1  # the day's listing is out: asked once that day
    assert again.papers == first.papers
    # The next day asks again, conditionally, and a 304 reuses the stored body.
    later = run(server, tmp_path, (rss(),), THU.replace(day=25, hour=1))
    second = server.requests("/rss/")[1]
    assert second.headers["If-None-Match"] == '"rss-0924"'
    assert second.headers["If-Modified-Since"] == "Thu, 24 Sep 2026 08:58:05 GMT"
    assert [p.id for p in later.papers] == [p.id for p in first.papers]
    assert (tmp_path / "digest.db.feeds" / "http.json").is_file()  # beside the database
    report = later.reports[0]  # Friday 01:00 UTC: Friday's listing is not out yet
    assert report.state == "ok" and report.day is not None and str(report.day) == "2026-09-24"
    assert report.reason == ("not yet announced (nothing listed for 2026-09-25 yet); latest "
                             "listing is 2026-09-24")


def test_two_rss_feeds_keep_arxivs_pace(server: FeedServer, tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(RSS, headers=XML))
    server.route("/rss/cs.LG", Reply(RSS_LG, headers=XML))
    fake = FakeTime()
    got = run(server, tmp_path, (rss(), rss("lg", ("cs.LG",))), THU, time=fake)
    assert len(server.requests("/rss/")) == 2
    assert fake.sleeps and fake.sleeps[0] >= 3.0  # one request per 3 s, across feeds
    assert {r.name: r.papers for r in got.reports} == {"ml": 2, "lg": 3}


def test_a_holiday_and_a_weekend_are_empty_and_say_so(server: FeedServer,
                                                      tmp_path: Path) -> None:
    server.route("/rss/physics", Reply(RSS_EMPTY, headers=XML))
    holiday = run(server, tmp_path / "a", (rss("phys", ("physics",)),),
                  datetime(2025, 12, 31, 12, tzinfo=UTC))
    assert holiday.papers == ()
    (report,) = holiday.reports
    assert report.state == "empty"
    assert report.reason == "holiday (nothing was announced on 2025-12-31)"
    saturday = run(server, tmp_path / "b", (rss("phys", ("physics",)),),
                   datetime(2026, 1, 3, 12, tzinfo=UTC))
    assert saturday.reports[0].reason.startswith("weekend")


# --------------------------------------------------------------------------- bioRxiv/medRxiv


def test_medrxiv_day_is_one_page_with_dois_as_ids(server: FeedServer, tmp_path: Path) -> None:
    server.route("/details/medrxiv/2026-09-15/2026-09-15/0/json", Reply(MEDRXIV, headers=JSON))
    feed = FeedSettings(source="medrxiv", name="med", categories=())
    got = run(server, tmp_path, (feed,), datetime(2026, 9, 15, 20, tzinfo=UTC))
    assert [p.id for p in got.papers] == ["10.64898/2026.09.13.26362948",
                                          "10.64898/2026.09.11.26362753",
                                          "10.64898/2026.09.14.26363001"]
    first = got.papers[0]
    assert first.url == "https://www.medrxiv.org/content/10.64898/2026.09.13.26362948v1"
    assert first.categories == ("nephrology",) and first.listed is not None
    assert str(first.listed) == "2026-09-15" and first.feeds == ("med",)
    assert len(server.requests("/details/")) == 1  # cursor 72 reached the total: no page 2


def test_biorxiv_keeps_the_latest_version_and_filters_subjects(server: FeedServer,
                                                               tmp_path: Path) -> None:
    day = datetime(2023, 2, 4, 12, tzinfo=UTC)
    path = "/details/biorxiv/2023-02-04/2023-02-04/0/json"
    server.route(path, Reply(INTEGRON, headers=JSON))
    feed = FeedSettings(source="biorxiv", name="bio", categories=("genetics",), revisions=True)
    got = run(server, tmp_path / "a", (feed,), day)
    (paper,) = got.papers
    assert paper.id == "10.1101/2022.09.11.507474"
    assert paper.url == "https://www.biorxiv.org/content/10.1101/2022.09.11.507474v2"
    assert str(paper.listed) == "2023-02-04" and len(paper.authors) == 13  # v2's author list
    assert server.requests("/details/")[0].query == "category=genetics"  # one subject: asked
    server.default("/details/biorxiv/", Reply(NO_POSTS, headers=JSON))  # earlier days
    other = dataclasses.replace(feed, categories=("neuroscience", "zoology"))
    assert run(server, tmp_path / "b", (other,), day).papers == ()  # filtered here too


def test_biorxiv_no_posts_is_an_empty_day(server: FeedServer, tmp_path: Path) -> None:
    server.default("/details/biorxiv/", Reply(NO_POSTS, headers=JSON))  # the whole week
    got = run(server, tmp_path, (FeedSettings(source="biorxiv", categories=()),),
              datetime(2026, 9, 20, 23, tzinfo=UTC))
    assert got.papers == ()
    assert got.reports[0].state == "empty"
    assert got.reports[0].reason == "no preprints posted on 2026-09-20 yet"
    assert len(server.requests("/details/")) == 8  # the day and a week back


# --------------------------------------------------------------------------- several feeds


def test_several_feeds_merge_and_one_down_does_not_stop_the_rest(server: FeedServer,
                                                                 tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(RSS, headers=XML))
    server.route("/rss/cs.LG+cs.AI", Reply(RSS, headers=XML))  # the same listing, another query
    server.route("/details/medrxiv/2026-09-24/2026-09-24/0/json",
                 Reply(MEDRXIV, headers=JSON))
    server.route("/api/daily_papers", Reply(NGINX_503, 503, HTML))
    feeds = (rss(), rss("ai", ("cs.LG", "cs.AI")),
             FeedSettings(source="medrxiv", name="med", categories=()),
             FeedSettings(source="huggingface", name="hf"))
    got = run(server, tmp_path, feeds, THU)
    by_name = {r.name: r for r in got.reports}
    assert by_name["hf"].state == "down" and "HTTP 503" in by_name["hf"].reason
    assert by_name["ml"].papers == by_name["ai"].papers == 2 and by_name["med"].papers == 3
    assert len(got.papers) == 5  # 2 arXiv papers listed twice are 2 papers, + 3 medRxiv
    arxiv = next(p for p in got.papers if p.id == "2609.26811")
    assert arxiv.feeds == ("ml", "ai")
    # a subscriber's feeds: pick what they read
    topic = Topic(name="all", include=("the",))
    bio = Subscriber("b@example.org", None, "UTC", "0 7 * * *", 10, (topic,), feeds=("med",))
    ml = dataclasses.replace(bio, email="m@example.org", feeds=("ai",))
    everyone = dataclasses.replace(bio, email="e@example.org", feeds=())
    selector = Selector(got.papers)
    assert {p.paper.id[:3] for p in selector.select(bio).picks} == {"10."}
    assert {p.paper.id[:3] for p in selector.select(ml).picks} == {"260"}
    assert {p.paper.id[:3] for p in selector.select(everyone).picks} == {"10.", "260"}


def test_every_feed_down_is_a_feed_error(server: FeedServer, tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(NGINX_503, 503, HTML))
    server.route("/api/daily_papers", Reply(NGINX_503, 503, HTML))
    with pytest.raises(FeedError, match="every feed is down: ml: .*HTTP 503.*; hf: "):
        run(server, tmp_path, (rss(), FeedSettings(source="huggingface", name="hf")), THU,
            attempts=1)


def test_one_feed_keeps_the_old_shape(server: FeedServer, tmp_path: Path) -> None:
    """The single ``feed:`` setting: untagged papers, and a failure is the run's failure."""
    server.route("/api/daily_papers", Reply(HF, headers=JSON))
    got = run(server, tmp_path, (FeedSettings(source="huggingface"),),
              datetime(2026, 6, 12, 9, tzinfo=UTC), single=True)
    assert got.papers == load_papers(FIXTURES / "hf_daily_papers.json")
    assert all(p.feeds == () for p in got.papers)
    server.route("/api/daily_papers", Reply(NGINX_503, 503, HTML))
    with pytest.raises(FeedError, match=r"daily_papers\?date=2026-06-20.*HTTP 503"):
        run(server, tmp_path / "x", (FeedSettings(source="huggingface"),),
            datetime(2026, 6, 20, 9, tzinfo=UTC), single=True, attempts=1)


def test_hf_and_rss_of_one_paper_are_one_paper_with_both_links_and_upvotes() -> None:
    """No real HF list and RSS listing of the same day share a paper (see the fixtures
    README), so the rule is checked on a real HF paper and a real RSS paper given one id."""
    hf = dataclasses.replace(load_papers(FIXTURES / "hf_daily_papers.json")[0], feeds=("hf",))
    item = dataclasses.replace(load_papers(FIXTURES / "arxiv_rss.xml")[0], id=hf.id,
                               feeds=("ml",))
    (one,) = merge_papers([item], [hf])
    assert one.feeds == ("ml", "hf") or one.feeds == ("hf", "ml")
    assert one.upvotes == hf.upvotes and one.hf_url == hf.hf_url
    assert one.url and one.pdf_url and one.categories == item.categories


# --------------------------------------------------------------------------- faults


def test_a_timeout_is_retried(server: FeedServer, tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(RSS, headers=XML, delay=1.0), Reply(RSS, headers=XML))
    got = run(server, tmp_path, (rss(),), THU, timeout=0.3)
    assert got.reports[0].state == "ok" and len(server.requests("/rss/")) == 2


def test_timeouts_all_the_way_are_a_down_feed(server: FeedServer, tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(RSS, headers=XML, delay=1.0))
    server.route("/details/medrxiv/2026-09-24/2026-09-24/0/json", Reply(MEDRXIV, headers=JSON))
    got = run(server, tmp_path, (rss(), FeedSettings(source="medrxiv", categories=())), THU,
              timeout=0.3, attempts=2)
    down = got.reports[0]
    assert down.state == "down" and "cannot reach 127.0.0.1" in down.reason
    assert "gave up after 2 attempts" in down.reason and len(got.papers) == 3


def test_429_waits_as_long_as_retry_after_says(server: FeedServer, tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(b"slow down", 429, (("Retry-After", "7"),)),
                 Reply(RSS, headers=XML))
    fake = FakeTime()
    got = run(server, tmp_path, (rss(),), THU, time=fake)
    assert got.reports[0].state == "ok" and fake.sleeps == [7.0]


def test_503_until_the_last_attempt(server: FeedServer, tmp_path: Path) -> None:
    server.route("/details/biorxiv/2026-09-24/2026-09-24/0/json",
                 Reply(NGINX_503, 503, HTML), Reply(NGINX_503, 503, HTML),
                 Reply(INTEGRON, headers=JSON))
    fake = FakeTime()
    got = run(server, tmp_path, (FeedSettings(source="biorxiv", categories=(),
                                              revisions=True),), THU, time=fake)
    assert got.reports[0].state == "ok" and fake.sleeps == [1.0, 2.0]  # backoff doubles


def test_a_cut_off_body_is_retried_and_a_cut_document_is_a_down_feed(server: FeedServer,
                                                                      tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(RSS, headers=XML, cut=4000), Reply(RSS, headers=XML))
    assert run(server, tmp_path / "a", (rss(),), THU).reports[0].state == "ok"
    cut = RSS[:4000]  # a short document with an honest Content-Length: the XML is broken
    server.route(f"/rss/{FOUR}", Reply(cut, headers=XML))
    server.route("/details/medrxiv/2026-09-24/2026-09-24/0/json",
                 Reply(MEDRXIV[:5000], headers=JSON))
    with pytest.raises(FeedError, match=r"every feed is down: ml: .*malformed XML at line 33, "
                       r"column 453 \(a cut-off answer\?\); med: .*malformed JSON"):
        run(server, tmp_path / "b", (rss(), FeedSettings(source="medrxiv", name="med",
                                                         categories=())), THU)
    assert not (tmp_path / "b" / "digest.db.feeds" / "http.json").exists()  # never cached


def test_an_html_page_with_status_200_is_not_a_feed(server: FeedServer, tmp_path: Path) -> None:
    server.route(f"/rss/{FOUR}", Reply(NGINX_503, 200, HTML))
    server.route("/details/medrxiv/2026-09-24/2026-09-24/0/json", Reply(MEDRXIV, headers=JSON))
    got = run(server, tmp_path, (rss(), FeedSettings(source="medrxiv", categories=())), THU)
    down = got.reports[0]
    assert down.state == "down"
    assert "HTTP 200 but an HTML page (title: 503 Service Temporarily Unavailable)" in \
        down.reason
    assert len(server.requests("/rss/")) == 3  # retried like a 503, then given up


def test_fetch_one_is_digest_fetch_for_a_listing(server: FeedServer) -> None:
    from datetime import date

    from digest.feeds import fetch_one

    server.route("/details/medrxiv/2026-09-15/2026-09-15/0/json", Reply(MEDRXIV, headers=JSON))
    feed = FeedSettings(source="medrxiv", categories=("neurology",))
    with httpx.Client(timeout=5) as client:
        papers, report = fetch_one(feed, date(2026, 9, 15), client=client,
                                   endpoints=Endpoints.at(server.url))
        assert [p.id for p in papers] == ["10.64898/2026.09.14.26363001"]
        assert report.state == "ok" and report.papers == 1
        server.route("/details/medrxiv/2026-09-15/2026-09-15/0/json", Reply(b"", 200))
        with pytest.raises(FeedError, match="an empty answer"):
            fetch_one(feed, date(2026, 9, 15), client=client,
                      endpoints=Endpoints.at(server.url))


def test_json_labelled_text_html_is_still_the_feed(server: FeedServer, tmp_path: Path) -> None:
    """An HTML page is told by its body: an API that labels its JSON text/html still works."""
    server.route("/details/medrxiv/2026-09-15/2026-09-15/0/json", Reply(MEDRXIV, headers=HTML))
    got = run(server, tmp_path, (FeedSettings(source="medrxiv", categories=()),),
              datetime(2026, 9, 15, 20, tzinfo=UTC))
    assert got.reports[0].state == "ok" and len(got.papers) == 3
