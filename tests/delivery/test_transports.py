"""Transports against a real aiosmtpd server on 127.0.0.1 and a real Maildir."""

from __future__ import annotations

import logging
import mailbox
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from digest.delivery import OutgoingMessage, build_message, open_transport
from digest.delivery._transports import (
    ServerGate,
    MaildirOutbox,
    RateLimiter,
    SendResult,
    SmtpTransport,
    TransportFactory,
    submit,
)
from digest.errors import DeliveryError, LedgerError, TransportError, UncertainDeliveryError
from digest.models import Digest, RenderedEmail, Settings, SmtpSettings, Subscriber
from tests.smtp_server import SmtpTestServer, _Handler, free_port, silent_server

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
PASSWORD = "s3cret-Pa55word"


def message(to: str = "ana@example.org", subject: str = "Your papers", n: int = 0
            ) -> OutgoingMessage:
    sub = Subscriber(email=to, name="Ana", timezone="UTC", schedule="0 7 * * *",
                     max_papers=5, topics=())
    digest = Digest(subscriber=sub, edition=date(2026, 11, 25 - n % 20), generated_at=NOW,
                    items=())
    rendered = RenderedEmail(subject=subject, html="<p>Hello</p>", text="Hello\n", papers=())
    return build_message(rendered, digest, Settings(sender="Paper Digest <digest@example.org>"),
                         now=NOW)


def smtp_transport(server: SmtpTestServer, **overrides: object) -> SmtpTransport:
    settings = server.smtp_settings(**overrides)
    return SmtpTransport(settings, PASSWORD if settings.username else None)


class _Grouping(_Handler):
    """The test server's handler, noting for each MAIL whether RCPT and DATA had already
    arrived with it (one RFC 2920 group)."""

    def __init__(self, server: SmtpTestServer) -> None:
        super().__init__(server)
        self.grouped: list[bool] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        waiting = bytes(server._reader._buffer)  # what the client sent after MAIL
        self.grouped.append(b"RCPT TO:" in waiting and b"DATA\r\n" in waiting)
        reply: str = await super().handle_MAIL(server, session, envelope, address, mail_options)
        return reply


def offer_pipelining(srv: SmtpTestServer, *, offer: bool = True) -> _Grouping:
    srv.pipelining = offer
    handler = _Grouping(srv)
    assert srv._controller is not None
    srv._controller.handler = handler  # aiosmtpd's factory reads it for each new session
    return handler


