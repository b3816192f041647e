"""Preview: each subscriber's next email, exactly as it would be sent, as files or on a local
web server that re-renders when the config or a template changes.

Owns: composing the stages for a preview (config -> papers -> ledger history -> selection ->
summaries -> digest -> render -> MIME message), writing the ``.html``/``.txt``/``.eml`` files,
and the ``--serve`` HTTP server (stdlib ``http.server``, 127.0.0.1 by default). May import
config, feeds, ledger, selector, pipeline, renderer, mailer, models and errors: like the CLI and
the service it is an edge that composes stages, and it never sends or records anything.
"""

from __future__ import annotations

import html
import ipaddress
import os
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from digest.compose import LazySummaries, build_digest, edition_for
from digest.config import load_config
from digest.delivery import OutgoingMessage, build_message, selection_histories
from digest.errors import DigestError, InputError
from digest.feeds import papers_for
from digest.files import atomic_write
from digest.ledger import open_ledger
from digest.models import Config, Digest, Paper, RenderedEmail, Subscriber
from digest.render import Renderer, stock_templates
from digest.selection import plan


@dataclass(frozen=True)
class Preview:
    """One subscriber's next email: the digest, its rendered parts and the full message."""

    subscriber: Subscriber
    digest: Digest
    rendered: RenderedEmail
    message: OutgoingMessage
    note: str | None = None  # why it would not be sent as is (nothing new, suppressed)


def file_stem(email: str) -> str:
    """A safe file name for an address (``ada@example.org`` stays as it is)."""
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", email.strip().lower()) or "subscriber"


def choose(config: Config, emails: Sequence[str]) -> tuple[Subscriber, ...]:
    """The subscribers named by ``emails`` (all of them when empty); unknown ones are an error."""
    if not emails:
        return config.subscribers
    out: list[Subscriber] = []
    for email in emails:
        sub = config.subscriber(email)
        if sub is None:
            known = ", ".join(s.email for s in config.subscribers[:5])
            raise InputError(config.path, f"no subscriber {email!r} (known: {known}"
                             f"{', ...' if len(config.subscribers) > 5 else ''})")
        out.append(sub)
    return tuple(out)


def build_previews(config: Config, papers: Sequence[Paper], now: datetime,
                   subscribers: Sequence[Subscriber], *, renderer: Renderer | None = None,
                   environ: Mapping[str, str] | None = None) -> tuple[Preview, ...]:
    """The next email of each subscriber given ``papers`` and the ledger's history (a missing
    database is an empty history). Papers already sent are left out, as a send would."""
    settings = config.settings
    env = os.environ if environ is None else environ
    secret = env.get(settings.unsubscribe_secret_env) if settings.unsubscribe_secret_env else None
    renderer = renderer or Renderer(settings.templates, max_bytes=settings.max_email_bytes)
    with open_ledger(settings.database) as ledger:
        history = selection_histories(subscribers, ledger, now)  # the one rule a send uses
        suppressed = ledger.suppressed()
        chosen = {p.email: p for p in ledger.all_preferences()}  # digest serve's, over the YAML
        feedback = ledger.feedback()  # digest feedback, as a send reads it
    subscribers = [chosen[s.email.lower()].apply(s) if s.email.lower() in chosen else s
                   for s in subscribers]
    summaries = LazySummaries(papers, settings.summary_chars)
    out: list[Preview] = []
    for selection in plan(papers, subscribers, history, feedback=feedback):
        sub = selection.subscriber
        digest = build_digest(selection, summaries, edition_for(sub, now), now, settings,
                              unsubscribe_secret=secret)
        rendered = renderer.render(digest)
        note = None
        paused = chosen.get(sub.email.lower())
        if sub.email.lower() in suppressed:
            note = "unsubscribed: nothing would be sent"
        elif paused is not None and paused.paused_on(digest.edition):
            note = f"paused until {paused.paused_until}: nothing would be sent"
        elif not rendered.papers:
            note = "nothing new: nothing would be sent" + (
                f" ({selection.skipped_reason})" if selection.skipped_reason else "")
        out.append(Preview(sub, digest, rendered, build_message(rendered, digest, settings,
                                                                now=now), note))
    return tuple(out)


def load_previews(config_path: Path, papers_path: Path | None, now: datetime,
                  emails: Sequence[str] = (), *, environ: Mapping[str, str] | None = None
                  ) -> tuple[Preview, ...]:
    """Everything ``digest preview`` does short of writing files: load, select, render."""
    config = load_config(config_path, environ=environ)
    subscribers = choose(config, emails)
    papers = papers_for(config.settings, papers_path, now)
    return build_previews(config, papers, now, subscribers, environ=environ)


