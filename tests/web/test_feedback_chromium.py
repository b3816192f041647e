"""The feedback buttons clicked in real headless Chromium against a running ``digest serve``,
on a 375 px phone: the click records the verdict in the ledger, the page comes back with it
shown, and nothing scrolls sideways. The screenshot is written to the test's tmp folder.

Skipped only when Chromium is missing and CI is not "true" (in CI these must run)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from chromium_cdp import Browser, chromium_path
from web_site import HOST, NOW, Site

from digest.ledger import Ledger

if chromium_path() is None and os.environ.get("CI") != "true":
    pytest.skip("chromium is not installed", allow_module_level=True)


def test_a_click_on_less_like_this_records_it_and_shows_it(site: Site, browser: Browser,
                                                           tmp_path: Path) -> None:
    email = "ada@example.org"
    row = Ledger(site.config.parent / "digest.db").get(email, NOW.date())
    assert row is not None and len(row.papers) >= 2
    pid = row.papers[1]
    browser.call("Emulation.setDeviceMetricsOverride", session=browser.session, width=375,
                 height=900, deviceScaleFactor=1, mobile=True)
    prefs = site.links("ada").preferences.replace(f"https://{HOST}",
                                                  f"http://{HOST}:{site.port}")
    browser.open(prefs)
    button = f'[id="paper-{pid}"] input[value=less] ~ button'
    assert browser.eval(f"document.querySelector({button!r}).textContent") == "Less like this"
    browser.eval(f"document.querySelector({button!r}).scrollIntoView({{block: 'center'}})")
    browser.click(button)
    browser.wait_for("location.search === '?done=feedback' && location.hash === '#rate' && "
                     "document.readyState === 'complete'")
    said = Ledger(site.config.parent / "digest.db").feedback()[email]
    assert [p.id for p in said.less] == [pid] and said.more == ()
    assert browser.eval(f"document.querySelector({button!r}).getAttribute('aria-pressed')") \
        == "true"
    assert "You asked for less like this." in browser.eval(
        f"document.querySelector('[id=\"paper-{pid}\"]').innerText")
    # the chosen verdict is filled, the other outlined: told apart without reading
    fills = browser.eval(f"[...document.querySelectorAll('[id=\"paper-{pid}\"] button')]"
                         ".map(b => getComputedStyle(b).backgroundColor)")
    assert len(fills) == 2 and fills[0] != fills[1]
    assert browser.eval("document.documentElement.scrollWidth") <= 375
    sizes = browser.eval("[...document.querySelectorAll('#rate button')].map(b => "
                         "Math.min(b.offsetWidth, b.offsetHeight))")
    assert len(sizes) == 2 * len(row.papers) and min(sizes) >= 44  # tap-sized
    shot = browser.screenshot(tmp_path / "feedback-375.png")
    assert struct.unpack(">II", shot[16:24]) == (375, 900)