@pytest.fixture(params=["plain", "pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[SmtpTestServer]:
    """Every test of the SMTP client against a server without and with PIPELINING: the
    pipelined path must keep every stage's error contract."""
    with SmtpTestServer() as srv:
        if request.param == "pipelining":
            offer_pipelining(srv)
        yield srv


# --------------------------------------------------------------------------- outbox


def test_outbox_writes_atomically_into_a_maildir(tmp_path: Path) -> None:
    factory = open_transport(Settings(delivery="outbox", outbox=tmp_path / "out"))
    outbox = factory()
    sent = [outbox.send(message(subject=f"Edition {i}", n=i)) for i in range(3)]
    outbox.close()
    assert all(r.code == 250 for r in sent)
    box = mailbox.Maildir(tmp_path / "out", create=False)
    subjects = sorted(str(m["Subject"]) for m in box)
    assert subjects == ["Edition 0", "Edition 1", "Edition 2"]
    assert list((tmp_path / "out" / "tmp").iterdir()) == []
    stored = sorted(p.read_bytes() for p in (tmp_path / "out" / "new").iterdir())
    assert b"\r" not in b"".join(stored)  # Maildir files use LF line ends
    assert len({r.reply for r in sent}) == 3  # unique file names
    parsed = next(iter(box))
    assert parsed.get_content_type() == "multipart/alternative"


def test_outbox_names_are_unique_across_threads(tmp_path: Path) -> None:
    outbox = MaildirOutbox(tmp_path)
    threads = [threading.Thread(target=lambda: [outbox.send(message()) for _ in range(25)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list((tmp_path / "new").iterdir())) == 100


def test_outbox_unwritable_is_a_transport_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(TransportError, match="outbox .*file"):
        MaildirOutbox(blocker / "box")


# --------------------------------------------------------------------------- plain SMTP


def test_one_connection_is_reused_and_bytes_arrive_intact(server: SmtpTestServer) -> None:
    transport = smtp_transport(server)
    msgs = [message(to=f"r{i}@example.org") for i in range(3)]
    results = [transport.send(m) for m in msgs]
    transport.close()
    got = server.wait_for(3)
    assert [r.code for r in results] == [250, 250, 250]
    assert results[0].reply.endswith("queued as Q1")
    assert [g.data for g in got] == [m.data for m in msgs]
    assert [g.rcpt_tos for g in got] == [(m.recipient,) for m in msgs]
    assert {g.mail_from for g in got} == {"digest@example.org"}
    assert len({g.peer for g in got}) == 1  # one TCP connection for all three


def test_cve_2024_6923_title_reaches_the_server_without_a_bcc_header(
        server: SmtpTestServer) -> None:
    msg = message(subject="Attention =?UTF-8?Q?=0A?=Bcc: x@evil.example\r\nCc: y@evil.example")
    transport = smtp_transport(server)
    transport.send(msg)
    transport.close()
    (got,) = server.wait_for(1)
    names = [line.split(":", 1)[0].lower() for line in got.header_lines()]
    assert "bcc" not in names and "cc" not in names
    assert len(names) == len(set(names))  # exactly one of each header
    assert got.rcpt_tos == ("ana@example.org",)
    assert got.message["Subject"] == (
        "Attention =?UTF-8?Q?=0A?=Bcc: x@evil.example Cc: y@evil.example")


@pytest.mark.parametrize("reply, temporary", [
    ("421 4.7.0 Too busy, closing", True),
    ("451 4.3.0 Try again later", True),
    ("550 5.1.1 No such user", False),
])
def test_rcpt_replies_map_to_delivery_errors(server: SmtpTestServer, reply: str,
                                             temporary: bool) -> None:
    server.add_rule("rcpt", reply, recipient="bad@example.org", times=1)
    transport = smtp_transport(server)
    with pytest.raises(DeliveryError) as info:
        transport.send(message(to="bad@example.org"))
    assert info.value.code == int(reply[:3])
    assert info.value.temporary is temporary
    assert info.value.recipient == "bad@example.org"
    assert reply[4:] in str(info.value)
    # the same transport carries on (reconnecting after the 421)
    assert transport.send(message(to="good@example.org")).code == 250
    transport.close()
    assert [g.rcpt_tos for g in server.wait_for(1)] == [("good@example.org",)]


@pytest.mark.parametrize("reply, temporary", [
    ("451 4.3.0 Queue full", True),
    ("421 4.3.2 Shutting down", True),
    ("554 5.7.1 Rejected as spam", False),
])
def test_replies_after_data_map_to_delivery_errors(server: SmtpTestServer, reply: str,
                                                   temporary: bool) -> None:
    server.add_rule("data", reply, times=1)
    transport = smtp_transport(server)
    with pytest.raises(DeliveryError) as info:
        transport.send(message())
    assert (info.value.code, info.value.temporary) == (int(reply[:3]), temporary)
    assert transport.send(message()).code == 250
    transport.close()


def test_sender_refused_stops_the_run_but_size_and_4xx_are_per_message(
        server: SmtpTestServer) -> None:
    transport = smtp_transport(server)
    server.add_rule("mail", "451 4.7.1 Slow down", times=1)
    with pytest.raises(DeliveryError) as temp:
        transport.send(message())
    assert (temp.value.code, temp.value.temporary) == (451, True)
    server.add_rule("mail", "552 5.3.4 Message too big", times=1)
    with pytest.raises(DeliveryError) as big:
        transport.send(message())
    assert (big.value.code, big.value.temporary) == (552, False)
    server.add_rule("mail", "550 5.7.1 Sender domain not allowed", times=1)
    with pytest.raises(TransportError, match="MAIL FROM digest@example.org refused: 550"):
        transport.send(message())
    with pytest.raises(TransportError, match="paused"):  # every connection would be refused
        transport.send(message())
    later = smtp_transport(server)  # a later run (a new gate) can start over
    assert later.send(message()).code == 250
    later.close()
    transport.close()


def test_connection_dropped_mid_data_is_temporary_then_reconnects(
        server: SmtpTestServer) -> None:
    server.add_rule("data", action="drop", times=1)
    transport = smtp_transport(server)
    with pytest.raises(UncertainDeliveryError, match="may have accepted") as info:
        transport.send(message())
    assert info.value.temporary is True and info.value.code is None
    assert transport.send(message(to="next@example.org")).code == 250
    transport.close()
    got = server.wait_for(1)
    assert len({g.peer for g in got}) == 1 and got[0].rcpt_tos == ("next@example.org",)


def test_connection_dropped_before_the_body_is_a_plain_temporary_error(
        server: SmtpTestServer) -> None:
    server.add_rule("rcpt", action="drop", times=1)
    transport = smtp_transport(server)
    with pytest.raises(DeliveryError, match="during RCPT TO") as info:
        transport.send(message())
    assert info.value.temporary is True
    assert not isinstance(info.value, UncertainDeliveryError)  # nothing was accepted
    transport.close()


class _Gate:
    """A ``BodyGate`` standing for a row's held begin: pending until committed, ``fail``
    makes its commit raise as a ledger that cannot write would."""

    def __init__(self, server: SmtpTestServer, fail: bool = False) -> None:
        self.server, self.fail = server, fail
        self.open = False
        self.commits: list[int] = []  # messages the server had when each commit came

    def pending(self) -> bool:
        return not self.open

    def commit(self) -> None:
        self.commits.append(self.server.count)
        if self.fail:
            raise LedgerError(Path("digest.db"), "disk I/O error")
        self.open = True


def test_a_gated_body_waits_for_its_commit_when_the_server_asks_for_it(
        server: SmtpTestServer) -> None:
    """``submit(whole=False, gate=...)``, a run's loop: after the 354 the exchange waits for
    the ledger (``Wait.commit``, no socket to watch), and writes the body once resumed."""
    transport = smtp_transport(server)
    gate = _Gate(server)
    flight = submit(transport, message(), whole=False, gate=gate)
    kinds = []
    while (wait := flight.waiting()) is not None:
        kinds.append("commit" if wait.commit else "final" if wait.final else "reply")
        if wait.commit:
            gate.open = True  # what the loop's commit does
        flight.step()
    assert kinds[-2:] == ["commit", "final"] and kinds.count("commit") == 1
    assert flight.result().code == 250 and gate.commits == []
    assert len(server.wait_for(1)) == 1
    # resumed with the gate still pending (a run that failed): it commits itself first
    gate = _Gate(server)
    flight = submit(transport, message(to="bo@example.org"), whole=False, gate=gate)
    assert flight.result().code == 250 and gate.commits == [1]
    transport.close()


def test_a_gate_that_cannot_commit_stops_its_message_unsent(server: SmtpTestServer) -> None:
    transport = smtp_transport(server)
    flight = submit(transport, message(to="bo@example.org"), whole=False,
                    gate=_Gate(server, fail=True))
    with pytest.raises(LedgerError, match="disk I/O error"):
        flight.result()
    # the connection was dropped mid-DATA (the server waited for a body): the next message
    # goes on a new one, and bo's never arrived
    assert transport.send(message(to="cy@example.org")).code == 250
    transport.close()
    got = server.wait_for(1)
    assert [g.rcpt_tos for g in got] == [("cy@example.org",)]


def test_a_gate_is_committed_first_where_the_whole_message_goes_at_once(
        tmp_path: Path, server: SmtpTestServer) -> None:
    outbox, gate = MaildirOutbox(tmp_path / "out"), _Gate(server)
    submit(outbox, message(), gate=gate).result()
    transport, smtp_gate = smtp_transport(server), _Gate(server)
    submit(transport, message(), gate=smtp_gate).result()
    transport.close()
    assert (gate.commits, smtp_gate.commits) == ([0], [0])  # before anything was written
    assert len(server.wait_for(1)) == 1 and len(list((tmp_path / "out" / "new").iterdir())) == 1


def test_leading_dots_are_stuffed_and_arrive_intact(server: SmtpTestServer) -> None:
    data = b"Subject: dots\r\n\r\n.\r\n..two\r\n.hidden line\r\nend"
    msg = OutgoingMessage(sender="a@example.org", recipient="b@example.org",
                          message_id="<x@example.org>", data=data)
    transport = smtp_transport(server)
    transport.send(msg)
    transport.close()
    (got,) = server.wait_for(1)
    assert got.data == data + b"\r\n"  # only the line end the protocol needs was added


@pytest.mark.parametrize("bulk_data", [False, True])
def test_both_sink_data_readers_receive_exact_bytes(bulk_data: bool) -> None:
    long_lines = (b"a" * 900 + b"\r\n") * 10 + b".\r\n." + (b"b" * 990 + b".\r\n") * 5
    bodies = [b"", b".", b"x.", b"..\r\n.\r\n.x", long_lines, message(subject="Digest").data]
    msgs = [OutgoingMessage(sender="a@example.org", recipient="b@example.org",
                            message_id="<x@example.org>", data=b"Subject: t\r\n\r\n" + body)
            for body in bodies]
    with SmtpTestServer(bulk_data=bulk_data) as srv:
        transport = smtp_transport(srv)
        for msg in msgs:
            assert transport.send(msg).code == 250
        transport.close()
        got = srv.wait_for(len(msgs))
    expected = [m.data if m.data.endswith(b"\r\n") else m.data + b"\r\n" for m in msgs]
    assert [g.data for g in got] == expected


def test_idle_connection_closed_by_server_is_reopened_transparently(
        server: SmtpTestServer) -> None:
    transport = smtp_transport(server)
    transport.send(message(to="a@example.org"))
    server.add_rule("mail", action="drop", times=1)  # the server hung up while we were idle
    assert transport.send(message(to="b@example.org")).code == 250
    transport.close()
    got = server.wait_for(2)
    assert [g.rcpt_tos for g in got] == [("a@example.org",), ("b@example.org",)]
    assert got[0].peer != got[1].peer


def test_idle_timeout_notice_on_a_reused_connection_is_retried_on_a_new_one(
        server: SmtpTestServer) -> None:
    transport = smtp_transport(server)
    transport.send(message(to="a@example.org"))
    server.add_rule("mail", "421 4.4.2 Error: timeout exceeded", times=1)
    assert transport.send(message(to="b@example.org")).code == 250
    server.add_rule("mail", "421 4.4.2 Error: timeout exceeded", times=1)
    transport.close()
    with pytest.raises(DeliveryError) as info:  # on a fresh connection a 421 is an answer
        transport.send(message(to="c@example.org"))
    assert (info.value.code, info.value.temporary) == (421, True)
    assert [g.rcpt_tos for g in server.wait_for(2)] == [("a@example.org",), ("b@example.org",)]


def test_stalled_server_times_out_within_the_configured_data_timeout() -> None:
    with SmtpTestServer(stall_seconds=10) as srv:
        srv.add_rule("data", action="stall")
        transport = smtp_transport(srv, timeout=0.3, data_timeout=0.8)
        start = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer within 0.8 s at the end of DATA") as info:
            transport.send(message())
        elapsed = time.monotonic() - start
        transport.close()
    assert info.value.temporary is True
    assert elapsed < 3.0  # the server would stall for 10 s: the timeout cut it short


def test_a_final_reply_slower_than_timeout_is_waited_for_up_to_data_timeout() -> None:
    """A blocking send reads the final reply under ``data_timeout``, not ``timeout``."""
    with SmtpTestServer(stall_seconds=0.7) as srv:
        srv.add_rule("data", "250 2.0.0 OK (slow)", action="late", times=1)
        transport = smtp_transport(srv, timeout=0.3, data_timeout=5)
        start = time.monotonic()
        result = transport.send(message())
        waited = time.monotonic() - start
        transport.send(message(to="c@example.org"))  # the socket is back on ``timeout``
        transport.close()
    assert result.code == 250 and waited >= 0.7  # longer than ``timeout``: it did stall
    assert len(srv.wait_for(2)) == 2


def test_silent_server_is_a_transport_error_within_the_timeout() -> None:
    with silent_server() as port:
        transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="none",
                                               timeout=0.5))
        start = time.monotonic()
        with pytest.raises(TransportError, match="no answer within 0.5 s while connecting"):
            transport.send(message())
        assert time.monotonic() - start < 3.0  # the server never speaks at all
        transport.close()


def test_nothing_listening_is_a_transport_error() -> None:
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=free_port(), security="none",
                                           timeout=1))
    with pytest.raises(TransportError, match=r"cannot connect"):
        transport.send(message())


