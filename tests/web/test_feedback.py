"""The feedback buttons of the preferences page over real HTTP (httpx against uvicorn, a real
SQLite ledger filled by a real send): what they list, what a POST records (the very verdict
``digest feedback`` records, and the same next selection), idempotence, escaping, and that
forged tokens, unknown papers and cross-site posts change nothing."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from web_site import ENV, HOST, NOW, Site

from digest.cli import main
from digest.ledger import Ledger, LedgerStore, open_ledger
from digest.models import Feedback, Paper
from digest.web._feedback import recent_papers

ADA, BOB, CY = "ada@example.org", "bob@example.org", "cy@example.org"


def ledger(site: Site) -> Ledger:
    return Ledger(site.config.parent / "digest.db")


def sent_ids(site: Site, email: str) -> tuple[str, ...]:
    row = ledger(site).get(email, NOW.date())
    assert row is not None and row.papers
    return row.papers


def said(site: Site, email: str) -> Feedback:
    return ledger(site).feedback().get(email, Feedback())


def rows(site: Site, email: str) -> list[tuple[object, ...]]:
    """The feedback table's rows, time included (the file as any SQLite client sees it)."""
    with closing(sqlite3.connect(site.config.parent / "digest.db")) as db:
        return db.execute("SELECT * FROM feedback WHERE email = ?", (email,)).fetchall()


def plan(site: Site, email: str) -> dict[str, list[str]]:
    got = CliRunner().invoke(main, ["plan", "--config", str(site.config), "--json", "-s", email,
                                    "--now", (NOW + timedelta(days=1)).isoformat()], env=ENV)
    assert got.exit_code == 0, got.output
    entry = json.loads(got.output)["subscribers"][0]
    return {k: [p["id"] for p in entry[k]] for k in ("papers", "cut", "also")}


def test_the_page_lists_the_sent_papers_with_both_buttons(site: Site, http: httpx.Client) -> None:
    page = http.get(site.local(site.links("dee").preferences)).text
    ids = sent_ids(site, "dee@example.org")
    # one item per sent paper, in the email's order, each with two forms posting to the page
    assert re.findall(r'<li id="paper-([^"]+)">', page) == list(ids)
    for pid in ids:
        for verdict in ("more", "less"):
            assert (f'<input type="hidden" name="action" value="{verdict}"><input type="hidden" '
                    f'name="paper" value="{pid}">') in page
    assert page.count('<form method="post" action="">') >= 2 * len(ids)
    assert 'aria-pressed="true"' not in page  # nothing said yet
    # titles come from the archived email (escaped: the sample's first title has quotes)
    assert "<strong>&quot;Give Me BF16 or Give Me Death&quot;? Accuracy-Performance" in page
    edition = site.links("dee").edition(NOW.date()).removeprefix(f"https://{HOST}")
    assert f'<a href="{edition}">{NOW.date().isoformat()}</a>' in page


def test_a_post_records_what_digest_feedback_records(site: Site, http: httpx.Client) -> None:
    liked, disliked = sent_ids(site, ADA)[:2]
    url = site.local(site.links("ada").preferences)
    before_ada, before_cy = plan(site, ADA), plan(site, CY)
    assert before_ada == before_cy  # same topics, same edition sent: the same plan
    got = http.post(url, data={"action": "more", "paper": liked})
    assert got.status_code == 303
    assert got.headers["location"].endswith("?done=feedback#rate")
    assert http.post(url, data={"action": "less", "paper": disliked}).status_code == 303
    # bob, with the same topics and edition, says the same with the CLI
    cli = CliRunner().invoke(main, ["feedback", "--config", str(site.config), BOB,
                                    "--more", liked, "--less", disliked], env=ENV)
    assert cli.exit_code == 0, cli.output
    web, by_cli = said(site, ADA), said(site, BOB)
    assert [p.id for p in web.more] == [p.id for p in by_cli.more] == [liked]
    assert [p.id for p in web.less] == [p.id for p in by_cli.less] == [disliked]
    assert [p.title for p in web.more + web.less] == [p.title for p in by_cli.more + by_cli.less]
    # the next selection changes, and the same way for both
    after = plan(site, ADA)
    assert after == plan(site, BOB)
    assert after != before_ada and plan(site, CY) == before_cy
    # the page shows the verdicts
    page = http.get(url).text
    assert "Saved: your next digests take it into account." in http.get(
        url + "?done=feedback").text
    item = page.split(f'<li id="paper-{liked}">', 1)[1].split("</li>", 1)[0]
    assert "You asked for more like this." in item
    assert re.search(r'value="more">.*?aria-pressed="true">More like this', item)
    assert 'aria-pressed="false">Less like this' in item
    item = page.split(f'<li id="paper-{disliked}">', 1)[1].split("</li>", 1)[0]
    assert "You asked for less like this." in item and 'aria-pressed="true">Less' in item