def write_previews(previews: Sequence[Preview], out_dir: Path) -> list[Path]:
    """``<out>/<email>.html``, ``.txt`` and ``.eml`` for each preview; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for p in previews:
        stem = out_dir / file_stem(p.subscriber.email)
        for suffix, data in ((".html", p.rendered.html.encode()),
                             (".txt", p.rendered.text.encode()),
                             (".eml", p.message.data)):
            path = stem.with_name(stem.name + suffix)
            atomic_write(path, data)
            paths.append(path)
    return paths


# --------------------------------------------------------------------------- the server


def _mtimes(paths: Sequence[Path | None]) -> tuple[tuple[str, float], ...]:
    """Modification times of these files and of every file in these folders."""
    out: list[tuple[str, float]] = []
    for path in paths:
        if path is None:
            continue
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            try:
                out.append((str(f), f.stat().st_mtime_ns))
            except OSError:
                out.append((str(f), -1))
    return tuple(out)


class PreviewState:
    """What the server shows, rebuilt when the config, the papers file or a template changes
    (checked on every request: a few ``stat`` calls). A broken config or template becomes an
    error page, never a crash; the next good edit brings the previews back."""

    def __init__(self, config_path: Path, papers_path: Path | None = None,
                 now: datetime | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.config_path = config_path
        self.papers_path = papers_path
        self.now = now
        self.environ = environ
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float], ...] | None = None
        self._papers: tuple[Paper, ...] | None = None
        self._papers_stamp: tuple[tuple[str, float], ...] | None = None
        self._templates: Path | None = None  # the user template folder, once the config says
        self.previews: tuple[Preview, ...] = ()
        self.error: str | None = None

    def refresh(self) -> None:
        with self._lock:
            stamp = _mtimes([self.config_path, self.papers_path, stock_templates(),
                             self._templates])
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                self._rebuild()
                self.error = None
            except DigestError as exc:
                self.previews, self.error = (), str(exc)

    def _rebuild(self) -> None:
        config = load_config(self.config_path, environ=self.environ)
        if config.settings.templates != self._templates:  # watch the new folder from now on
            self._templates = config.settings.templates
            self._stamp = None
        now = self.now or datetime.now(timezone.utc)
        # papers only when their source changed: a live feed is not refetched per template edit
        papers_stamp = _mtimes([self.config_path, self.papers_path])
        if self._papers is None or papers_stamp != self._papers_stamp:
            self._papers = papers_for(config.settings, self.papers_path, now)
            self._papers_stamp = papers_stamp
        self.previews = build_previews(config, self._papers, now, config.subscribers,
                                       environ=self.environ)

    def find(self, stem: str) -> Preview | None:
        return next((p for p in self.previews if file_stem(p.subscriber.email) == stem), None)


def _index_page(state: PreviewState) -> str:
    if state.error is not None:
        lines = "\n".join(html.escape(line) for line in state.error.splitlines())
        return _page("paper-digest preview: error",
                     f"<h1>The config or a template has a problem</h1><pre>{lines}</pre>"
                     "<p>Fix it and reload this page.</p>")
    rows = []
    for p in state.previews:
        stem = html.escape(file_stem(p.subscriber.email), quote=True)
        note = f" <em>({html.escape(p.note)})</em>" if p.note else ""
        rows.append(
            f'<li><a href="/{stem}.html">{html.escape(p.subscriber.email)}</a>'
            f" - {html.escape(p.rendered.subject)}{note}"
            f' [<a href="/{stem}.txt">text</a> | <a href="/{stem}.eml">.eml</a>]</li>')
    body = "<ul>" + "\n".join(rows) + "</ul>" if rows else "<p>No subscribers.</p>"
    return _page("paper-digest preview",
                 f"<h1>Next emails ({len(state.previews)})</h1>{body}"
                 "<p>Edit the config or a template and reload: the emails are re-rendered.</p>")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
            f"padding:0 1rem}}pre{{white-space:pre-wrap}}</style></head><body>{body}</body></html>")


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    """Whether a request's ``Host`` names this server: an IP address (DNS rebinding needs a
    domain name of the attacker's, never a literal address) or one of ``names`` (lower-case),
    with any port."""
    if not header:
        return False
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:8025
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host.rstrip(".") in names


class _Handler(BaseHTTPRequestHandler):
    server: PreviewServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not host_allowed(self.headers.get("Host"), self.server.host_names):
            # Another name resolving to us is a DNS-rebinding page reading subscribers' mail.
            return self._send(HTTPStatus.BAD_REQUEST, "text/plain", b"unknown Host header\n")
        state = self.server.state
        state.refresh()
        path = unquote(self.path.split("?", 1)[0])
        if path in ("/", "/index.html"):
            status = HTTPStatus.OK if state.error is None else HTTPStatus.INTERNAL_SERVER_ERROR
            return self._send(status, "text/html", _index_page(state).encode())
        stem, _, suffix = path.lstrip("/").rpartition(".")
        found = state.find(stem) if suffix in ("html", "txt", "eml") else None
        if found is None:
            if state.error is not None:
                return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/html",
                                  _index_page(state).encode())
            return self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
        if suffix == "html":
            return self._send(HTTPStatus.OK, "text/html", found.rendered.html.encode())
        if suffix == "txt":
            return self._send(HTTPStatus.OK, "text/plain", found.rendered.text.encode())
        # shown as text so a browser displays the raw message instead of downloading it
        return self._send(HTTPStatus.OK, "text/plain", found.message.data)

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: the CLI prints the address once; request logs would bury errors


class PreviewServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` serving a ``PreviewState``. Binds 127.0.0.1 unless told."""

    daemon_threads = True

    def __init__(self, state: PreviewState, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.state = state
        names = {"localhost", host.lower()}
        if host in ("0.0.0.0", "::", ""):  # every interface: this machine's own names too
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.host_names = frozenset(names)  # besides IP addresses, which are always fine
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"
