"""``digest serve`` over real HTTP: httpx against uvicorn on 127.0.0.1, a real SQLite ledger
filled by a real send. RFC 8058 one-click, the confirm page, preferences laid over the YAML,
the archive and the feed, forged tokens, the Host check."""

from __future__ import annotations

import base64
import email
import email.policy
import html
import json
import mailbox
import os
import re
import sqlite3
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from web_site import BASE_URL, ENV, HOST, NOW, SECRET, Site, make_site

from digest.cli import main
from digest.compose import links_for
from digest.config import load_config
from digest.delivery import send_all
from digest.feeds import sample_papers
from digest.ledger import Ledger
from digest.models import LeftOut
from digest.selection import Selector
from digest.text import clean_text

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
CONFIG_WITHOUT_WEB = """\
settings:
  sender: "Paper Digest <digest@example.org>"
  database: digest.db
  outbox: outbox/
  feed: {source: sample}
subscribers:
  - email: ada@example.org
    max_papers: 3
    topics: [diffusion, quantization, language model]
"""


def ledger(site: Site) -> Ledger:
    return Ledger(site.config.parent / "digest.db")


def sent_message(site: Site, name: str) -> email.message.EmailMessage:
    box = mailbox.Maildir(site.config.parent / "outbox", create=False)
    for key in box.keys():
        msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        if msg["To"].addresses[0].addr_spec == f"{name}@example.org":
            assert isinstance(msg, email.message.EmailMessage)
            return msg
    raise AssertionError(f"no message to {name}")


# --------------------------------------------------------------------------- the email's links


def test_the_email_points_at_exactly_what_the_server_answers(site: Site,
                                                             http: httpx.Client) -> None:
    msg = sent_message(site, "ada")
    links = site.links("ada")
    assert str(msg["List-Unsubscribe"]).split(", ")[-1] == f"<{links.unsubscribe}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    view = links.edition(NOW.date())
    for url in (view, links.preferences, links.unsubscribe):
        assert url in html and url in text
    assert "ada" not in links.unsubscribe.rsplit("/", 1)[1]  # the token is opaque
    # the view link opens the very HTML that was sent
    got = http.get(site.local(view))
    assert got.status_code == 200 and got.text == html.replace("\r\n", "\n")


# --------------------------------------------------------------------------- RFC 8058


def test_one_click_post_unsubscribes_at_once_and_idempotently(site: Site,
                                                              http: httpx.Client) -> None:
    # what a mailbox provider does: the https URL from the header it received, POSTed as is
    header = str(sent_message(site, "ada")["List-Unsubscribe"])
    https = [u.strip(" <>") for u in header.split(",") if u.strip(" <").startswith("https:")]
    assert https == [site.links("ada").unsubscribe]
    url = site.local(https[0])
    assert not ledger(site).is_suppressed("ada@example.org")
    for _ in range(2):  # a second POST (a retrying mail provider) is fine
        got = http.post(url, data=ONE_CLICK)
        assert got.status_code == 200
        assert "set-cookie" not in got.headers and "location" not in got.headers
        assert "unsubscribed" in got.text
        assert ledger(site).is_suppressed("ada@example.org")
    assert ledger(site).suppression_source("ada@example.org") == "web"
    # the next send skips ada
    report = send_all(load_config(site.config, environ=ENV), sample_papers(),
                      NOW + timedelta(days=1), environ=ENV, only="ada@example.org")
    assert report.suppressed == 1 and report.sent == 0


def test_one_click_as_multipart_as_some_providers_send_it(site: Site, http: httpx.Client) -> None:
    got = http.post(site.local(site.links("fay").unsubscribe), files={"List-Unsubscribe": (
        None, "One-Click")})
    assert got.status_code == 200 and ledger(site).is_suppressed("fay@example.org")


def test_get_shows_a_confirm_page_and_never_unsubscribes(site: Site, http: httpx.Client) -> None:
    url = site.local(site.links("bob").unsubscribe)
    for _ in range(3):  # link scanners and previews fetch it
        got = http.get(url)
        assert got.status_code == 200
        assert '<form method="post" action="">' in got.text
        assert 'name="List-Unsubscribe" value="One-Click"' in got.text
    assert not ledger(site).is_suppressed("bob@example.org")


