"""Preview: the files a preview writes (the .eml is the message a send would build), history
from a real SQLite ledger, the CLI, and the live-reloading preview server on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import main
from digest.ledger import Ledger
from digest.preview._preview import (
    PreviewServer,
    PreviewState,
    load_previews,
    write_previews,
)

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)

CONFIG = """\
settings:
  sender: "Paper Digest <digest@example.org>"
  database: digest.db
  outbox: outbox/
  feed: {source: sample}
  templates: tpl/
subscribers:
  - email: ada@example.org
    name: Ada
    max_papers: 3
    topics:
      - name: Quantization
        include: [quantization]
  - email: grace@example.org
    topics:
      - name: Diffusion
        include: [diffusion]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "tpl").mkdir()
    path = tmp_path / "subscribers.yaml"
    path.write_text(CONFIG)
    return path


def test_preview_files_are_the_message_a_send_would_build(config: Path, tmp_path: Path) -> None:
    previews = load_previews(config, None, NOW)
    assert [p.subscriber.email for p in previews] == ["ada@example.org", "grace@example.org"]
    ada = previews[0]
    assert len(ada.rendered.papers) == 3 and ada.note is None
    assert ada.rendered.subject == "3 new papers on Quantization - Wed 25 Nov"
    paths = write_previews(previews, tmp_path / "out")
    assert [p.name for p in paths[:3]] == [
        "ada@example.org.html", "ada@example.org.txt", "ada@example.org.eml"]
    assert paths[0].read_text() == ada.rendered.html
    msg = email.message_from_bytes(paths[2].read_bytes(), policy=email.policy.default)
    assert msg["To"] == "Ada <ada@example.org>"
    assert msg["Subject"] == ada.rendered.subject
    html_part = msg.get_body(("html",))
    text_part = msg.get_body(("plain",))
    assert html_part is not None and text_part is not None
    def norm(s: str) -> str:  # line endings are the wire format's business
        return s.replace("\r\n", "\n").rstrip("\n")

    assert norm(html_part.get_content()) == norm(ada.rendered.html)
    assert norm(text_part.get_content()) == norm(ada.rendered.text)
    assert not (tmp_path / "digest.db").exists()  # a preview records nothing


def test_preview_leaves_out_papers_already_sent(config: Path, tmp_path: Path) -> None:
    first = load_previews(config, None, NOW, ["ada@example.org"])[0].rendered.papers
    with Ledger(tmp_path / "digest.db") as ledger:
        ledger.begin("ada@example.org", date(2026, 11, 24), message_id="<a@b>",
                     papers=first[:2], data=None, now=NOW - timedelta(days=1))
        ledger.mark_sent("ada@example.org", date(2026, 11, 24), now=NOW - timedelta(days=1))
    again = load_previews(config, None, NOW, ["ada@example.org"])[0].rendered.papers
    assert not set(first[:2]) & set(again)
    assert first[2] in again


def test_preview_leaves_out_papers_of_an_edition_still_being_retried(
        config: Path, tmp_path: Path) -> None:
    # A deferred edition will still deliver its papers: a send leaves them out of a new
    # selection, and so must the preview (it once showed them again).
    first = load_previews(config, None, NOW, ["ada@example.org"])[0].rendered.papers
    with Ledger(tmp_path / "digest.db") as ledger:
        ledger.begin("ada@example.org", date(2026, 11, 24), message_id="<a@b>",
                     papers=first[:2], data=None, now=NOW - timedelta(days=1))
        ledger.mark_deferred("ada@example.org", date(2026, 11, 24), now=NOW - timedelta(days=1),
                             code=451, error="try later")
    again = load_previews(config, None, NOW, ["ada@example.org"])[0].rendered.papers
    assert not set(first[:2]) & set(again)
    assert first[2] in again


def test_cli_writes_and_prints_paths(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["preview", "-c", str(config), "--out", str(out),
                                       "--now", "2026-11-25T07:00Z", "-s", "GRACE@example.org"])
    assert result.exit_code == 0, result.output
    assert f"{out / 'grace@example.org.eml'}" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "grace@example.org.eml", "grace@example.org.html", "grace@example.org.txt"]


