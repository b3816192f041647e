"""A real SMTP server for tests and benchmarks (aiosmtpd on 127.0.0.1).

Owns: ``SmtpTestServer``, a context manager that starts aiosmtpd on a free port of its own
choosing (aiosmtpd's Controller cannot use port 0), optionally with STARTTLS or implicit TLS
(certificates from a throwaway trustme CA whose PEM is at ``server.ca_file``) and AUTH with a
given user/password; scripted per-stage behaviour (``Rule``: reply 421/451/550, drop the
connection, stall) and every accepted message kept with its raw bytes. Also ``silent_server``
(accepts TCP, never speaks) for connect-timeout tests. Imports only the standard library,
aiosmtpd and trustme (plus ``digest.models`` for ``smtp_settings``).

As a separate process (the benchmark sink), it only counts messages::

    python tests/smtp_server.py --port 2525      # prints "ready 127.0.0.1:2525", then on
                                                  # SIGTERM/SIGINT "received N"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import functools
import logging
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    syntax,
)

Stage = Literal["helo", "mail", "rcpt", "data"]
Action = Literal["reply", "drop", "stall", "late"]

# aiosmtpd logs every command line at INFO (AUTH lines included): keep test logs quiet.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spawn_sink(*, pipelining: bool = False) -> tuple[subprocess.Popen[str], int]:
    """This file run as a counting sink in another process (for the benches): the process,
    once it printed "ready", and its port."""
    port = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--port", str(port)]
                            + (["--pipelining"] if pipelining else []),
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    ready = sink.stdout.readline().strip()
    if not ready.startswith("ready"):
        sink.kill()
        raise SystemExit(f"the sink did not start: {ready!r}")
    return sink, port


@dataclass(frozen=True)
class Received:
    """One message the server accepted, exactly as it came over the wire."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # raw DATA content (CRLF line ends, dot-unstuffed)
    peer: Any = None
    helo: str | None = None  # the name the client gave in EHLO/HELO

    @functools.cached_property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    def header_lines(self) -> list[str]:
        """The raw header section as unfolded lines (``Name: value``)."""
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        return head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n")


@dataclass
class Rule:
    """What the server does at ``stage`` (for ``recipient`` if given, else any), at most
    ``times`` times (None: always). ``reply`` is a full SMTP reply such as
    ``"451 4.3.0 Try again later"``; ``drop`` closes the connection without a reply; ``stall``
    answers nothing until the stall ends (``SmtpTestServer.stall_seconds``) or the server stops;
    ``late`` (at ``data``) stores the message, then stalls, then answers ``reply`` (a server that
    accepted the message but answers the final "." after the client stopped waiting).
    At ``data`` the whole message has been received when the rule fires."""

    stage: Stage
    reply: str = "451 4.3.0 Try again later"
    action: Action = "reply"
    recipient: str | None = None
    times: int | None = None
    fired: int = 0


@functools.lru_cache(maxsize=1)
def _ca() -> Any:
    import trustme  # only the TLS tests pay for it

    return trustme.CA()


class _Handler:
    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def _apply(self, smtp: SMTP, stage: Stage, recipients: tuple[str, ...]) -> str | None:
        rule = self.server._match(stage, recipients)
        if rule is None:
            return None
        if rule.action == "drop":
            transport = smtp.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return "421 4.4.2 dropped"  # written into a closed transport: never arrives
        if rule.action in ("stall", "late"):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server._release.wait(), self.server.stall_seconds)
        return rule.reply

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        reply = await self._apply(server, "helo", ())
        if reply is not None:
            return [reply]
        session.host_name = hostname
        if self.server.pipelining:  # aiosmtpd reads pipelined commands in order, never offers it
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str) -> str:
        reply = await self._apply(server, "helo", ())
        if reply is not None:
            return reply
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        reply = await self._apply(server, "mail", ())
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = await self._apply(server, "rcpt", (address,))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rule = self.server._peek("data", tuple(envelope.rcpt_tos))
        if rule is not None and rule.action == "late":
            accepted = self.server._accept(envelope, session)
            await self._apply(server, "data", tuple(envelope.rcpt_tos))
            return accepted if rule.reply.startswith("250") else rule.reply
        reply = await self._apply(server, "data", tuple(envelope.rcpt_tos))
        if reply is not None:
            return reply
        return self.server._accept(envelope, session)


