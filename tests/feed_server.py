"""A real HTTP server on 127.0.0.1 that serves recorded payloads, and the faults a network brings.

Each path has a queue of ``Reply`` values (the last one repeats); a reply can be slow (a
timeout for an impatient client), cut short (a ``Content-Length`` longer than what is sent,
then the connection closes), a 304 when the request's ``If-None-Match`` matches, or any status
with any body. Every request is recorded (path, query, headers) for the assertions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    body: bytes = b""
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds before answering
    cut: int | None = None  # send only this many bytes of the body, announcing all of it
    etag: str | None = None  # answer 304 when the request sends If-None-Match: this


@dataclass
class Seen:
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class FeedServer:
    routes: dict[str, list[Reply]] = field(default_factory=dict)
    defaults: dict[str, Reply] = field(default_factory=dict)  # path prefix -> reply
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def route(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def default(self, prefix: str, reply: Reply) -> None:
        """The reply for any other path under ``prefix`` (earlier days of a walk back)."""
        self.defaults[prefix] = reply

    def requests(self, prefix: str = "") -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    def _next(self, path: str) -> Reply:
        replies = self.routes.get(path)
        if not replies:
            for prefix, reply in self.defaults.items():
                if path.startswith(prefix):
                    return reply
            return Reply(b"not found", 404, (("Content-Type", "text/plain"),))
        return replies.pop(0) if len(replies) > 1 else replies[0]


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    state = FeedServer()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            with lock:
                state.seen.append(Seen(parts.path, parts.query, dict(self.headers.items())))
                reply = state._next(parts.path)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.etag and self.headers.get("If-None-Match") == reply.etag:
                self.send_response(304)
                self.send_header("ETag", reply.etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.etag:
                self.send_header("ETag", reply.etag)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.cut is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(reply.body if reply.cut is None else reply.body[:reply.cut])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            if reply.cut is not None:
                self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="feed-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