def test_a_post_without_the_one_click_body_changes_nothing(site: Site,
                                                           http: httpx.Client) -> None:
    url = site.local(site.links("bob").unsubscribe)
    for data in ({}, {"List-Unsubscribe": "yes"}):
        assert http.post(url, data=data).status_code == 400
    assert http.post(url, content=b"x" * 10_000, headers={
        "content-type": "application/x-www-form-urlencoded"}).status_code == 413
    assert not ledger(site).is_suppressed("bob@example.org")


def _flip(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=="))
    raw[-1] ^= 0x10
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_forged_and_tampered_tokens_change_nothing(site: Site, http: httpx.Client) -> None:
    real = site.links("bob")
    token = real.unsubscribe.rsplit("/", 1)[1]
    forged = [
        _flip(token),
        links_for(BASE_URL, "bob@example.org", "x" * 40).unsubscribe.rsplit("/", 1)[1],
        links_for(BASE_URL, "mallory@example.org", SECRET).unsubscribe.rsplit("/", 1)[1],
        base64.urlsafe_b64encode(b"bob@example.org").decode().rstrip("="),  # the v1 shape
        token[:-1],
    ]
    before = (ledger(site).suppressed(), ledger(site).all_preferences())
    for bad in forged:
        for path in (f"/news/u/{bad}", f"/news/p/{bad}", f"/news/a/{bad}",
                     f"/news/a/{bad}/feed.atom", f"/news/a/{bad}/{NOW.date()}",
                     f"/news/m/{bad}/{NOW.date()}"):
            assert http.get(site.origin + path).status_code == 404, path
        assert http.post(f"{site.origin}/news/u/{bad}", data=ONE_CLICK).status_code == 404
        assert http.post(f"{site.origin}/news/p/{bad}", data={
            "action": "unsubscribe"}).status_code == 404
    assert (ledger(site).suppressed(), ledger(site).all_preferences()) == before


# --------------------------------------------------------------------------- the Host check


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1", f"{HOST}.evil.example", ""])
def test_only_the_configured_host_is_served(site: Site, host: str) -> None:
    url = site.local(site.links("bob").unsubscribe)
    with httpx.Client(headers={"Host": host}, timeout=10) as client:
        assert client.get(url).status_code == 400
        assert client.post(url, data=ONE_CLICK).status_code == 400
    assert not ledger(site).is_suppressed("bob@example.org")
    with httpx.Client(headers={"Host": f"{HOST}:8443"}, timeout=10) as client:
        assert client.get(url).status_code == 200  # the port the proxy used does not matter


def test_pages_carry_protective_headers(site: Site, http: httpx.Client) -> None:
    got = http.get(site.local(site.links("bob").preferences))
    assert got.headers["referrer-policy"] == "same-origin"
    assert got.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in got.headers["content-security-policy"]
    assert "script-src" not in got.headers["content-security-policy"]  # default-src 'none'
    assert "<script" not in got.text
    assert http.get(f"{site.origin}/news/").status_code == 404


# --------------------------------------------------------------------------- preferences


def test_preferences_pause_resume_and_max_papers_lay_over_the_yaml(site: Site,
                                                                   http: httpx.Client) -> None:
    url = site.local(site.links("cy").preferences)
    page = http.get(url)
    assert page.status_code == 200 and 'value="3"' in page.text  # the YAML's max_papers

    got = http.post(url, data={"action": "max_papers", "max_papers": "1"})
    assert got.status_code == 303 and got.headers["location"].endswith("?done=max_papers")
    assert "set-cookie" not in got.headers
    until = NOW.date() + timedelta(days=3)
    assert http.post(url, data={"action": "pause", "until": until.isoformat()}
                     ).status_code == 303
    chosen = ledger(site).preferences("cy@example.org")
    assert chosen is not None and (chosen.paused_until, chosen.max_papers) == (until, 1)
    assert "Paused" in http.get(url + "?done=paused").text

    config = load_config(site.config, environ=ENV)
    assert config.subscriber("cy@example.org").max_papers == 3  # type: ignore[union-attr]
    paused = send_all(config, sample_papers(), NOW + timedelta(days=1), environ=ENV,
                      only="cy@example.org")
    assert (paused.paused, paused.sent) == (1, 0)

    assert http.post(url, data={"action": "resume"}).status_code == 303
    report = send_all(config, sample_papers(), NOW + timedelta(days=1), environ=ENV,
                      only="cy@example.org")
    assert report.sent == 1
    row = ledger(site).get("cy@example.org", NOW.date() + timedelta(days=1))
    assert row is not None and len(row.papers) == 1  # the subscriber's max_papers won

    assert http.post(url, data={"action": "max_papers_default"}).status_code == 303
    assert ledger(site).preferences("cy@example.org") is None  # nothing left to lay over


@pytest.mark.parametrize("form", [
    {"action": "pause", "until": "2026-11-25"},          # today: not in the future
    {"action": "pause", "until": "2028-01-01"},          # more than a year
    {"action": "pause", "until": "soon"},
    {"action": "max_papers", "max_papers": "0"},
    {"action": "max_papers", "max_papers": "51"},
    {"action": "max_papers", "max_papers": "-3"},
    {"action": "frobnicate"},
])
def test_bad_preference_input_is_refused_with_the_page(site: Site, http: httpx.Client,
                                                       form: dict[str, str]) -> None:
    got = http.post(site.local(site.links("dee").preferences), data=form)
    assert got.status_code == 400 and 'role="alert"' in got.text
    assert ledger(site).preferences("dee@example.org") is None


def test_cross_site_form_posts_are_refused(site: Site, http: httpx.Client) -> None:
    url = site.local(site.links("dee").preferences)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        got = http.post(url, data={"action": "unsubscribe"}, headers=headers)
        assert got.status_code == 403
    assert not ledger(site).is_suppressed("dee@example.org")
    ok = http.post(url, data={"action": "max_papers", "max_papers": "2"},
                   headers={"Origin": f"https://{HOST}", "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 303
    assert http.post(url, data={"action": "max_papers_default"}).status_code == 303


def test_unsubscribe_and_back_from_the_preferences_page(site: Site, http: httpx.Client) -> None:
    url = site.local(site.links("eve").preferences)
    assert http.post(url, data={"action": "unsubscribe"}).status_code == 303
    assert ledger(site).is_suppressed("eve@example.org")
    assert "Subscribe again" in http.get(url).text
    assert http.post(url, data={"action": "resubscribe"}).status_code == 303
    assert not ledger(site).is_suppressed("eve@example.org")


def test_an_admin_suppression_is_not_undone_from_the_web(site: Site, http: httpx.Client) -> None:
    with ledger(site) as db:
        db.suppress("dee@example.org", now=NOW, source="cli")
    try:
        url = site.local(site.links("dee").preferences)
        assert "Subscribe again" not in http.get(url).text
        assert http.post(url, data={"action": "resubscribe"}).status_code == 400
        assert ledger(site).is_suppressed("dee@example.org")
    finally:
        with ledger(site) as db:
            db.unsuppress("dee@example.org")


def test_prefs_export_lists_what_subscribers_changed(site: Site, http: httpx.Client) -> None:
    url = site.local(site.links("bob").preferences)
    assert http.post(url, data={"action": "max_papers", "max_papers": "7"}).status_code == 303
    assert http.post(site.local(site.links("fay").unsubscribe), data=ONE_CLICK).status_code == 200
    result = CliRunner().invoke(main, ["prefs", "export", "--config", str(site.config)],
                                env=ENV)
    assert result.exit_code == 0, result.output
    lines = {d["email"]: d for d in map(json.loads, result.output.splitlines())}
    assert lines["bob@example.org"]["max_papers"] == 7
    assert lines["bob@example.org"]["yaml_max_papers"] == 3
    assert "paused_until" not in lines["bob@example.org"]
    assert lines["fay@example.org"]["unsubscribed"] is True
    assert "gil@example.org" not in lines  # changed nothing
    assert "max_papers: 3" in site.config.read_text()  # the YAML is untouched
    assert http.post(url, data={"action": "max_papers_default"}).status_code == 303


def test_plan_shows_the_preferences_laid_over_the_yaml(site: Site) -> None:
    def plan() -> dict[str, object]:
        result = CliRunner().invoke(main, ["plan", "--json", "-c", str(site.config), "-s",
                                           "gil@example.org", "--now", NOW.isoformat()],
                                    env=ENV)
        assert result.exit_code == 0, result.output
        [entry] = json.loads(result.output)["subscribers"]
        return dict(entry)

    assert len(plan()["papers"]) == 3  # type: ignore[arg-type]  # the YAML's max_papers
    with ledger(site) as db:
        db.set_preferences("gil@example.org", paused_until=None, max_papers=1, now=NOW)
    try:
        assert len(plan()["papers"]) == 1  # type: ignore[arg-type]
        with ledger(site) as db:
            db.set_preferences("gil@example.org", paused_until=NOW.date() + timedelta(days=2),
                               max_papers=1, now=NOW)
        entry = plan()
        assert entry["skipped_reason"] == \
            f"paused until {NOW.date() + timedelta(days=2)} (preferences page)"
    finally:
        with ledger(site) as db:
            db.set_preferences("gil@example.org", paused_until=None, max_papers=None, now=NOW)


# --------------------------------------------------------------------------- archive and feed


def test_archive_lists_editions_and_the_feed_is_atom(site: Site, http: httpx.Client) -> None:
    links = site.links("bob")
    page = http.get(site.local(links.archive))
    subject = str(sent_message(site, "bob")["Subject"])
    assert page.status_code == 200 and subject in page.text.replace("&#x27;", "'")
    feed = http.get(site.local(links.feed))
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("application/atom+xml")
    atom = "{http://www.w3.org/2005/Atom}"
    root = ET.fromstring(feed.content)
    [entry] = root.findall(f"{atom}entry")
    assert entry.findtext(f"{atom}title") == subject
    assert entry.find(f"{atom}link").get("href") == links.edition(NOW.date())  # type: ignore
    assert root.find(f"{atom}link[@rel='self']").get("href") == links.feed  # type: ignore
    content = entry.findtext(f"{atom}content") or ""
    html = sent_message(site, "bob").get_body(("html",)).get_content()  # type: ignore
    assert content == html.replace("\r\n", "\n")
    missing = http.get(site.local(links.edition(date(2020, 1, 1))))
    assert missing.status_code == 404
    assert http.get(site.local(links.archive) + "/not-a-date").status_code == 404


# --------------------------------------------------------------------------- "N more matched"

_PAPER_LINK = re.compile(r'<a class="paper" href="([^"]*)">(.*?)</a>')


def _more_links(msg: email.message.EmailMessage) -> tuple[int, str, int, str]:
    """(N, URL) of "N more matched" in the HTML part and in the text part of a sent message."""
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    in_html = re.search(r'<a\shref="([^"]+)" class="button"[^>]*>(\d+) more matched: see them '
                        r"all</a>", html)
    in_text = re.search(r"\n(\d+) more matched; see them all:[ \n](\S+)\n", text)
    assert in_html and in_text, "no 'N more matched' link"
    assert max(len(line) for line in text.splitlines()) <= 78
    return int(in_html[2]), in_html[1], int(in_text[1]), in_text[2]


def test_more_matched_links_the_matches_the_edition_left_out(site: Site,
                                                            http: httpx.Client) -> None:
    msg = sent_message(site, "dee")
    n_html, url_html, n_text, url_text = _more_links(msg)
    more = site.links("dee").more(NOW.date())
    assert url_html == url_text == more  # one helper's URL, nothing glued to it
    assert n_html == n_text
    got = http.get(site.local(url_text))
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    listed = _PAPER_LINK.findall(got.text)
    # exactly what the selection cut at max_papers, in rank order, each linked to its page
    config = load_config(site.config, environ=ENV)
    sub = config.subscriber("dee@example.org")
    assert sub is not None
    cut = Selector(sample_papers()).select(sub, with_cut=True).cut
    assert len(listed) == len(cut) == n_html > 0
    assert [html.unescape(title) for _, title in listed] == [
        clean_text(p.paper.title) for p in cut]
    assert all(href.startswith("https://") for href, _ in listed)
    row = ledger(site).get("dee@example.org", NOW.date())
    assert row is not None and len(row.papers) == 3  # max_papers
    assert set(row.papers).isdisjoint(p.paper.id for p in cut)
    assert f"{n_html} more matched" in got.text and "in title" in got.text  # the reason tags


def test_the_more_page_is_frozen_at_send_time(site: Site, http: httpx.Client) -> None:
    url = site.local(site.links("eve").more(NOW.date()))
    before = http.get(url).text
    # the next day's edition (other papers, a new selection) leaves the first page as it was
    papers = sample_papers()[::-1][:20]
    report = send_all(load_config(site.config, environ=ENV), papers, NOW + timedelta(days=1),
                      environ=ENV, only="eve@example.org")
    assert report.sent == 1
    assert http.get(url).text == before


def test_the_more_page_escapes_what_it_shows(site: Site, http: httpx.Client) -> None:
    with ledger(site) as db:
        db.keep_left_out("gil@example.org", NOW.date(), (
            LeftOut(paper_id="evil", title='<script>alert("t")</script>',
                    authors="<img src=x onerror=alert(1)>", url="javascript:alert(1)",
                    tags=("<b>tag</b> · in title",)),
            LeftOut(paper_id="q", title="Quote \" & co", authors="A", url='https://x.org/"a',
                    tags=())))
    got = http.get(site.local(site.links("gil").more(NOW.date())))
    assert got.status_code == 200
    assert "<script>" not in got.text and "<img" not in got.text and "<b>tag" not in got.text
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in got.text
    assert "javascript:" not in got.text  # not a link at all
    assert 'href="https://x.org/&quot;a"' in got.text  # the quote cannot end the attribute


def test_the_more_page_of_an_unknown_or_unarchived_edition_is_404(site: Site,
                                                                 http: httpx.Client) -> None:
    links = site.links("bob")
    for day in (date(2026, 11, 24), date(2020, 1, 1)):
        got = http.get(site.local(links.more(day)))
        assert got.status_code == 404 and "more matched" not in got.text
    bad = site.local(links.more(NOW.date())).replace(str(NOW.date()), "2026-13-01")
    assert http.get(bad).status_code == 404
    assert http.get(site.local(links.more(NOW.date()))).status_code == 200  # the real one


def test_without_base_url_the_sentence_stays_plain_and_nothing_is_kept(tmp_path: Path) -> None:
    text = CONFIG_WITHOUT_WEB.replace("outbox: outbox/", f"outbox: {tmp_path / 'outbox'}")
    (tmp_path / "subscribers.yaml").write_text(text)
    config = load_config(tmp_path / "subscribers.yaml", environ=ENV)
    assert config.settings.base_url is None
    assert send_all(config, sample_papers(), NOW, environ=ENV).sent == 1
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    [key] = box.keys()
    msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert re.search(r"\d+ more matched; see them in the next digest\.</p>", html)
    assert re.search(r"\n\d+ more matched; see them in the next digest\.\n", plain)
    assert "/more" not in html and "/more" not in plain
    with sqlite3.connect(tmp_path / "digest.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM left_out").fetchone()[0] == 0


def test_a_new_subscriber_is_known_after_a_config_edit(tmp_path: Path, site: Site) -> None:
    # the running site reloads its YAML; a token of an address added later resolves then
    text = site.config.read_text()
    extra = text + "  - email: gus@example.org\n    topics: [diffusion]\n"
    url = site.local(site.links("gus").preferences)
    with httpx.Client(headers={"Host": HOST}, timeout=10) as client:
        assert client.get(url).status_code == 404
        site.config.write_text(extra)
        try:
            os.utime(site.config, ns=(1, 1))  # a sure change of mtime
            assert client.get(url).status_code == 200
        finally:
            site.config.write_text(text)


def test_serve_refuses_a_config_without_base_url(tmp_path: Path) -> None:
    config = tmp_path / "subscribers.yaml"
    config.write_text("subscribers: []\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "digest serve needs settings.base_url" in result.output



@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_the_digest_serve_command_serves_and_stops_cleanly(tmp_path: Path, stop: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    from web_site import free_port

    config = make_site(tmp_path)
    port = free_port()
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "digest", "serve", "--config", str(config),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    links = links_for(BASE_URL, "ada@example.org", SECRET)
    url = links.unsubscribe.replace(f"https://{HOST}", f"http://127.0.0.1:{port}")
    try:
        with httpx.Client(headers={"Host": HOST}, timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    got = client.post(url, data=ONE_CLICK)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
                    time.sleep(0.1)
            assert got.status_code == 200
    finally:
        proc.send_signal(getattr(signal, stop))
        out, err = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit says why (-15)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert f"Serving {BASE_URL} on http://127.0.0.1:{port}/" in out
    assert "Traceback" not in err and "warning" not in err
    assert Ledger(tmp_path / "digest.db").is_suppressed("ada@example.org")


def test_serve_warns_when_not_bound_to_loopback(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: the warning shows, then binding fails
    config = tmp_path / "subscribers.yaml"
    config.write_text(CONFIG_FOR_CLI)
    result = CliRunner().invoke(main, ["serve", "-c", str(config), "--host", "192.0.2.1",
                                       "--port", "8080"], env=ENV)
    assert result.exit_code == 1
    assert "warning: listening on 192.0.2.1, not only this machine" in result.output
    assert "cannot listen on 192.0.2.1:8080: Cannot assign requested address" in result.output
    assert "Traceback" not in result.output


CONFIG_FOR_CLI = f"""\
settings:
  base_url: {BASE_URL}
  unsubscribe_secret_env: DIGEST_UNSUBSCRIBE_SECRET
subscribers: []
"""
