"""A real ``digest serve`` for tests: a YAML config with ``base_url``, one real send into a
Maildir outbox (so the ledger archives real messages), and uvicorn on a free 127.0.0.1 port in
a thread. Requests name the configured host in ``Host``; the server sees exactly what a
reverse proxy would forward."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import uvicorn

from digest.compose import Links, links_for
from digest.config import load_config
from digest.delivery import send_all
from digest.feeds import sample_papers
from digest.web import WebState, create_app

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
HOST = "digest.test"
BASE_URL = f"https://{HOST}/news"
SECRET = "s" * 40
ENV = {"DIGEST_UNSUBSCRIBE_SECRET": SECRET}
PEOPLE = ("ada", "bob", "cy", "dee", "eve", "fay", "gil")

CONFIG = f"""\
settings:
  sender: "Paper Digest <digest@example.org>"
  database: digest.db
  outbox: outbox/
  feed: {{source: sample}}
  base_url: {BASE_URL}
  unsubscribe_secret_env: DIGEST_UNSUBSCRIBE_SECRET
subscribers:
""" + "".join(f"""\
  - email: {name}@example.org
    name: {name.title()}
    max_papers: 3
    topics: [diffusion, quantization, language model]
""" for name in PEOPLE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Site:
    config: Path
    state: WebState
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def links(self, name: str) -> Links:
        return links_for(BASE_URL, f"{name}@example.org", SECRET)

    def local(self, url: str) -> str:
        """An https link of ours as the URL this test server answers."""
        return self.origin + url.removeprefix(f"https://{HOST}")


def make_site(folder: Path) -> Path:
    """The config, with one edition sent (and archived) to everyone."""
    config = folder / "subscribers.yaml"
    config.write_text(CONFIG)
    loaded = load_config(config, environ=ENV)
    report = send_all(loaded, sample_papers(), NOW, environ=ENV)
    assert report.sent == len(PEOPLE), report
    return config


@contextmanager
def running(config: Path) -> Iterator[Site]:
    state = WebState(config, environ=ENV, clock=lambda: NOW)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(state), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="digest-serve-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Site(config, state, port)
    finally:
        server.should_exit = True
        thread.join(10)
        state.close()