# --------------------------------------------------------------------------- TLS and AUTH


def test_starttls_with_a_private_ca_trusted_via_ca_file() -> None:
    with SmtpTestServer(security="starttls") as srv, smtp_transport(srv) as transport:
        msg = message()
        assert transport.send(msg).code == 250
        assert len(srv.wait_for(1)) == 1
        assert "data=" not in repr(msg)  # 30 KB of bytes stay out of logs


def test_starttls_with_an_untrusted_certificate_is_a_clear_tls_error() -> None:
    with SmtpTestServer(security="starttls") as srv:
        transport = smtp_transport(srv, ca_file=None)
        with pytest.raises(TransportError, match=r"TLS certificate not trusted.*ca_file"):
            transport.send(message())
        assert srv.count == 0


def test_starttls_never_falls_back_to_plain_text(server: SmtpTestServer) -> None:
    transport = smtp_transport(server, security="starttls")  # the server offers no STARTTLS
    with pytest.raises(TransportError, match="does not offer STARTTLS"):
        transport.send(message())
    assert server.count == 0


def test_certificate_for_another_host_name_is_refused() -> None:
    with SmtpTestServer(security="starttls", cert_names=("mail.example.org",)) as srv:
        transport = smtp_transport(srv)  # trusted CA, but the name does not match 127.0.0.1
        with pytest.raises(TransportError, match="TLS certificate not trusted.*mismatch"):
            transport.send(message())
        assert srv.count == 0


