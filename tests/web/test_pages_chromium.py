"""The pages a person clicks, in real headless Chromium against a running ``digest serve``: the
unsubscribe confirm page (opening it changes nothing; its button does), and the preferences
page (papers per digest, pause, resume), at 800 and 375 px, light and dark. The browser reaches
the server under the configured host name (``--host-resolver-rules``), so the Host check is
passed the way a proxy would pass it. Screenshots are written to the test's tmp folder.

Skipped only when Chromium is missing and CI is not "true" (in CI these must run)."""

from __future__ import annotations

import os
import struct
from datetime import timedelta
from pathlib import Path

import pytest
from chromium_cdp import Browser, chromium_path
from web_site import HOST, NOW, Site

from digest.ledger import Ledger

if chromium_path() is None and os.environ.get("CI") != "true":
    pytest.skip("chromium is not installed", allow_module_level=True)


def url(site: Site, link: str) -> str:
    return link.replace(f"https://{HOST}", f"http://{HOST}:{site.port}")


def ledger(site: Site) -> Ledger:
    return Ledger(site.config.parent / "digest.db")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def set_width(browser: Browser, width: int, dark: bool = False) -> None:
    browser.call("Emulation.setDeviceMetricsOverride", session=browser.session, width=width,
                 height=900, deviceScaleFactor=1, mobile=width < 600)
    browser.call("Emulation.setEmulatedMedia", session=browser.session, features=[
        {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}])


def test_confirm_page_asks_and_only_its_button_unsubscribes(site: Site, browser: Browser,
                                                            tmp_path: Path) -> None:
    set_width(browser, 800)
    browser.open(url(site, site.links("ada").unsubscribe))
    assert browser.eval("document.querySelector('h1').textContent") == \
        "Unsubscribe from Paper Digest?"
    shot = browser.screenshot(tmp_path / "confirm-800.png")
    assert png_size(shot) == (800, 900) and len(shot) > 5000
    assert not ledger(site).is_suppressed("ada@example.org")  # opening it changed nothing

    browser.click("button[type=submit]")
    browser.wait_for("document.querySelector('h1') && "
                     "document.querySelector('h1').textContent === 'You are unsubscribed'")
    browser.screenshot(tmp_path / "unsubscribed-800.png")
    assert ledger(site).is_suppressed("ada@example.org")
    assert browser.eval("document.cookie") == ""  # no cookie was set


def test_preferences_page_changes_papers_and_pauses(site: Site, browser: Browser,
                                                    tmp_path: Path) -> None:
    prefs = url(site, site.links("bob").preferences)
    for width, dark in ((800, False), (375, False), (375, True)):
        set_width(browser, width, dark)
        browser.open(prefs)
        browser.screenshot(tmp_path / f"prefs-{width}-{'dark' if dark else 'light'}.png")
        # nothing scrolls sideways on a phone; every button is a comfortable tap target
        assert browser.eval("document.documentElement.scrollWidth") <= width
        sizes = browser.eval("[...document.querySelectorAll('button')].map(b => "
                             "Math.min(b.offsetWidth, b.offsetHeight))")
        assert sizes and min(sizes) >= 44
    background = browser.eval("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"  # dark mode really is dark

    set_width(browser, 800)
    browser.open(prefs)
    browser.eval("document.querySelector('#max_papers').select()")
    browser.call("Input.insertText", session=browser.session, text="2")
    browser.click("#max_papers ~ button")
    browser.wait_for("location.search === '?done=max_papers'")
    assert browser.eval("document.querySelector('#max_papers').value") == "2"
    chosen = ledger(site).preferences("bob@example.org")
    assert chosen is not None and chosen.max_papers == 2

    until = (NOW.date() + timedelta(days=10)).isoformat()
    browser.eval(f"document.querySelector('#until').value = {until!r}")
    browser.click("#until ~ button")
    browser.wait_for("location.search === '?done=paused'")
    browser.screenshot(tmp_path / "prefs-paused-800.png")
    assert until in browser.eval("document.body.innerText")
    chosen = ledger(site).preferences("bob@example.org")
    assert chosen is not None and chosen.paused_until is not None
    assert chosen.paused_until.isoformat() == until and chosen.max_papers == 2

    browser.click("input[value=resume] ~ button")
    browser.wait_for("location.search === '?done=resumed'")
    chosen = ledger(site).preferences("bob@example.org")
    assert chosen is not None and chosen.paused_until is None and chosen.max_papers == 2


def test_view_in_browser_shows_the_sent_email(site: Site, browser: Browser,
                                              tmp_path: Path) -> None:
    links = site.links("cy")
    set_width(browser, 375)
    browser.open(url(site, links.edition(NOW.date())))
    browser.screenshot(tmp_path / "edition-375.png")
    text = browser.eval("document.body.innerText")
    assert "View in browser" in text and "Unsubscribe" in text
    assert browser.eval("document.documentElement.scrollWidth") <= 375
    # the email's own styles apply under the page's CSP (style-src 'unsafe-inline')
    assert browser.eval("document.styleSheets.length") >= 1
    browser.open(url(site, links.archive))
    browser.screenshot(tmp_path / "archive-375.png")
    assert browser.eval("document.querySelectorAll('li a').length") == 1
    browser.click("li a")
    browser.wait_for(f"location.pathname.endsWith('/{NOW.date()}')")


def test_more_matched_opens_the_left_out_papers_on_a_phone(site: Site, browser: Browser,
                                                           tmp_path: Path) -> None:
    links = site.links("fay")
    set_width(browser, 375)
    browser.open(url(site, links.edition(NOW.date())))  # the sent email, as "View in browser"
    button = "document.querySelector('a.button[href*=\"/m/\"]')"
    said, href = browser.eval(f"[{button}.textContent, {button}.href]")
    count = int(said.split()[0])
    assert href == links.more(NOW.date())  # https, behind the proxy: opened here over http
    browser.eval(f"{button}.scrollIntoView({{block: 'center'}})")
    browser.screenshot(tmp_path / "email-more-button-375.png")
    assert browser.eval(f"{button}.getBoundingClientRect().height") >= 24
    browser.open(url(site, href))
    for dark in (False, True):
        set_width(browser, 375, dark)
        browser.screenshot(tmp_path / f"more-375-{'dark' if dark else 'light'}.png")
        assert browser.eval("document.documentElement.scrollWidth") <= 375
        assert browser.eval("document.querySelectorAll('ol.papers li').length") == count
        heights = browser.eval("[...document.querySelectorAll('a.paper')].map(a => "
                               "a.getBoundingClientRect().height)")
        assert len(heights) == count and min(heights) >= 24  # WCAG 2.2 target size
    assert browser.eval("getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    assert f"{count} more matched" in browser.eval("document.querySelector('h1').textContent")
