"""The email in real headless Chromium: 375 px and 800 px wide, light and dark colour scheme.
Screenshots must not be blank (pixel variety, decoded here with zlib), dark mode must actually
darken the page, and at 375 px nothing may scroll sideways.

Skipped only when Chromium is missing and CI is not "true" (in CI these must run)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest
from test_renderer import fixed_digest, real_digests

from digest.render import Renderer

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
if not (Path(CHROMIUM).exists() or shutil.which("chromium")) and os.environ.get("CI") != "true":
    pytest.skip("chromium is not installed", allow_module_level=True)

LONG_WORD = "Hyper" + "parameter" * 9  # one unbreakable word wider than a phone


def _chromium(profile: Path, *args: str) -> list[str]:
    exe = CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}", *args]


def _scheme(dark: bool) -> list[str]:
    # Blink's enum: 0 = dark, 1 = light
    return ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"] if dark \
        else ["--blink-settings=preferredColorScheme=1"]


# --------------------------------------------------------------------------- PNG decoding


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered RGB(A) rows of an 8-bit truecolour PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 255
        rows.append(bytes(line))
        prev = rows[-1]
    return width, height, [r if bpp == 3 else bytes(b for i, b in enumerate(r) if i % 4 != 3)
                           for r in rows]


def pixel_stats(png: Path) -> tuple[int, int, float]:
    """Width, number of distinct colours, mean luminance (0-255) of the screenshot."""
    width, _, rows = decode_png(png.read_bytes())
    colours: set[bytes] = set()
    total = count = 0
    for row in rows[::4]:  # every 4th row is plenty for variety and brightness
        for x in range(0, len(row), 3):
            px = row[x:x + 3]
            colours.add(px)
            total += (299 * px[0] + 587 * px[1] + 114 * px[2]) // 1000
            count += 1
    return width, len(colours), total / count


# --------------------------------------------------------------------------- the shots


@pytest.fixture(scope="module")
def email_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A long real digest plus the fixed one's odd cases (hostile title, every link), with an
    unbreakable word in a title, to catch overflow."""
    real = max(real_digests(), key=lambda d: len(d.items))
    odd = fixed_digest()
    first = odd.items[0]
    long_title = dataclasses.replace(first.summary, title=f"{LONG_WORD}: {first.summary.title}")
    items = (dataclasses.replace(first, summary=long_title), *odd.items[1:], *real.items[:7])
    html = Renderer().render(dataclasses.replace(odd, items=items)).html
    folder = tmp_path_factory.mktemp("shots")
    path = folder / "email.html"
    path.write_text(html, encoding="utf-8")
    # Headless windows are at least 500 px wide, so the phone is a 375 px iframe; srcdoc keeps
    # it same-origin and the script writes the email's scroll width into the DOM (--dump-dom)
    probe = folder / "probe.html"
    probe.write_text(
        '<!doctype html><html><body style="margin:0">'
        f'<iframe id="phone" style="width:375px;height:800px;border:0" srcdoc="{escape(html)}">'
        "</iframe><script>document.getElementById('phone').onload = function () {"
        "var doc = this.contentDocument.documentElement;"
        "document.body.setAttribute('data-scroll-width', doc.scrollWidth);"
        "document.body.setAttribute('data-client-width', doc.clientWidth); };</script>"
        "</body></html>", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shots(email_file: Path) -> Iterator[dict[tuple[int, bool], Path]]:
    """All four screenshots, taken in parallel (each Chromium has its own profile)."""
    folder = email_file.parent
    jobs: dict[tuple[int, bool], tuple[Path, subprocess.Popen[bytes]]] = {}
    for width in (375, 800):
        for dark in (False, True):
            png = folder / f"email-{width}-{'dark' if dark else 'light'}.png"
            cmd = _chromium(folder / f"profile-{width}-{dark}", f"--window-size={width},1400",
                            *_scheme(dark), f"--screenshot={png}", email_file.as_uri())
            jobs[(width, dark)] = png, subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for png, proc in jobs.values():
        assert proc.wait(timeout=90) == 0
        assert png.exists()
    yield {key: png for key, (png, _) in jobs.items()}


@pytest.mark.parametrize("width", [375, 800])
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_screenshot_is_not_blank_and_follows_the_scheme(
        shots: dict[tuple[int, bool], Path], width: int, dark: bool) -> None:
    got_width, colours, luminance = pixel_stats(shots[(width, dark)])
    assert got_width == width
    assert colours > 50, "the page looks blank"
    if dark:
        assert luminance < 80, f"dark mode did not darken the page (mean {luminance:.0f})"
    else:
        assert luminance > 180, f"light page is too dark (mean {luminance:.0f})"


def test_no_horizontal_overflow_on_a_phone(email_file: Path) -> None:
    probe = email_file.parent / "probe.html"
    out = subprocess.run(
        _chromium(email_file.parent / "profile-probe", "--window-size=800,900",
                  "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()),
        capture_output=True, timeout=90, check=True).stdout.decode()
    match = re.search(r'data-scroll-width="(\d+)" data-client-width="(\d+)"', out)
    assert match, out[-500:]
    assert int(match.group(2)) == 375  # the probe really laid the email out at phone width
    assert int(match.group(1)) <= 375


# ------------------------------------------------------------------- tap targets, no <style>


def _strip_style(html: str) -> str:
    """The email as Gmail shows it for a non-Google account: every <style> block removed."""
    return re.sub(r"<style\b[^>]*>.*?</style>", "", html, flags=re.S | re.I)


def _phone_probe(folder: Path, name: str, html: str) -> dict[str, object]:
    """Lay ``html`` out at 375 px in Chromium and measure it: the scroll width, and every
    link that must be a tap target (card buttons, titles, the "more" link) smaller than
    24x24 CSS px (WCAG 2.2, 2.5.8)."""
    probe = folder / f"{name}.html"
    probe.write_text(
        '<!doctype html><html><body style="margin:0">'
        f'<iframe id="phone" style="width:375px;height:800px;border:0" srcdoc="{escape(html)}">'
        "</iframe><script>document.getElementById('phone').onload = function () {"
        "var doc = this.contentDocument, small = [], links = doc.querySelectorAll("
        "'a.button, a.title');"
        "for (var i = 0; i < links.length; i++) { var r = links[i].getBoundingClientRect();"
        "if (r.width < 24 || r.height < 24) small.push(links[i].textContent + ' ' +"
        " Math.round(r.width) + 'x' + Math.round(r.height)); }"
        "document.body.setAttribute('data-result', JSON.stringify({targets: links.length,"
        " small: small, scroll: doc.documentElement.scrollWidth})); };</script>"
        "</body></html>", encoding="utf-8")
    out = subprocess.run(
        _chromium(folder / f"profile-{name}", "--window-size=800,900",
                  "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()),
        capture_output=True, timeout=90, check=True).stdout.decode()
    match = re.search(r'data-result="([^"]*)"', out)
    assert match, out[-500:]
    import json
    from html import unescape
    result: dict[str, object] = json.loads(unescape(match.group(1)))
    return result


@pytest.mark.parametrize("styled", [True, False], ids=["styled", "style-stripped"])
def test_links_are_tap_sized_on_a_phone(email_file: Path, styled: bool) -> None:
    html = email_file.read_text(encoding="utf-8")
    html = html if styled else _strip_style(html)
    result = _phone_probe(email_file.parent, f"targets-{styled}", html)
    assert isinstance(result["targets"], int) and result["targets"] >= 10
    assert result["small"] == []
    assert isinstance(result["scroll"], int) and result["scroll"] <= 375


def test_style_stripped_email_keeps_cards_and_colours(email_file: Path) -> None:
    """Without the <style> block the cards still have their box, border and colours inline."""
    html = _strip_style(email_file.read_text(encoding="utf-8"))
    body = html.split("<body", 1)[1]
    assert "<style" not in html
    assert body.count("border:1px solid #d8dee4") >= 10  # one bordered box per card
    assert "color:#0a58ca" in body and "background-color:#ffffff" in body
    png = email_file.parent / "stripped-375.png"
    stripped = email_file.parent / "stripped.html"
    stripped.write_text(html, encoding="utf-8")
    subprocess.run(_chromium(email_file.parent / "profile-stripped", "--window-size=375,1400",
                             *_scheme(False), f"--screenshot={png}", stripped.as_uri()),
                   capture_output=True, timeout=90, check=True)
    width, colours, luminance = pixel_stats(png)
    assert width == 375 and colours > 50 and luminance > 180