def test_the_same_verdict_twice_changes_nothing_and_the_last_choice_counts(
        site: Site, http: httpx.Client) -> None:
    pid = sent_ids(site, "eve@example.org")[0]
    url = site.local(site.links("eve").preferences)
    assert http.post(url, data={"action": "more", "paper": pid}).status_code == 303
    first = rows(site, "eve@example.org")
    assert len(first) == 1
    assert http.post(url, data={"action": "more", "paper": pid}).status_code == 303
    assert rows(site, "eve@example.org") == first  # not even its time changed
    assert http.post(url, data={"action": "less", "paper": pid}).status_code == 303
    now = said(site, "eve@example.org")
    assert now.more == () and [p.id for p in now.less] == [pid]  # one verdict per paper


def test_a_stored_verdict_keeps_its_text_and_is_escaped(site: Site, http: httpx.Client) -> None:
    pid = sent_ids(site, "fay@example.org")[1]
    ledger(site).record_feedback("fay@example.org", Paper(
        id=pid, title='<script>alert("x")</script> & Friends', abstract="a"), "more", now=NOW)
    url = site.local(site.links("fay").preferences)
    page = http.get(url).text
    assert "<script>" not in page
    assert "<strong>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Friends</strong>" \
        in page
    assert http.post(url, data={"action": "less", "paper": pid}).status_code == 303
    kept = said(site, "fay@example.org").less[0]
    assert (kept.title, kept.abstract) == ('<script>alert("x")</script> & Friends', "a")


def test_forged_tokens_unknown_papers_and_cross_site_posts_change_nothing(
        site: Site, http: httpx.Client) -> None:
    pid = sent_ids(site, "gil@example.org")[0]
    url = site.local(site.links("gil").preferences)
    token = url.rsplit("/", 1)[1]
    before = ledger(site).feedback()
    forged = url[:-len(token)] + token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert http.post(forged, data={"action": "more", "paper": pid}).status_code == 404
    for paper in ("2401.99999", "", "x" * 300):  # not a paper of gil's editions
        got = http.post(url, data={"action": "more", "paper": paper})
        assert got.status_code == 400 and "not one of your recent digests" in got.text
    assert http.post(url, data={"action": "best", "paper": pid}).status_code == 400
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        got = http.post(url, data={"action": "more", "paper": pid}, headers=headers)
        assert got.status_code == 403
    assert ledger(site).feedback() == before


_CARDS = """<html><body><h1>Ada, your paper digest</h1><h2 class="section">Quantization</h2>
<h3><a href="https://arxiv.org/abs/2406.00001" class="title">First &amp; <em>best</em></a></h3>
<ul class="claims"><li>It compresses.</li><li>It is fast.</li></ul>
<h3>Second, without a link</h3><p>no claims</p></body></html>"""


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """The page's paper list on each backend (only contract methods are read)."""
    database = tmp_path / "digest.db" if request.param == "sqlite" else \
        request.getfixturevalue("pg_database")
    with open_ledger(database) as opened:
        yield opened


def test_the_papers_of_recent_editions_read_the_same_on_both_backends(
        any_ledger: LedgerStore) -> None:
    msg = EmailMessage()
    msg["Subject"] = "Your digest"
    msg.set_content("text")
    msg.add_alternative(_CARDS, subtype="html")
    ids = ("2406.00001", "2406.00002")
    for day, papers in ((0, ids), (1, ("2406.00003",))):  # the second is newer, title unknown
        edition, at = NOW.date() + timedelta(days=day), NOW + timedelta(days=day)
        any_ledger.begin(ADA, edition, message_id=f"<m{day}@x>", papers=papers,
                         data=msg.as_bytes(), now=at)
        any_ledger.mark_sent(ADA, edition, now=at, archive=timedelta(days=180))
    any_ledger.record_feedback(ADA, Paper(id="2406.00002", title="Kept", abstract="Its own."),
                               "less", now=NOW)
    rated = recent_papers(any_ledger, ADA)
    # the newer edition has two cards for one id: its text is unknown, nothing is listed
    assert [e.edition for e in rated] == [NOW.date()]
    first, second = rated[0].papers
    assert first.paper == Paper(id=ids[0], title="First & best",
                                abstract="It compresses. It is fast.")
    assert first.verdict is None
    assert second.paper == Paper(id=ids[1], title="Kept", abstract="Its own.")  # as stored
    assert second.verdict == "less"
    assert recent_papers(any_ledger, "nobody@x.org") == ()
