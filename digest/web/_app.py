"""The Starlette app of ``digest serve`` and the uvicorn runner.

Routes (under the path of ``settings.base_url``; spelled once, in ``digest.compose``):
``/u/<token>`` RFC 8058 one-click unsubscribe (POST ``List-Unsubscribe=One-Click``: suppressed
at once, 200, no redirect, no cookie) and its confirm page (GET: a button, never an
unsubscribe by itself); ``/p/<token>`` the preferences page and its forms (the feedback
buttons among them); ``/a/<token>`` the archive, ``/a/<token>/<YYYY-MM-DD>`` one sent edition,
``/m/<token>/<YYYY-MM-DD>`` the matches it left out ("N more matched"),
``/a/<token>/feed.atom`` the feed.
A forged, tampered or unknown token gets 404 and changes nothing. Only the host of
``base_url`` is served (any other ``Host`` header: 400, against DNS rebinding).

May import starlette, uvicorn and the web stage's own modules.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.compose import (
    ARCHIVE_PATH,
    EDITION_PATH,
    FEED_PATH,
    MORE_PATH,
    PREFERENCES_PATH,
    UNSUBSCRIBE_PATH,
)
import digest.web._pages as _pages
from digest.web._archive import FEED_ENTRIES, atom_feed, open_message
from digest.web._feedback import VERDICTS, find_paper, recent_papers
from digest.web._state import WebState, Who

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 4096  # our forms are a few fields; anything bigger is not ours
_NOTICES = {
    "paused": "Paused. Nothing is sent until the date you chose.",
    "resumed": "Resumed: your digests come on schedule again.",
    "max_papers": "Saved: your digests have at most that many papers from now on.",
    "unsubscribed": "You are unsubscribed: no more digests.",
    "resubscribed": "Welcome back: your digests come on schedule again.",
    "feedback": "Saved: your next digests take it into account.",
}
_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),  # a paper link never carries the token elsewhere
    (b"x-content-type-options", b"nosniff"),
    (b"x-robots-tag", b"noindex, nofollow"),
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
]


def _route(path: str) -> str:
    """``/u/{token}`` as a Starlette route pattern (the edition as a date-shaped segment)."""
    return path.replace("{edition}", "{edition:str}")


def _local(url: str) -> str:
    """A link of ours as a path, so the page works at any scheme and port the proxy uses."""
    return urlsplit(url).path


class _SecurityHeaders:
    """Adds the same protective headers to every response (pure ASGI, no buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


class _Views:
    def __init__(self, state: WebState) -> None:
        self.state = state

    # ------------------------------------------------------------------ helpers

    async def _who(self, request: Request) -> Who | None:
        return await run_in_threadpool(self.state.who, str(request.path_params["token"]))

    @staticmethod
    async def _form(request: Request) -> FormData | Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
            return HTMLResponse(_pages.bad_request("The form is too large."), 413)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return HTMLResponse(_pages.bad_request("The form is too large."), 413)
        return await request.form(max_files=0, max_fields=8)

    def _today(self, who: Who) -> date:
        zone = ZoneInfo(who.subscriber.timezone if who.subscriber else "UTC")
        return self.state.clock().astimezone(zone).date()

    def _cross_site(self, request: Request) -> bool:
        """A form post another site made a browser send (the token is the real guard; this
        refuses what a browser tells us came from elsewhere)."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return True
        origin = request.headers.get("origin")
        return origin not in (None, "null") and \
            (urlsplit(origin).hostname or "").lower() != self.state.host

    @staticmethod
    def _missing() -> HTMLResponse:
        return HTMLResponse(_pages.not_found(), 404)

    # ------------------------------------------------------------------ RFC 8058

    async def unsubscribe(self, request: Request) -> Response:
        who = await self._who(request)
        if who is None:
            return self._missing()
        state = self.state
        if request.method == "GET":
            already = await run_in_threadpool(state.ledger.is_suppressed, who.email)
            return HTMLResponse(_pages.confirm_unsubscribe(
                who.email, state.list_name(), _local(who.links.preferences), already))
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        if form.get("List-Unsubscribe") != "One-Click":
            return HTMLResponse(_pages.bad_request(
                "A one-click unsubscribe sends List-Unsubscribe=One-Click (RFC 8058)."), 400)
        new = await run_in_threadpool(state.ledger.suppress, who.email, now=state.clock(),
                                      source="web")
        if new:
            log.info("unsubscribed %s (one-click)", who.email)
        return HTMLResponse(_pages.unsubscribed(who.email, state.list_name(),
                                                _local(who.links.preferences)))

    # ------------------------------------------------------------------ preferences

    def _view(self, who: Who, notice: str | None = None,
              error: str | None = None) -> _pages.PreferencesView:
        ledger = self.state.ledger
        rated = recent_papers(ledger, who.email)
        return _pages.PreferencesView(
            email=who.email, list_name=self.state.list_name(),
            yaml_max_papers=who.subscriber.max_papers if who.subscriber else None,
            chosen=ledger.preferences(who.email), today=self._today(who),
            suppressed_by=ledger.suppression_source(who.email),
            archive_url=_local(who.links.archive), feed_url=_local(who.links.feed),
            notice=notice, error=error, rated=rated,
            edition_urls=tuple(_local(who.links.edition(e.edition)) for e in rated))

    async def preferences(self, request: Request) -> Response:
        who = await self._who(request)
        if who is None:
            return self._missing()
        if request.method == "GET":
            notice = _NOTICES.get(request.query_params.get("done", ""))
            view = await run_in_threadpool(self._view, who, notice)
            return HTMLResponse(_pages.preferences(view))
        if self._cross_site(request):
            return HTMLResponse(_pages.bad_request("This form only works from its own page."),
                                403)
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        done, error = await run_in_threadpool(self._change, who, form)
        if error is not None:
            view = await run_in_threadpool(self._view, who, None, error)
            return HTMLResponse(_pages.preferences(view), 400)
        # Post/redirect/get: a reload does not post again. Only this form redirects; the
        # one-click unsubscribe never does.
        anchor = "#rate" if done == "feedback" else ""
        return RedirectResponse(f"{_local(who.links.preferences)}?done={done}{anchor}", 303)

    def _change(self, who: Who, form: FormData) -> tuple[str, str | None]:
        """Apply one form's change; (notice key, error message or None)."""
        ledger, now = self.state.ledger, self.state.clock()
        action = str(form.get("action", ""))
        chosen = ledger.preferences(who.email)
        paused, count = (chosen.paused_until, chosen.max_papers) if chosen else (None, None)
        if action == "unsubscribe":
            ledger.suppress(who.email, now=now, source="web")
            log.info("unsubscribed %s (preferences page)", who.email)
            return "unsubscribed", None
        if action == "resubscribe":
            if ledger.suppression_source(who.email) != "web":
                return "", "Only an unsubscribe made on this page can be undone here."
            ledger.unsuppress(who.email)
            return "resubscribed", None
        if who.subscriber is None:
            return "", "This address is no longer on the list."
        if action in VERDICTS:
            # What `digest feedback --more/--less` records, through the same ledger method;
            # only a paper the page lists (one of the recent editions') can be rated.
            paper_id = str(form.get("paper", ""))
            rated = recent_papers(ledger, who.email)
            paper = find_paper(rated, paper_id)
            if paper is None:
                return "", "That paper is not one of your recent digests' papers."
            said = next(r.verdict for e in rated for r in e.papers if r.paper.id == paper_id)
            if said != action:  # the same choice again changes nothing
                ledger.record_feedback(who.email, paper, action, now=now)
                log.info("feedback %s: %s like %s", who.email, action, paper_id)
            return "feedback", None
        if action == "pause":
            today = self._today(who)
            try:
                until = date.fromisoformat(str(form.get("until", "")))
            except ValueError:
                return "", "Choose the day your digests should start again."
            if not today < until <= today + timedelta(days=366):
                return "", "Choose a day between tomorrow and a year from now."
            ledger.set_preferences(who.email, paused_until=until, max_papers=count, now=now)
            return "paused", None
        if action == "resume":
            ledger.set_preferences(who.email, paused_until=None, max_papers=count, now=now)
            return "resumed", None
        if action in ("max_papers", "max_papers_default"):
            value = None
            if action == "max_papers":
                text = str(form.get("max_papers", "")).strip()
                if not text.isdigit() or not 1 <= int(text) <= _pages.MAX_PAPERS_LIMIT:
                    return "", f"Choose a number from 1 to {_pages.MAX_PAPERS_LIMIT}."
                value = int(text)
                if value == who.subscriber.max_papers:
                    value = None  # the YAML's own number: nothing to lay over it
            ledger.set_preferences(who.email, paused_until=paused, max_papers=value, now=now)
            return "max_papers", None
        return "", "Unknown action."

    # ------------------------------------------------------------------ archive and feed

    def _archive_page(self, who: Who) -> str:
        ledger = self.state.ledger
        rows = []
        for row in ledger.archived(who.email):
            data = ledger.archived_message(who.email, row.edition)
            subject = open_message(data).subject if data else row.edition.isoformat()
            rows.append((row, subject, _local(who.links.edition(row.edition))))
        return _pages.archive(who.email, self.state.list_name(), rows,
                              _local(who.links.feed), _local(who.links.preferences))

    async def archive(self, request: Request) -> Response:
        who = await self._who(request)
        if who is None:
            return self._missing()
        return HTMLResponse(await run_in_threadpool(self._archive_page, who))

    async def _who_and_day(self, request: Request) -> tuple[Who, date] | None:
        """The subscriber a token names and the edition date in the path, or None (-> 404)."""
        who = await self._who(request)
        if who is None:
            return None
        try:
            return who, date.fromisoformat(str(request.path_params["edition"]))
        except ValueError:
            return None

    async def edition(self, request: Request) -> Response:
        found = await self._who_and_day(request)
        if found is None:
            return self._missing()
        who, day = found
        data = await run_in_threadpool(self.state.ledger.archived_message, who.email, day)
        sent = None if data is None else open_message(data)
        if sent is None or sent.html is None:
            return self._missing()
        return HTMLResponse(sent.html)

    async def more(self, request: Request) -> Response:
        """"N more matched": what that edition left out, as frozen at send time."""
        found = await self._who_and_day(request)
        if found is None:
            return self._missing()
        who, day = found
        matches = await run_in_threadpool(self.state.ledger.archived_left_out, who.email, day)
        if not matches:
            return self._missing()
        return HTMLResponse(_pages.left_out(
            who.email, self.state.list_name(), day, matches, _local(who.links.edition(day)),
            _local(who.links.archive), _local(who.links.preferences)))

    def _feed(self, who: Who) -> str:
        ledger = self.state.ledger
        entries = []
        for row in ledger.archived(who.email)[:FEED_ENTRIES]:
            data = ledger.archived_message(who.email, row.edition)
            if data is not None:
                entries.append((row, open_message(data), who.links.edition(row.edition)))
        return atom_feed(title=f"{self.state.list_name()} for {who.email}",
                         feed_url=who.links.feed, archive_url=who.links.archive,
                         entries=entries, updated=self.state.clock())

    async def feed(self, request: Request) -> Response:
        who = await self._who(request)
        if who is None:
            return self._missing()
        return Response(await run_in_threadpool(self._feed, who),
                        media_type="application/atom+xml")


def create_app(state: WebState) -> Starlette:
    """The ASGI app over ``state``; the host check and the security headers wrap everything."""
    views = _Views(state)
    routes: list[BaseRoute] = [
        Route(_route(UNSUBSCRIBE_PATH), views.unsubscribe, methods=["GET", "POST"]),
        Route(_route(PREFERENCES_PATH), views.preferences, methods=["GET", "POST"]),
        Route(_route(FEED_PATH), views.feed, methods=["GET"]),  # before the edition pattern
        Route(_route(EDITION_PATH), views.edition, methods=["GET"]),
        Route(_route(MORE_PATH), views.more, methods=["GET"]),
        Route(_route(ARCHIVE_PATH), views.archive, methods=["GET"]),
    ]
    if state.path:
        routes = [Mount(state.path, routes=routes)]

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found\n", 404)

    return Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=[state.host],
                               www_redirect=False),
                    Middleware(_SecurityHeaders)],
        exception_handlers={404: not_found})


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so a bad address is an ``OSError``
    the CLI can word (uvicorn itself would log it and exit 3)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve(state: WebState, sock: socket.socket) -> None:
    """Run the app with uvicorn on ``sock`` until interrupted (no access log: paths carry
    tokens)."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(create_app(state), host=host, port=port, log_level="info",
                            access_log=False, server_header=False, proxy_headers=True,
                            forwarded_allow_ips="127.0.0.1")
    uvicorn.Server(config).run(sockets=[sock])


def utc_now() -> datetime:
    return datetime.now(UTC)