def test_implicit_tls() -> None:
    with SmtpTestServer(security="tls") as srv:
        transport = smtp_transport(srv)
        assert transport.send(message()).code == 250
        assert transport.send(message(to="b@example.org")).code == 250
        transport.close()
        assert len(srv.wait_for(2)) == 2


def test_auth_ok_with_the_password_from_the_environment(caplog: pytest.LogCaptureFixture,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with SmtpTestServer(security="starttls", auth=("digest", PASSWORD)) as srv:
        settings = Settings(delivery="smtp", smtp=srv.smtp_settings())
        factory = open_transport(settings, {"SMTP_TEST_PASSWORD": PASSWORD})
        transport = factory()
        assert transport.send(message()).code == 250
        transport.close()
        assert srv.auth_attempts == ["digest"]
    out, err = capfd.readouterr()
    assert PASSWORD not in caplog.text + out + err


def test_auth_refused_is_a_transport_error_that_never_shows_the_password(
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    with SmtpTestServer(security="starttls", auth=("digest", "the-right-one")) as srv:
        transport = smtp_transport(srv)
        with pytest.raises(TransportError, match="authentication refused for user 'digest'"
                           ) as info:
            transport.send(message())
        assert srv.count == 0
    out, err = capfd.readouterr()
    assert PASSWORD not in str(info.value) + caplog.text + out + err


def test_auth_without_tls_is_allowed_to_a_loopback_relay_only() -> None:
    with SmtpTestServer(auth=("digest", PASSWORD)) as srv:
        settings = Settings(delivery="smtp", smtp=srv.smtp_settings())
        transport = open_transport(settings, {"SMTP_TEST_PASSWORD": PASSWORD})()
        assert transport.send(message()).code == 250
        transport.close()
        assert srv.auth_attempts == ["digest"]


# --------------------------------------------------------------------------- factory, pool


def test_open_transport_checks_the_password_and_plaintext_auth() -> None:
    smtp = SmtpSettings(host="mail.example.org", username="u", password_env="DIGEST_SMTP_PW")
    with pytest.raises(TransportError, match="DIGEST_SMTP_PW is not set"):
        open_transport(Settings(delivery="smtp", smtp=smtp), {})
    with pytest.raises(TransportError, match="unencrypted"):
        open_transport(Settings(delivery="smtp", smtp=replace(smtp, security="none")),
                       {"DIGEST_SMTP_PW": "x"})
    with pytest.raises(TransportError, match="no smtp settings"):
        open_transport(Settings(delivery="smtp"), {})
    factory = open_transport(Settings(delivery="smtp", smtp=replace(smtp, connections=3)),
                             {"DIGEST_SMTP_PW": "x"})
    assert isinstance(factory, TransportFactory) and factory.connections == 3
    assert factory() is not factory()


def test_a_pool_of_connections_sends_in_parallel_under_a_shared_rate_limit(
        server: SmtpTestServer) -> None:
    settings = Settings(delivery="smtp",
                        smtp=server.smtp_settings(connections=4, max_per_second=50.0))
    factory = open_transport(settings, {})
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        transport = factory()
        try:
            for i in range(5):
                transport.send(message(to=f"w{k}-{i}@example.org"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            transport.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(factory.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert errors == []
    got = server.wait_for(20)
    assert len({g.peer for g in got}) == 4  # four connections in parallel
    # one bucket for the pool: 20 messages at 50/s take >= 19/50 s whatever the pool size
    assert elapsed >= 0.37


def test_rate_limiter_spaces_acquisitions() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    limiter = RateLimiter(2.0, burst=1, clock=lambda: clock[0], sleep=sleep)
    waits = [limiter.acquire() for _ in range(4)]
    assert waits == [0.0, 0.5, 0.5, 0.5]
    clock[0] += 10  # idle time refills only up to the burst
    assert [limiter.acquire() for _ in range(2)] == [0.0, 0.5]


def test_rate_limiter_is_shared_across_threads() -> None:
    limiter = RateLimiter(50.0, burst=1)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(5)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 20 tokens at 50/s with one free: at least 19/50 s, however many threads ask.
    assert time.monotonic() - start >= 0.37


def test_dot_stuffing_doubles_every_leading_dot_like_the_rfc_rule() -> None:
    import random
    import re

    from digest.delivery._transports import _dot_stuff

    rule = re.compile(rb"(?m)^\.")
    rng = random.Random(5)
    cases = [b"", b".", b"..\r\n", b"a\r\n.\r\n.b", b"\r\n.\r\n", b"x.y\r\n. z"]
    cases += [bytes(rng.choice(b".a\r\n ") for _ in range(rng.randrange(0, 40)))
              for _ in range(2000)]
    for data in cases:
        want = rule.sub(b"..", data)
        want += b"" if want.endswith(b"\r\n") else b"\r\n"
        assert _dot_stuff(data) == want + b".\r\n", data


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_refused_login_pauses_every_connection_to_that_server_with_backoff() -> None:
    """One wrong password must not become a burst of failed logins (an account lockout): one
    mechanism per connection, then the whole server is paused, probed again after a backoff
    that doubles, and a new config (a new gate) tries at once."""
    with SmtpTestServer(security="starttls", auth=("digest", "the-right-one")) as srv:
        clock = FakeClock()
        gate = ServerGate(clock=clock)
        settings = srv.smtp_settings()
        pool = [SmtpTransport(settings, "wrong", gate=gate) for _ in range(3)]
        with pytest.raises(TransportError, match="authentication refused"):
            pool[0].send(message())
        assert srv.auth_attempts == ["digest"]  # one mechanism tried, not PLAIN then LOGIN
        for transport in pool[1:]:
            with pytest.raises(TransportError, match="sending to .* is paused"):
                transport.send(message())
        assert len(srv.auth_attempts) == 1
        clock.now += ServerGate.BACKOFF + 1  # the backoff passed: one probe login
        with pytest.raises(TransportError, match="authentication refused"):
            pool[1].send(message())
        with pytest.raises(TransportError, match="paused"):
            pool[2].send(message())
        clock.now += ServerGate.BACKOFF + 1  # the backoff doubled: still paused
        with pytest.raises(TransportError, match="paused"):
            pool[2].send(message())
        assert len(srv.auth_attempts) == 2
        fresh = SmtpTransport(settings, "the-right-one", gate=ServerGate(clock=clock))
        fresh.send(message())  # a config change (a new gate) is tried at once
        fresh.close()
        assert len(srv.auth_attempts) == 3 and srv.count == 1


def test_a_pool_with_a_wrong_password_logs_in_once(tmp_path: Path) -> None:
    from digest.delivery import send_all
    from digest.models import Config, Topic

    with SmtpTestServer(security="starttls", auth=("digest", "the-right-one")) as srv:
        settings = Settings(sender="Paper Digest <digest@example.org>",
                            database=tmp_path / "digest.db", delivery="smtp",
                            smtp=srv.smtp_settings(connections=4))
        subs = tuple(Subscriber(email=f"r{i}@example.org", name=None, timezone="UTC",
                                schedule="0 7 * * *", max_papers=5,
                                topics=(Topic(name="m", include=("model",)),))
                     for i in range(8))
        config = Config(path=tmp_path / "s.yaml", settings=settings, subscribers=subs)
        from digest.models import Paper

        papers = (Paper(id="2611.00001", title="A model", abstract="We build a model."),)
        with pytest.raises(TransportError, match="authentication refused"):
            send_all(config, papers, NOW, environ={"SMTP_TEST_PASSWORD": "wrong"})
        assert srv.auth_attempts == ["digest"]


def test_stale_maildir_tmp_files_are_cleaned_when_the_outbox_opens(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    box = tmp_path / "outbox"
    MaildirOutbox(box)  # creates tmp/, new/, cur/
    host = MaildirOutbox._host
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    crashed = box / "tmp" / f"1764633600.M1P{dead_pid}Q0.{host}"  # its writer is gone
    ancient = box / "tmp" / "1600000000.M1P1Q0.elsewhere"  # another host, 36 h untouched
    live = box / "tmp" / f"1764633600.M2P{os.getpid()}Q1.{host}"  # being written right now
    fresh_foreign = box / "tmp" / "1764633600.M3P1Q0.elsewhere"
    for f in (crashed, ancient, live, fresh_foreign):
        f.write_bytes(b"Subject: half\n\n")
    old = time.time() - 37 * 3600
    os.utime(ancient, (old, old))
    outbox = MaildirOutbox(box)
    assert outbox.cleaned == 2
    assert sorted(p.name for p in (box / "tmp").iterdir()) == sorted([live.name,
                                                                      fresh_foreign.name])


def test_our_ehlo_refused_pauses_the_server_for_the_daemons_next_fires() -> None:
    with SmtpTestServer() as srv:
        rule = srv.add_rule("helo", "550 5.7.1 Your HELO name is refused")
        gate = ServerGate()
        first = SmtpTransport(srv.smtp_settings(), None, gate=gate)
        with pytest.raises(TransportError, match="our EHLO/HELO name is refused"):
            first.send(message())
        tried = rule.fired  # EHLO, then smtplib's HELO fallback
        later = SmtpTransport(srv.smtp_settings(), None, gate=gate)  # the next fire
        with pytest.raises(TransportError, match="paused"):
            later.send(message())
        assert rule.fired == tried  # the server was not asked again


# --------------------------------------------------------------------------- PIPELINING


def test_with_pipelining_offered_mail_rcpt_and_data_go_as_one_group() -> None:
    with SmtpTestServer() as srv:
        handler = offer_pipelining(srv)
        transport = smtp_transport(srv)
        msgs = [message(to=f"r{i}@example.org") for i in range(3)]
        assert [transport.send(m).code for m in msgs] == [250, 250, 250]
        transport.close()
        got = srv.wait_for(3)
    assert handler.grouped == [True, True, True]
    assert [g.data for g in got] == [m.data for m in msgs]
    assert len({g.peer for g in got}) == 1


def test_without_pipelining_offered_each_command_waits_for_its_reply() -> None:
    with SmtpTestServer() as srv:
        handler = offer_pipelining(srv, offer=False)
        transport = smtp_transport(srv)
        assert transport.send(message()).code == 250
        transport.close()
        srv.wait_for(1)
    assert handler.grouped == [False]


def test_a_pipelined_refusal_keeps_the_connection_in_step_for_the_next_message() -> None:
    with SmtpTestServer() as srv:
        handler = offer_pipelining(srv)
        srv.add_rule("rcpt", "550 5.1.1 No such user", recipient="gone@example.org")
        srv.add_rule("mail", "451 4.7.1 Slow down", times=1)
        transport = smtp_transport(srv)
        with pytest.raises(DeliveryError) as slow:
            transport.send(message(to="a@example.org"))
        with pytest.raises(DeliveryError) as gone:
            transport.send(message(to="gone@example.org"))
        # the RCPT and DATA replies owed to each failed group were read: the next message's
        # replies are its own, on the same connection
        assert transport.send(message(to="b@example.org")).code == 250
        transport.close()
        got = srv.wait_for(1)
    assert (slow.value.code, slow.value.temporary) == (451, True)
    assert (gone.value.code, gone.value.temporary) == (550, False)
    assert [g.rcpt_tos for g in got] == [("b@example.org",)]
    assert handler.grouped == [True, True, True]


# --------------------------------------------------------------------------- replies in pieces


class _Scripted:
    """A raw TCP server speaking just enough SMTP, one connection, writing each reply as the
    test says (``replies`` by verb, the final one as ``DATA_END``): in pieces (``b"|"`` marks
    a pause between writes), then closing or going silent after the final reply where told.
    For what aiosmtpd never does: split a reply line across writes, pause inside a multi-line
    reply, answer a pipelined group in one write, hang up in the middle of a reply."""

    REPLIES = {b"MAIL": b"250 2.1.0 Ok\r\n", b"RCPT": b"250 2.1.5 Ok\r\n",
               b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
               b"DATA_END": b"250 2.0.0 Ok: queued\r\n", b"QUIT": b"221 Bye\r\n"}

    def __init__(self, replies: dict[bytes, bytes], *, pipelining: bool = False,
                 then: str = "serve") -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._replies, self._then = {**self.REPLIES, **replies}, then
        self._ehlo = b"250-scripted\r\n250-SIZE 10000000\r\n" + \
            (b"250-PIPELINING\r\n" if pipelining else b"") + b"250 8BITMIME\r\n"
        self._done = threading.Event()
        self.bodies: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _write(self, conn: socket.socket, reply: bytes) -> None:
        pieces = reply.split(b"|")
        for i, piece in enumerate(pieces):
            conn.sendall(piece)
            if i < len(pieces) - 1:
                time.sleep(0.05)

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn, conn.makefile("rb") as lines:
            self._write(conn, b"220 scripted ESMTP\r\n")
            go_ahead = False  # a 354 was written: the body follows DATA
            while line := lines.readline():
                verb = line[:4].upper()
                reply = self._ehlo if verb == b"EHLO" else self._replies.get(verb, b"250 Ok\r\n")
                self._write(conn, reply)
                go_ahead = go_ahead or b"354 " in reply
                if verb == b"QUIT":
                    return
                if verb == b"DATA" and go_ahead:
                    go_ahead = False
                    self.bodies.append(b"".join(iter(lines.readline, b".\r\n")))
                    self._write(conn, self._replies[b"DATA_END"])
                    if self._then == "close":
                        return
                    if self._then == "silent":
                        self._done.wait(10)
                        return

    def settings(self, **overrides: Any) -> SmtpSettings:
        return SmtpSettings(host="127.0.0.1", port=self.port, security="none",
                            **{"timeout": 2.0, **overrides})

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self._listener.close()


def _deliver(transport: SmtpTransport, msg: OutgoingMessage, mode: str) -> SendResult:
    """``send`` (blocking reads), or as a run's event loop drives it: ``start``, then ``step``
    each time ``select`` sees the reply come, past its deadline ``step(expired=True)``."""
    if mode == "send":
        return transport.send(msg)
    flight = transport.start(msg)
    while (wait := flight.waiting()) is not None:
        ready, _, _ = select.select([wait.sock], [], [], wait.timeout)
        flight.step(expired=not ready)
    return flight.result()


@pytest.mark.parametrize("mode", ["send", "stepped"])
@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_replies_split_across_writes_and_lines_are_read_whole(mode: str,
                                                              pipelining: bool) -> None:
    srv = _Scripted({b"MAIL": b"2|50 2.1.0| Ok\r|\n",
                     b"DATA_END": b"250-2.0.0 Ok:|  queued\r\n250-as|\r\n250 ABC123\r\n"},
                    pipelining=pipelining)
    transport = SmtpTransport(srv.settings(), local_hostname="client.example.org")
    try:
        first = _deliver(transport, message(to="a@example.org"), mode)
        second = _deliver(transport, message(to="b@example.org"), mode)  # same connection
    finally:
        transport.close()
        srv.close()
    assert (first.code, first.reply) == (250, "2.0.0 Ok: queued as ABC123")
    assert second.reply == first.reply
    assert len(srv.bodies) == 2


@pytest.mark.parametrize("mode", ["send", "stepped"])
def test_a_connection_closed_inside_the_final_reply_is_uncertain(mode: str) -> None:
    srv = _Scripted({b"DATA_END": b"250-2.0.0 Ok: queued\r\n"}, then="close")
    transport = SmtpTransport(srv.settings(), local_hostname="client.example.org")
    try:
        with pytest.raises(UncertainDeliveryError, match="connection lost .* end of DATA"):
            _deliver(transport, message(), mode)
    finally:
        transport.close()
        srv.close()
    assert len(srv.bodies) == 1


@pytest.mark.parametrize("mode", ["send", "stepped"])
def test_a_server_silent_inside_the_final_reply_is_given_up_on_in_time(mode: str) -> None:
    """The reply's first line comes, the rest never does: the read of it still ends within a
    timeout, not blocked for good, and the error names the one that ran out (a blocking read
    waits ``data_timeout``; once the event loop saw the reply come, the socket's own)."""
    srv = _Scripted({b"DATA_END": b"250-2.0.0 Ok: queued\r\n"}, then="silent")
    transport = SmtpTransport(srv.settings(timeout=0.3, data_timeout=0.8),
                              local_hostname="client.example.org")
    start = time.monotonic()
    limit = "0.8" if mode == "send" else "0.3"
    try:
        with pytest.raises(UncertainDeliveryError, match=f"no answer within {limit} s"):
            _deliver(transport, message(), mode)
        elapsed = time.monotonic() - start
    finally:
        transport.close()
        srv.close()
    assert elapsed < 3.0  # the server stays silent for 10 s


@pytest.mark.parametrize("mode", ["send", "stepped"])
@pytest.mark.parametrize("group", [
    # the three replies of MAIL, RCPT and DATA in one write, as a pipelining server may
    {b"MAIL": b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go ahead\r\n", b"RCPT": b"", b"DATA": b""},
    # the RCPT reply cut in two writes, the second also carrying DATA's
    {b"MAIL": b"250 2.1.0 Ok\r\n250 2.1|", b"RCPT": b".5 Ok\r\n354 Go ahead\r\n", b"DATA": b""},
    # refused inside the group: the replies still owed come in one write with the refusal
    {b"MAIL": b"250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n554 5.5.1 No valid recipients\r\n",
     b"RCPT": b"", b"DATA": b""},
], ids=["one-write", "cut", "refused"])
def test_a_pipelined_group_answered_in_any_cut_of_writes(mode: str,
                                                         group: dict[bytes, bytes]) -> None:
    srv = _Scripted({**group, b"DATA_END": b"250 2.0.0 Ok: queued as X1\r\n"}, pipelining=True)
    transport = SmtpTransport(srv.settings(), local_hostname="client.example.org")
    try:
        if b"550" in group[b"MAIL"]:
            with pytest.raises(DeliveryError, match="RCPT TO refused: 5.1.1 No such user") as info:
                _deliver(transport, message(), mode)
            assert (info.value.code, info.value.temporary) == (550, False)
            assert srv.bodies == []
        else:
            result = _deliver(transport, message(), mode)
            assert (result.code, result.reply) == (250, "2.0.0 Ok: queued as X1")
            assert len(srv.bodies) == 1
    finally:
        transport.close()
        srv.close()


@pytest.mark.parametrize("mode", ["send", "stepped"])
@pytest.mark.parametrize("verb", [b"MAIL", b"DATA_END"])
def test_a_reply_line_too_long_ends_as_a_lost_connection(mode: str, verb: bytes) -> None:
    """A server writing a reply line past smtplib's 8,192-byte limit: the client cannot stay in
    step, so the connection goes and the message is retried (or is uncertain once its whole
    body was sent), never an smtplib exception out of the transport."""
    srv = _Scripted({verb: b"250 " + b"x" * 9000 + b"\r\n"})
    transport = SmtpTransport(srv.settings(), local_hostname="client.example.org")
    try:
        expected = UncertainDeliveryError if verb == b"DATA_END" else DeliveryError
        with pytest.raises(expected, match="reply line longer than 8192 bytes") as info:
            _deliver(transport, message(), mode)
        if verb == b"MAIL":
            assert info.value.temporary
    finally:
        transport.close()
        srv.close()
