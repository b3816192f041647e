"""Where built messages go: an SMTP server or a local Maildir.

Owns: the ``Transport`` protocol, ``SmtpTransport`` (one reused, verified-TLS connection),
``MaildirOutbox`` (atomic Maildir writes, the embedded default), the shared ``RateLimiter``
and ``open_transport(settings, environ)`` which returns a factory the delivery service calls
once per pool worker. May import ``models``, ``errors`` and ``mailer`` (for
``OutgoingMessage``); never the ledger or the service, which decide what to send and when.

Error contract (what the service relies on):
- ``DeliveryError(temporary=True)``: this one message was not accepted but may be later (4xx
  reply, timeout or dropped connection during the transaction).
- ``UncertainDeliveryError`` (a temporary ``DeliveryError``): the whole message was sent, then
  the connection dropped or timed out before the final reply: the server may have accepted it,
  so a retry may duplicate (the service flags it as a possible duplicate).
- ``DeliveryError(temporary=False)``: the server refused this message for good (5xx).
- ``TransportError``: the transport as a whole is unusable (cannot connect, greeting refused,
  TLS or certificate failure, AUTH refused, missing password): stop the run, mark nothing sent.
The password never appears in any message or log: smtplib debug output stays off and every text
we raise passes through ``_Scrubber``.
"""

from __future__ import annotations

import base64
import functools
import itertools
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from digest.delivery._message import OutgoingMessage
from digest.errors import (
    DeliveryError,
    DigestError,
    TransportError,
    UncertainDeliveryError,
)
from digest.models import Settings, SmtpSettings