def test_cli_errors_are_one_line_exit_1(config: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["preview", "-c", str(config), "--out", str(tmp_path / "o"),
                                  "nobody@example.org"])
    assert result.exit_code == 1
    assert "no subscriber 'nobody@example.org'" in result.output
    assert "Traceback" not in result.output
    bad = runner.invoke(main, ["preview", "-c", str(config), "--now", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO-8601 date-time" in bad.output


# --------------------------------------------------------------------------- the server


@pytest.fixture
def server(config: Path) -> Iterator[PreviewServer]:
    srv = PreviewServer(PreviewState(config, None, NOW), "127.0.0.1", 0)  # the OS picks a port
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _touch_later(path: Path) -> None:
    # coarse-mtime filesystems: move the clock forward so the change is always seen
    later = path.stat().st_mtime + 2
    os.utime(path, (later, later))


def test_server_lists_subscribers_and_reloads_on_template_edit(
        server: PreviewServer, config: Path) -> None:
    assert server.server_address[0] == "127.0.0.1"
    status, index = _get(server.url)
    assert status == 200
    assert 'href="/ada@example.org.html"' in index and "grace@example.org" in index
    assert "3 new papers on Quantization - Wed 25 Nov" in index
    status, page = _get(server.url + "ada@example.org.html")
    assert status == 200 and page.startswith("<!doctype html>") and "reply to this email" in page
    status, text = _get(server.url + "ada@example.org.txt")
    assert status == 200 and "Ada, your paper digest" in text

    override = config.parent / "tpl" / "digest.mjml"
    override.write_text('{% extends "stock/digest.mjml" %}{% block footer %}'
                        "<mj-text>Edited footer</mj-text>{% endblock %}")
    _touch_later(override)
    status, page = _get(server.url + "ada@example.org.html")
    assert status == 200 and "Edited footer" in page and "reply to this email" not in page
    assert _get(server.url + "nobody.html")[0] == 404


def test_server_shows_config_errors_then_recovers(server: PreviewServer, config: Path) -> None:
    good = config.read_text()
    config.write_text(good.replace("max_papers: 3", "max_papers: lots"))
    _touch_later(config)
    status, page = _get(server.url)
    assert status == 500
    assert f"{config}:10: subscribers[0].max_papers" in page  # file:line from the validator
    config.write_text(good)
    _touch_later(config)
    status, page = _get(server.url)
    assert status == 200 and "ada@example.org" in page


def test_server_shows_template_errors(server: PreviewServer, config: Path) -> None:
    broken = config.parent / "tpl" / "_paper.mjml"
    broken.write_text("<mj-section><mj-column><mj-text>{{ card.nope }}</mj-text>"
                      "</mj-column></mj-section>")
    _touch_later(broken)
    status, page = _get(server.url + "ada@example.org.html")
    assert status == 500 and "_paper.mjml:1" in page and "nope" in page


# --------------------------------------------------------------------------- the Host check


def _get_as(url: str, host: str | None) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.putrequest("GET", "/", skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_server_answers_only_its_own_names(server: PreviewServer) -> None:
    port = server.server_address[1]
    # a DNS-rebinding page: the attacker's name resolving to 127.0.0.1
    for bad in ("evil.example", f"evil.example:{port}", "localhost.evil.example", None):
        assert _get_as(server.url, bad) == 400, bad
    for good in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
        assert _get_as(server.url, good) == 200, good


def test_cli_warns_when_not_bound_to_loopback(config: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: the warning shows, then binding fails
    result = CliRunner().invoke(main, ["preview", "-c", str(config), "--serve", "--host",
                                       "192.0.2.1", "--port", "8025"])
    assert result.exit_code == 1
    assert "warning: --host 192.0.2.1 shows every subscriber's email" in result.output
    assert "cannot listen on 192.0.2.1:8025" in result.output


def test_preview_lays_the_preferences_page_over_the_yaml(config: Path) -> None:
    with Ledger(config.parent / "digest.db") as ledger:
        ledger.set_preferences("ada@example.org", paused_until=None, max_papers=1, now=NOW)
        ledger.set_preferences("grace@example.org", paused_until=date(2026, 12, 1),
                               max_papers=None, now=NOW)
    ada, grace = load_previews(config, None, NOW)
    assert len(ada.rendered.papers) == 1 and ada.note is None  # the YAML says 3
    assert grace.note == "paused until 2026-12-01: nothing would be sent"
