"""Fixtures the web tests share: one running ``digest serve`` site per test module (module
scope: each module gets its own, so one module's unsubscribes never leak into another), an
HTTP client that sends the configured Host, and one headless Chromium per module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from chromium_cdp import Browser
from web_site import HOST, Site, make_site, running


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running(make_site(tmp_path_factory.mktemp("site"))) as s:
        yield s


@pytest.fixture
def http(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Host": HOST}, follow_redirects=False, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("profile"), resolve=(HOST,))
    try:
        yield b
    finally:
        b.close()