__all__ = [
    "SendResult",
    "Transport",
    "TransportFactory",
    "SmtpTransport",
    "MaildirOutbox",
    "RateLimiter",
    "ServerGate",
    "Wait",
    "open_transport",
    "tls_context",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    """A message the transport accepted: the SMTP code (250) and the server's reply text (often
    carrying the server's queue id), or 250/"stored <path>" for the outbox."""

    recipient: str
    message_id: str
    code: int
    reply: str


class Transport(Protocol):
    def send(self, msg: OutgoingMessage) -> SendResult:
        """Hand one message over. Raises ``DeliveryError`` or ``TransportError``."""
        ...

    def close(self) -> None:
        """Release the connection; the transport may not be used afterwards."""
        ...


@dataclass(frozen=True)
class Wait:
    """What a message in flight waits for: a reply on ``sock``, within ``timeout`` seconds;
    ``final``: the reply to the whole message (everything is written). ``commit``: no reply,
    but its ``BodyGate`` (the server has asked for the body): resumed once the gate is open."""

    sock: socket.socket
    timeout: float
    final: bool = False
    commit: bool = False


class BodyGate(Protocol):
    """What a message's body waits for: its ``begin`` committed to the ledger. ``pending``:
    not yet; ``commit``: commit it now (raises what the ledger raises)."""

    def pending(self) -> bool: ...

    def commit(self) -> None: ...


class InFlight(Protocol):
    """A message handed over whose outcome is still to be read (``submit``)."""

    def result(self) -> SendResult:
        """The server's verdict (waiting for what is still owed); raises what
        ``Transport.send`` raises."""
        ...

    def waiting(self) -> Wait | None:
        """The reply this message waits for next, or None once its outcome is in."""
        ...

    def step(self, *, expired: bool = False) -> None:
        """Read the reply ``waiting()`` names (it has arrived), or with ``expired`` give up on
        it, and go on until the next wait. An error is kept for ``result()``."""
        ...


@dataclass(frozen=True)
class _Settled:
    """A message a transport without a split (the outbox, a test's) has already sent."""

    outcome: SendResult | DeliveryError

    def result(self) -> SendResult:
        if isinstance(self.outcome, DeliveryError):
            raise self.outcome
        return self.outcome

    def waiting(self) -> Wait | None:
        return None

    def step(self, *, expired: bool = False) -> None:
        pass


def submit(transport: Transport, msg: OutgoingMessage, *, whole: bool = True,
           gate: BodyGate | None = None) -> InFlight:
    """Start handing ``msg`` over and return before its outcome is known, so the caller can
    prepare the next message meanwhile: an SMTP transport writes the whole message and leaves
    the final reply unread (``SmtpTransport.submit``), or with ``whole=False`` writes only
    MAIL FROM and leaves the rest of the exchange to ``step()`` as each reply arrives (a run's
    event loop, ``SmtpTransport.start``); any other transport sends it now. A refusal of this
    recipient comes from ``result()``; ``TransportError`` (nothing can be sent) is raised at
    once, or later by ``result()`` after ``whole=False``. One message in flight per
    transport: read its ``result()`` before the next ``submit`` or ``send``.
    ``gate``: no byte of the message itself is written while it is pending. With
    ``whole=False`` the exchange then waits for it (``Wait.commit``) when the server asks for
    the body, and commits it itself if resumed with it still pending; else it is committed
    first. What its commit raises stops the message unsent (the SMTP connection dropped)."""
    try:
        if isinstance(transport, SmtpTransport) and not whole:
            return transport.start(msg, gate)
        if gate is not None and gate.pending():
            gate.commit()
        if isinstance(transport, SmtpTransport):
            return transport.submit(msg)
        return _Settled(transport.send(msg))
    except TransportError:
        raise
    except DeliveryError as exc:
        return _Settled(exc)


# --------------------------------------------------------------------------- rate limit


class RateLimiter:
    """A thread-safe token bucket: at most ``rate`` acquisitions a second on average, bursts of
    ``burst``. One instance is shared by every connection of a pool, so the provider's quota
    holds for the pool as a whole."""

    def __init__(self, rate: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1, burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            # Reserve the token now (the balance may go negative) so waiters queue fairly
            # without holding the lock while they sleep.
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


# --------------------------------------------------------------------------- circuit breaker


class ServerGate:
    """The circuit breaker of one SMTP server under one configuration, shared by every
    connection made from it (a pool, a daemon's fires).

    A refusal that every message would meet (AUTH refused, our EHLO or MAIL FROM refused with
    a 5xx) opens it: every connection then fails at once without touching the server, until
    ``BACKOFF`` seconds have passed; then one connection probes, and a new refusal doubles the
    pause (up to ``MAX_BACKOFF``). A wrong password thus costs one failed login per pause, not
    one per subscriber (an account lockout). Until a login has succeeded, logins are taken one
    at a time, so a pool's first connections do not all fail together. A config change makes a
    new gate (``open_transport`` is called again), so a corrected password is tried at once.
    """

    BACKOFF = 15 * 60.0
    MAX_BACKOFF = 24 * 3600.0

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._login = threading.Lock()
        self._open_until: float | None = None
        self._failures = 0
        self._reason = ""
        self._proven = False

    def check(self, where: str) -> None:
        """Raise ``TransportError`` while the gate is open."""
        with self._mutex:
            if self._open_until is None or self._clock() >= self._open_until:
                return
            wait = self._open_until - self._clock()
            reason = self._reason
        raise TransportError(f"SMTP {where}: sending to this server is paused for {wait / 60:.0f} "
                             f"more minutes after: {reason} (fix the settings; a changed "
                             "config is tried at once)")

    def trip(self, reason: str) -> None:
        """A refusal of ours: pause the server, twice as long as the last time."""
        with self._mutex:
            self._failures += 1
            pause = min(self.BACKOFF * 2 ** (self._failures - 1), self.MAX_BACKOFF)
            self._open_until = self._clock() + pause
            self._reason = reason

    def passed(self) -> None:
        """The server accepted our login (or sender): close the gate."""
        with self._mutex:
            self._failures, self._open_until, self._proven = 0, None, True

    @contextmanager
    def login_slot(self, where: str) -> Iterator[None]:
        """Hold while logging in: one login at a time until one has succeeded."""
        if self._proven:
            yield
            return
        with self._login:
            self.check(where)  # a login that failed while we waited: do not repeat it
            yield


# --------------------------------------------------------------------------- SMTP


class _Scrubber:
    """Removes the password (and the base64 forms AUTH PLAIN/LOGIN put on the wire) from text."""

    def __init__(self, username: str | None, password: str | None) -> None:
        secrets: list[str] = []
        if password:
            secrets.append(password)
            secrets.append(base64.b64encode(password.encode()).decode())
            if username:
                secrets.append(base64.b64encode(f"\0{username}\0{password}".encode()).decode())
        self._secrets = sorted(secrets, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def tls_context(smtp: SmtpSettings) -> ssl.SSLContext:
    """The client TLS context: system roots, or ``ca_file`` for a private CA; certificate and
    host name always checked (smtplib checks nothing unless given such a context)."""
    try:
        return ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"smtp.ca_file {smtp.ca_file}: not a readable PEM CA file: "
                             f"{exc}") from None


@functools.cache
def _local_hostname() -> str:
    # smtplib would call getfqdn() (a DNS lookup) for every connection; once is enough.
    return socket.getfqdn()


class SmtpTransport:
    """One SMTP connection reused for many messages (connect on first send, reconnect on the
    next send after a drop). Not thread-safe: a pool makes one per worker."""

    def __init__(self, smtp: SmtpSettings, password: str | None = None, *,
                 limiter: RateLimiter | None = None, local_hostname: str | None = None,
                 context: ssl.SSLContext | None = None, gate: ServerGate | None = None) -> None:
        self.settings = smtp
        self._password = password
        self._limiter = limiter
        self._local_hostname = local_hostname or smtp.helo or _local_hostname()
        self._scrub = _Scrubber(smtp.username, password)
        self._conn: smtplib.SMTP | None = None
        # Always verifying (certificate chain and host name); a pool shares one context. None
        # without TLS: loading the system's roots costs ~15 ms a connection for nothing.
        self._context = context if context is not None or smtp.security == "none" \
            else tls_context(smtp)
        self.where = f"{smtp.host}:{smtp.port}"
        self._gate = gate or ServerGate()

    # -- connection

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP | None = None
        self._gate.check(self.where)
        try:
            if s.security == "tls":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                        context=self._context,
                                        local_hostname=self._local_hostname)
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout,
                                    local_hostname=self._local_hostname)
            conn.set_debuglevel(0)  # debug output would print AUTH in base64
            conn.ehlo_or_helo_if_needed()  # EHLO, or HELO for an ancient server
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise TransportError(f"SMTP {self.where}: the server does not offer STARTTLS "
                                         "(set smtp.security to 'tls' or, on a trusted local "
                                         "network only, 'none')")
                code, reply = conn.starttls(context=self._context)
                if code != 220:
                    raise TransportError(f"SMTP {self.where}: STARTTLS refused: {code} "
                                         f"{_reply_text(reply)}")
                conn.ehlo_or_helo_if_needed()  # STARTTLS forgets the first EHLO
            if s.username:
                with self._gate.login_slot(self.where):
                    try:
                        self._login(conn)
                    except smtplib.SMTPAuthenticationError as exc:
                        self._gate.trip(self._auth_refused(exc))  # before the next login
                        raise
                self._gate.passed()
            log.debug("connected to %s (%s%s)", self.where, s.security,
                      f", as {s.username}" if s.username else "")
            return conn
        except TransportError:
            self._discard(conn)
            raise
        except ssl.SSLCertVerificationError as exc:
            self._discard(conn)
            raise TransportError(
                f"SMTP {self.where}: TLS certificate not trusted: {exc.verify_message} "
                "(for a private CA set smtp.ca_file)") from None
        except ssl.SSLError as exc:
            self._discard(conn)
            raise TransportError(f"SMTP {self.where}: TLS handshake failed: "
                                 f"{exc.reason or exc}") from None
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(conn)
            raise TransportError(f"SMTP {self.where}: {self._auth_refused(exc)}") from None
        except smtplib.SMTPNotSupportedError:
            self._discard(conn)
            raise TransportError(f"SMTP {self.where}: the server offers no AUTH mechanism "
                                 "we can use") from None
        except smtplib.SMTPResponseException as exc:  # greeting refused (e.g. 421 busy)
            self._discard(conn)
            text = self._scrub(f"refused the session: {exc.smtp_code} "
                               f"{_reply_text(exc.smtp_error)}")
            if isinstance(exc, smtplib.SMTPHeloError) and 500 <= exc.smtp_code < 600:
                # our EHLO/HELO refused for good: every connection would be, pause the server
                text = f"{text} (our EHLO/HELO name is refused: check smtp settings)"
                self._gate.trip(text)
            raise TransportError(f"SMTP {self.where}: {text}") from None
        except (OSError, smtplib.SMTPException) as exc:
            # smtplib reports a socket timeout as SMTPServerDisconnected; the cause tells.
            self._discard(conn)
            if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
                raise TransportError(f"SMTP {self.where}: no answer within "
                                     f"{s.timeout:g} s while connecting") from None
            raise TransportError(self._scrub(f"SMTP {self.where}: cannot connect: {exc}")) from None

    def _auth_refused(self, exc: smtplib.SMTPResponseException) -> str:
        return self._scrub(f"authentication refused for user {self.settings.username!r}: "
                           f"{exc.smtp_code} {_reply_text(exc.smtp_error)}")

    def _login(self, conn: smtplib.SMTP) -> None:
        """AUTH with ONE mechanism, the first the server offers of smtplib's preference order:
        ``SMTP.login`` would try the next one after a refusal, two failed logins per
        connection for one wrong password."""
        offered = conn.esmtp_features.get("auth", "").upper().split()
        mechanism = next((m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in offered), None)
        if mechanism is None:
            raise smtplib.SMTPNotSupportedError("no usable AUTH mechanism")
        conn.user, conn.password = self.settings.username or "", self._password or ""
        authobject = getattr(conn, "auth_" + mechanism.lower().replace("-", "_"))
        conn.auth(mechanism, authobject)

    @staticmethod
    def _discard(conn: smtplib.SMTP | None) -> None:
        if conn is None:
            return
        try:
            conn.close()
        except OSError:
            pass

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            self._discard(conn)

    # -- sending

    def send(self, msg: OutgoingMessage) -> SendResult:
        return self.submit(msg).result()

    def submit(self, msg: OutgoingMessage) -> _SmtpInFlight:
        """MAIL, RCPT, DATA and the whole message written; the final reply is left to
        ``result()`` of what is returned (see ``submit``). Raises what ``send`` raises for
        everything before the end of DATA."""
        flight = _SmtpInFlight(self._exchange(msg))
        flight.advance(until_final=True)
        return flight

    def start(self, msg: OutgoingMessage, gate: BodyGate | None = None) -> _SmtpInFlight:
        """MAIL FROM written (after connecting, if need be); each later reply is read by
        ``step()`` of what is returned, when it has arrived: a run's event loop keeps several
        connections going from one thread. Raises what ``send`` raises up to MAIL FROM; later
        errors come from ``result()``. ``gate``: see ``submit``."""
        flight = _SmtpInFlight(self._exchange(msg, gate))
        flight.advance(until_final=False)
        return flight

    def _exchange(self, msg: OutgoingMessage, gate: BodyGate | None = None) -> _Exchange:
        """The whole exchange for ``msg``, pausing (``yield``) before each reply it reads."""
        if self._limiter is not None:
            self._limiter.acquire()
        if self._conn is None:
            self._conn = self._connect()
            return (yield from self._transaction(self._conn, msg, fresh=True, gate=gate))
        try:
            return (yield from self._transaction(self._conn, msg, fresh=False, gate=gate))
        except _StaleConnection:
            # The server closed our idle reused connection before this message's MAIL FROM:
            # nothing of it was transmitted, so one transparent reconnect is safe.
            log.debug("%s closed the idle connection; reconnecting", self.where)
            self._conn = self._connect()
            return (yield from self._transaction(self._conn, msg, fresh=True, gate=gate))

    def _fail(self, msg: OutgoingMessage, stage: str, code: int, reply: bytes | str) -> DigestError:
        """The error for a non-success reply, leaving the connection usable or closed."""
        text = self._scrub(_reply_text(reply))
        if code == 421 or not 400 <= code < 600:  # 421: the server is closing the channel
            self._drop()
        elif self._conn is not None:
            try:
                self._conn.rset()
            except (OSError, smtplib.SMTPException):
                self._drop()
        if code in (530, 535) or (stage == "MAIL FROM" and code >= 500 and code != 552):
            # Authentication required, or our sender refused: every message would fail the
            # same way, so no subscriber's edition should be marked failed for it, and the
            # server is paused (the next connection would only be refused again).
            self._drop()
            self._gate.trip(f"{stage} {msg.sender} refused: {code} {text}")
            return TransportError(f"SMTP {self.where}: {stage} {msg.sender} refused: "
                                  f"{code} {text} (a problem with our sending, not with the "
                                  "recipients: their editions stay deferred)")
        # 552 to RCPT is "mailbox full / over quota", which RFC 5321 4.5.3.1.10 says clients
        # should treat as temporary (the old 452).
        temporary = not 500 <= code < 600 or (stage == "RCPT TO" and code == 552)
        return DeliveryError(f"{stage} refused: {text}", recipient=msg.recipient, code=code,
                             temporary=temporary)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._discard(conn)

    def _drain(self, wire: _Wire, count: int, code: int) -> None:
        """After a refusal inside a pipelined group: read the ``count`` replies still owed to
        the group, so the connection stays in step (and end a DATA a server accepted without
        a recipient with an empty "."); a 421 closes the channel, so nothing more is read."""
        if code == 421:
            return
        try:
            for _ in range(count):
                code, _reply = wire.reply()
            if code == 354:
                wire.send(b".\r\n")
                wire.reply()
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop()

    def _transaction(self, conn: smtplib.SMTP, msg: OutgoingMessage, *, fresh: bool,
                     gate: BodyGate | None = None) -> _Exchange:
        # Stage names matter: "end of DATA" (body sent, final reply pending) is the only stage
        # where a lost connection means the server may have accepted the message.
        stage = "MAIL FROM"
        ready = False  # what a wait is resumed with: its reply was seen to have come
        # The envelope addresses are bare ASCII addr-specs already (``check_address``), so the
        # commands are written here: smtplib's ``mail``/``rcpt`` re-parse each address with
        # ``email.utils.parseaddr`` (~0.1 ms a message for the two).
        size = f" SIZE={len(msg.data)}" if conn.has_extn("size") else ""
        commands = (f"MAIL FROM:<{msg.sender}>{size}\r\n".encode("ascii"),
                    f"RCPT TO:<{msg.recipient}>\r\n".encode("ascii"), b"DATA\r\n")
        # RFC 2920: with PIPELINING offered, MAIL, RCPT and DATA go as one group (DATA last)
        # and the three replies are read in order: one round trip instead of three. The body
        # still waits for the 354, as the RFC requires.
        pipelined = conn.has_extn("pipelining")
        sock = conn.sock
        assert sock is not None  # connected
        wait = Wait(sock, self.settings.timeout)
        wire = _Wire(conn, sock)
        waited: float | None = None  # a timeout other than the stage's own, when one applies
        try:
            wire.send(b"".join(commands) if pipelined else commands[0])
            code, reply = wire.reply((yield wait))
            if code == 421 and not fresh:
                # An idle-timeout notice ("421 timeout exceeded") waiting on a reused
                # connection: nothing of this message was accepted, so start over.
                self._drop()
                raise _StaleConnection()
            if not 200 <= code < 300:
                if pipelined:
                    self._drain(wire, 2, code)
                raise self._fail(msg, stage, code, reply)
            stage = "RCPT TO"
            if not pipelined:  # the rest of a pipelined group follows its first reply
                wire.send(commands[1])
                ready = yield wait
            code, reply = wire.reply(ready)
            if not 200 <= code < 300:
                if pipelined:
                    self._drain(wire, 1, code)
                raise self._fail(msg, stage, code, reply)
            stage = "start of data"
            if not pipelined:
                wire.send(commands[2])
                ready = yield wait
            code, reply = wire.reply(ready)
            if code != 354:
                raise self._fail(msg, stage, code, reply)
            if gate is not None and gate.pending():
                yield Wait(sock, self.settings.timeout, commit=True)
                try:
                    if gate.pending():  # resumed without it: committed here, or never sent
                        gate.commit()
                except BaseException:  # the server waits for a body that never comes
                    self._drop()
                    raise
            stage = "end of DATA"
            wire.send(_dot_stuff(msg.data))
            # The reply to the final "." gets its own, long timeout (RFC 5321 4.5.3.2: 10
            # minutes): the server may be storing the message, and giving up on it early
            # leaves us not knowing whether it was accepted.
            if (yield Wait(sock, self.settings.data_timeout, final=True)):
                # the event loop saw the reply come (within data_timeout): the socket's own
                # timeout only guards the rest of its line, and two settimeout calls (an
                # ioctl each) a message are saved
                waited = self.settings.timeout  # what a reply stalling midway is given
                code, reply = wire.reply(True)
            else:  # a blocking read of the reply: the socket itself waits data_timeout
                _settimeout(conn, self.settings.data_timeout)
                try:
                    code, reply = wire.reply()
                finally:
                    _settimeout(conn, self.settings.timeout)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise self._lost(exc, msg, stage, fresh=fresh, waited=waited) from None
        if not 200 <= code < 300:
            raise self._fail(msg, "message", code, reply)
        return SendResult(recipient=msg.recipient, message_id=msg.message_id, code=code,
                          reply=self._scrub(_reply_text(reply)))

    def _lost(self, exc: OSError | smtplib.SMTPServerDisconnected, msg: OutgoingMessage,
              stage: str, *, fresh: bool, waited: float | None = None) -> Exception:
        """What a lost or silent connection at ``stage`` means for ``msg`` (``waited``: the
        timeout that ran out, when not the stage's own)."""
        # smtplib turns socket timeouts into SMTPServerDisconnected; the cause tells them apart.
        self._drop()
        timed_out = isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)
        if not timed_out and stage == "MAIL FROM" and not fresh:
            return _StaleConnection()
        if waited is None:
            waited = self.settings.data_timeout if stage == "end of DATA" \
                else self.settings.timeout
        what = (f"no answer within {waited:g} s" if timed_out
                else self._scrub(f"connection lost ({exc})"))
        if stage == "end of DATA":
            return UncertainDeliveryError(
                f"{what} at the end of DATA, after the whole message was sent: "
                "the server may have accepted it", recipient=msg.recipient)
        return DeliveryError(f"{what} during {stage}", recipient=msg.recipient, temporary=True)