_STUFFED_DOT = re.compile(rb"(?m)^\.")


class _BulkDataSMTP(SMTP):
    """aiosmtpd's protocol with a bulk DATA reader, for the benchmark sink only.

    Stock aiosmtpd reads DATA one line at a time (~400 awaits for a 30 KB digest in 76-char
    MIME lines), which makes the sink, not the sender, the bottleneck. This reads up to each
    ``.<CRLF>`` (or a stream-limit's worth), never past the terminator, so pipelined commands
    stay in the stream; everything else (session, hooks, replies) is aiosmtpd's own. Size and
    line-length limits are not enforced: the sink trusts its one client."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        chunks = bytearray()
        while not (chunks == b".\r\n" or chunks.endswith(b"\r\n.\r\n")):
            try:
                chunks += await self._reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as exc:  # no terminator within the limit yet
                chunks += await self._reader.read(exc.consumed)
            except asyncio.IncompleteReadError:  # the client went away mid-DATA
                return
        body = bytes(chunks[:-3])  # drop ".\r\n", keep the last line's CRLF
        self.envelope.original_content = self.envelope.content = _STUFFED_DOT.sub(b"", body)
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


class _Controller(Controller):
    def __init__(self, *args: Any, bulk_data: bool = False, **kwargs: Any) -> None:
        self._bulk_data = bulk_data
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:  # aiosmtpd's documented customization point
        if self._bulk_data:
            return _BulkDataSMTP(self.handler, **self.SMTP_kwargs)
        return SMTP(self.handler, **self.SMTP_kwargs)


class SmtpTestServer:
    """A real aiosmtpd server on 127.0.0.1 for the length of a ``with`` block.

    ``security``: "none", "starttls" (offered, not required) or "tls" (implicit TLS).
    ``auth``: (user, password) to require AUTH (PLAIN/LOGIN) before MAIL (with
    ``security="none"`` AUTH is offered, checked when used, but not required).
    ``keep``: keep received messages (False: only count them, for benchmarks).
    ``cert_names``: the names the server certificate is issued for.
    ``bulk_data``: read DATA in bulk instead of line by line (the benchmark sink's fast path;
    tests keep aiosmtpd's stock reader).
    """

    def __init__(self, *, security: Literal["none", "starttls", "tls"] = "none",
                 auth: tuple[str, str] | None = None, rules: tuple[Rule, ...] | list[Rule] = (),
                 stall_seconds: float = 30.0, keep: bool = True,
                 host: str = "127.0.0.1", port: int | None = None,
                 cert_names: tuple[str, ...] = ("127.0.0.1", "localhost"),
                 bulk_data: bool = False, pipelining: bool = False) -> None:
        self.security = security
        self.pipelining = pipelining  # offer PIPELINING (RFC 2920) as Postfix and Exim do
        self.cert_names = cert_names
        self.bulk_data = bulk_data
        self.auth = auth
        self.rules: list[Rule] = list(rules)
        self.stall_seconds = stall_seconds
        self.keep = keep
        self.host = host
        self.port = port or 0
        self.messages: list[Received] = []
        self.count = 0
        self.auth_attempts: list[str] = []  # usernames tried (never the passwords)
        self.ca_file: Path | None = None
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._controller: Controller | None = None
        self._release = asyncio.Event()

    # -- scripted behaviour

    def add_rule(self, stage: Stage, reply: str = "451 4.3.0 Try again later", *,
                 action: Action = "reply", recipient: str | None = None,
                 times: int | None = None) -> Rule:
        rule = Rule(stage, reply, action, recipient, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self.rules.clear()

    def _match(self, stage: Stage, recipients: tuple[str, ...], *,
               count: bool = True) -> Rule | None:
        wanted = {r.lower() for r in recipients}
        with self._lock:
            for rule in self.rules:
                if rule.stage != stage or (rule.times is not None and rule.fired >= rule.times):
                    continue
                if rule.recipient is not None and rule.recipient.lower() not in wanted:
                    continue
                if count:
                    rule.fired += 1
                return rule
        return None

    def _peek(self, stage: Stage, recipients: tuple[str, ...]) -> Rule | None:
        return self._match(stage, recipients, count=False)

    def _accept(self, envelope: Envelope, session: Session) -> str:
        with self._lock:
            self.count += 1
            n = self.count
            if self.keep:
                self.messages.append(Received(
                    mail_from=str(envelope.mail_from), rcpt_tos=tuple(envelope.rcpt_tos),
                    data=bytes(envelope.original_content or b""), peer=session.peer,
                    helo=session.host_name))
        return f"250 2.0.0 OK queued as Q{n}"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        assert self.auth is not None
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            with self._lock:
                self.auth_attempts.append(user)
            ok = (user, auth_data.password.decode("utf-8", "replace")) == self.auth
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)

    # -- results

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """Block until ``n`` messages arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.count >= n:
                    return list(self.messages)
            time.sleep(0.01)
        raise AssertionError(f"expected {n} messages, got {self.count}")

    def smtp_settings(self, **overrides: Any) -> Any:
        """``SmtpSettings`` pointing at this server (TLS trusted via ``ca_file``, AUTH user set,
        a short timeout); keyword arguments override fields."""
        from digest.models import SmtpSettings

        base = SmtpSettings(
            host=self.host, port=self.port, security=self.security,
            username=self.auth[0] if self.auth else None,
            password_env="SMTP_TEST_PASSWORD" if self.auth else None,
            ca_file=self.ca_file, timeout=2.0, connections=1)
        return replace(base, **overrides)

    # -- lifecycle

    def _tls_context(self) -> ssl.SSLContext:
        ca = _ca()
        self._tmp = tempfile.TemporaryDirectory(prefix="smtp-test-")
        self.ca_file = Path(self._tmp.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*self.cert_names).configure_cert(ctx)
        return ctx

    def start(self) -> SmtpTestServer:
        kwargs: dict[str, Any] = {}
        if self.security != "none":
            ctx = self._tls_context()
            kwargs["ssl_context" if self.security == "tls" else "tls_context"] = ctx
        if self.auth is not None:
            # Without TLS, AUTH is offered but not required: aiosmtpd warns (an error under
            # filterwarnings=error, in its own thread) when it is required over plain text.
            plain = self.security == "none"
            kwargs.update(authenticator=self._authenticate, auth_required=not plain,
                          auth_require_tls=not plain)
        fixed = self.port != 0
        for _attempt in range(1 if fixed else 5):  # another process may grab the port first
            if not fixed:
                self.port = free_port(self.host)
            controller = _Controller(_Handler(self), hostname=self.host, port=self.port,
                                     ready_timeout=5.0, bulk_data=self.bulk_data, **kwargs)
            try:
                controller.start()
            except Exception:
                with contextlib.suppress(Exception):
                    controller.stop(no_assert=True)
                if fixed or _attempt == 4:
                    raise
                continue
            self._controller = controller
            break
        self._release = asyncio.Event()
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            # End any stall first so its handler finishes before the loop stops.
            controller.loop.call_soon_threadsafe(self._release.set)
            time.sleep(0.05 if any(r.action == "stall" for r in self.rules) else 0)
            controller.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def silent_server(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never sends a greeting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        s.listen(8)
        yield int(s.getsockname()[1])


# --------------------------------------------------------------------------- as a process


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A counting SMTP sink (aiosmtpd).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--line-reader", action="store_true",
                        help="use aiosmtpd's stock line-by-line DATA reader (slower)")
    parser.add_argument("--pipelining", action="store_true", help="offer PIPELINING (RFC 2920)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with SmtpTestServer(host=args.host, port=args.port, keep=False,
                        bulk_data=not args.line_reader, pipelining=args.pipelining) as server:
        print(f"ready {server.host}:{server.port}", flush=True)
        while not stop.wait(0.2):
            pass
        count = server.count
    print(f"received {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