# Each wait is resumed with whether its reply is known to have arrived (the event loop saw
# the socket readable) or must be waited for by a blocking read (``result()``).
_Exchange = Generator[Wait, bool, SendResult]


class _SmtpInFlight:
    """A message ``SmtpTransport`` is exchanging with the server: the exchange pauses before
    each reply it reads (``waiting``), until its outcome is in."""

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self._wait: Wait | None = None
        self._outcome: SendResult | BaseException | None = None

    def advance(self, *, until_final: bool) -> None:
        """Go on to the first wait (``until_final``: to the wait for the final reply, reading
        the ones before as they come); errors are raised here."""
        wait = next(self._exchange)
        while until_final and not wait.final:
            wait = self._exchange.send(False)
        self._wait = wait

    def waiting(self) -> Wait | None:
        return self._wait

    def step(self, *, expired: bool = False) -> None:
        self._step(expired=expired, arrived=True)

    def _step(self, *, expired: bool, arrived: bool) -> None:
        if self._wait is None:
            return
        try:
            self._wait = self._exchange.throw(TimeoutError()) if expired \
                else self._exchange.send(arrived)
        except StopIteration as done:
            self._wait, self._outcome = None, done.value
        except Exception as exc:  # noqa: BLE001 (kept for result(), which raises it)
            self._wait, self._outcome = None, exc

    def result(self) -> SendResult:
        while self._wait is not None:  # the rest of the exchange, blocking on each reply
            self._step(expired=False, arrived=False)
        outcome = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome


class _Wire:
    """One transaction's writes and reads on the connection's socket, in place of smtplib's
    ``send`` and ``getreply`` (the same exceptions, the same ``(code, text)``): a reply is
    read by one ``recv`` and split on its line ends, where ``getreply`` made a buffered
    ``readline`` (two Python-level calls into the socket) of every line. What a read brings
    beyond the reply (the rest of a pipelined group) is kept for the next one."""

    __slots__ = ("_conn", "_sock", "_fd", "_rest")

    def __init__(self, conn: smtplib.SMTP, sock: socket.socket) -> None:
        self._conn = conn
        self._sock = sock
        # A plain socket with a timeout is non-blocking underneath, and Python polls it before
        # every send and recv to wait out the timeout: 8 poll calls a message, although the
        # event loop has just seen the reply come, and a command or a body fits the socket's
        # send buffer. Its descriptor is written and read directly first, and only what would
        # block goes through the socket (which then waits, within its timeout). TLS reads and
        # writes its records before it polls anyway.
        self._fd = sock.fileno() if _RAW_IO and not isinstance(sock, ssl.SSLSocket) \
            and sock.gettimeout() is not None else -1
        self._rest = b""

    def send(self, data: bytes) -> None:
        try:
            if self._fd >= 0:
                try:
                    sent = os.write(self._fd, data)
                except BlockingIOError:
                    sent = 0
                if sent < len(data):
                    self._sock.sendall(memoryview(data)[sent:])
            else:
                self._sock.sendall(data)
        except OSError:
            self._conn.close()
            raise smtplib.SMTPServerDisconnected("Server not connected")  # as smtplib's

    def _overlong(self) -> smtplib.SMTPServerDisconnected:
        """A reply line past ``_MAXLINE``: the exchange is out of step, so the connection is
        closed and it ends as a lost one would (the message retried, or uncertain at the end
        of DATA), not with smtplib's own exception escaping the transport."""
        self._conn.close()
        return smtplib.SMTPServerDisconnected(f"a reply line longer than {_MAXLINE} bytes")

    def reply(self, ready: bool = False) -> tuple[int, bytes]:
        """The next reply, all its lines; a code that is not a number is -1 (as smtplib's).
        ``ready``: the socket was seen readable, so its first read need not wait."""
        data, start, texts = self._rest, 0, []
        while True:
            end = data.find(b"\n", start) + 1
            if not end:
                if len(data) - start > _MAXLINE:
                    raise self._overlong()
                more = self._more(ready)
                ready = False
                if more:
                    data, start = data[start:] + more, 0
                    continue
                if start == len(data):
                    self._conn.close()
                    raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
                end = len(data)  # a last line cut short by the close counts, as in readline
            line, start = data[start:end], end
            if len(line) > _MAXLINE:
                raise self._overlong()
            texts.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        self._rest = data[start:]
        return code, b"\n".join(texts)

    def _more(self, ready: bool) -> bytes:
        try:
            if ready and self._fd >= 0:
                try:
                    return os.read(self._fd, _CHUNK)
                except BlockingIOError:  # seen readable, yet nothing (yet): wait for it
                    pass
            return self._sock.recv(_CHUNK)
        except OSError as exc:
            self._conn.close()
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}")


_MAXLINE = 8192  # the longest reply line smtplib reads (its _MAXLINE)
_CHUNK = 8192
_RAW_IO = os.name == "posix"  # a socket's descriptor is a file's (read, write) there


def _settimeout(conn: smtplib.SMTP, seconds: float) -> None:
    sock = conn.sock
    if sock is not None:
        sock.settimeout(seconds)


_LINE_DOT = re.compile(rb"\n\.")


def _dot_stuff(data: bytes) -> bytes:
    """The DATA payload: leading dots doubled (RFC 5321 4.5.2), CRLF, then the lone dot.
    A regex for the two bytes, not ``bytes.replace``: with ~440 line ends in a 42 KB digest,
    replace checks every LF it meets (40 us) where the regex engine skips along to each
    one (15 us); a multi-line regex for a dot at a line start was slower than both."""
    body = _LINE_DOT.sub(b"\n..", data)
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours to signal
        return True
    return True


class _StaleConnection(Exception):
    """Internal: the reused connection was already closed when the transaction began."""


# --------------------------------------------------------------------------- Maildir


class MaildirOutbox:
    """Writes each message into a Maildir (``tmp/`` then an atomic rename into ``new/``, with
    fsync of the file and the directory), readable by ``mailbox.Maildir`` and mail clients.
    Thread-safe; files use LF line ends as the Maildir convention expects."""

    _counter = itertools.count()
    _host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(f"outbox {self.path}: cannot create the Maildir: "
                                 f"{exc.strerror or exc}") from None
        self.cleaned = self._clean_tmp()

    # A file in tmp/ is a message whose writer died before the rename into new/ (the ledger
    # still says sending, so it is sent again). The Maildir convention clears tmp/ files
    # untouched for 36 hours; ours also name the writer (host and pid), so a file of a writer
    # on this host that is no longer running is cleared at once.
    STALE_TMP_SECONDS = 36 * 3600
    _OWN_NAME = re.compile(r"^\d+\.M\d+P(\d+)Q\d+\.(.+)$")

    def _clean_tmp(self) -> int:
        """Remove stale files from ``tmp/``; returns how many."""
        removed = 0
        now = time.time()
        try:
            entries = list(os.scandir(self.path / "tmp"))
        except OSError:
            return 0
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                stale = now - entry.stat(follow_symlinks=False).st_mtime > self.STALE_TMP_SECONDS
                own = self._OWN_NAME.match(entry.name)
                if not stale and own is not None and own.group(2) == self._host:
                    stale = not _running(int(own.group(1)))
                if stale:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue  # another cleaner got there first, or no permission: leave it
        if removed:
            log.info("outbox %s: removed %d stale file%s from tmp/", self.path, removed,
                     "" if removed == 1 else "s")
        return removed

    def _unique(self) -> str:
        # The Maildir naming scheme: time, then a per-process-unique part, then the host.
        now = time.time()
        sec, usec = int(now), int((now - int(now)) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{next(self._counter)}.{self._host}"

    def send(self, msg: OutgoingMessage) -> SendResult:
        name = self._unique()
        tmp = self.path / "tmp" / name
        final = self.path / "new" / name
        data = msg.data.replace(b"\r\n", b"\n")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            dir_fd = os.open(self.path / "new", os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            # A full disk or a read-only folder stops every message, not just this one.
            raise TransportError(f"outbox {self.path}: cannot write: "
                                 f"{exc.strerror or exc}") from None
        return SendResult(recipient=msg.recipient, message_id=msg.message_id, code=250,
                          reply=f"stored {final}")

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- factory


OUTBOX_WRITERS = 4
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class TransportFactory:
    """Makes transports for one run. ``connections`` is how many the service should open in
    parallel; each call returns a new, independent transport (they share the rate limiter)."""

    make: Callable[[], Transport]
    connections: int
    description: str

    def __call__(self) -> Transport:
        return self.make()


def open_transport(settings: Settings, environ: Mapping[str, str] | None = None) -> TransportFactory:
    """The transport factory the configured delivery mode asks for. Checks what can be checked
    without the network (password present) and raises ``TransportError`` early."""
    env = os.environ if environ is None else environ
    if settings.delivery == "outbox":
        outbox = MaildirOutbox(settings.outbox)
        # Parallel writers let the file system commit several fsyncs at once: ~6x the rate
        # of one writer here (bench/bench_mime.py prints both).
        return TransportFactory(make=lambda: outbox, connections=OUTBOX_WRITERS,
                                description=f"outbox {settings.outbox}")
    smtp = settings.smtp
    if smtp is None:
        raise TransportError("delivery is 'smtp' but no smtp settings are configured")
    password: str | None = None
    if smtp.username:
        if not smtp.password_env:
            raise TransportError("smtp.username is set but smtp.password_env is not")
        password = env.get(smtp.password_env)
        if not password:
            raise TransportError(f"the SMTP password environment variable "
                                 f"{smtp.password_env} is not set")
    if password and smtp.security == "none" and smtp.host not in _LOOPBACK:
        raise TransportError(f"refusing to send the SMTP password unencrypted to {smtp.host} "
                             "(security: none); use starttls or tls")
    if smtp.ca_file is not None and not Path(smtp.ca_file).is_file():
        raise TransportError(f"smtp.ca_file {smtp.ca_file} does not exist")
    # burst=1: messages are spaced 1/rate apart, so no one-second window ever exceeds the quota.
    limiter = RateLimiter(smtp.max_per_second) if smtp.max_per_second else None
    context = tls_context(smtp) if smtp.security != "none" else None
    gate = ServerGate()  # one per configuration: a config change starts closed
    return TransportFactory(
        make=lambda: SmtpTransport(smtp, password, limiter=limiter, context=context, gate=gate),
        connections=max(1, smtp.connections),
        description=f"smtp {smtp.security} {smtp.host}:{smtp.port}")
