"""A run builds the next message while the server stores the one before: ``start_edition``
writes the whole message and leaves the final reply unread, ``finish_edition`` reads and
records it. Against a real aiosmtpd server and a real SQLite ledger."""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import replace
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from smtp_server import SmtpTestServer
from test_service import EMAILS, FAST, NOW, TinyRenderer, make_config, make_papers

from digest.compose import edition_for, summarize_all
from digest.delivery import EditionRun, deliver_many, send_all
from digest.delivery._batch import SendReport
from digest.delivery._edition import Ready, finish_edition, prepare_edition, start_edition
from digest.delivery._transports import SmtpTransport, TransportFactory
from digest.ledger import Ledger
from digest.models import Config, Delivery, Digest, RenderedEmail, Subscriber


def one_connection(cfg: Config) -> Config:
    smtp = cfg.settings.smtp
    assert smtp is not None
    return replace(cfg, settings=replace(cfg.settings, smtp=replace(smtp, connections=1)))


def run(cfg: Config, renderer: TinyRenderer | None = None, **kw: Any) -> SendReport:
    return send_all(cfg, make_papers(), NOW, renderer=renderer or TinyRenderer(), retry=FAST,
                    environ={}, **kw)


class LoggingRenderer(TinyRenderer):
    """TinyRenderer that notes whom it rendered for, in one list with the outcomes."""

    def __init__(self, events: list[str], fail_for: str | None = None) -> None:
        self.events, self.fail_for = events, fail_for

    def render(self, digest: Digest) -> RenderedEmail:
        if digest.subscriber.email == self.fail_for:
            raise RuntimeError(f"a template bug for {self.fail_for}")
        self.events.append(f"render {digest.subscriber.email}")
        return super().render(digest)


def test_a_started_message_is_sending_in_the_ledger_until_its_reply_is_read(
        tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        cfg = make_config(tmp_path, ["ada@example.org"], server)
        sub = cfg.subscribers[0]
        papers = make_papers()
        ledger = Ledger(cfg.settings.database)
        edition_run = EditionRun(ledger=ledger, renderer=TinyRenderer(), settings=cfg.settings,
                                 summaries=summarize_all(papers, 350), now=NOW, retry=FAST)
        ready = prepare_edition(sub, edition_for(sub, NOW), papers, edition_run)
        assert isinstance(ready, Ready)
        assert ledger.get("ada@example.org", NOW.date()) is None  # nothing written yet
        transport = SmtpTransport(cfg.settings.smtp)  # type: ignore[arg-type]
        try:
            started = start_edition(ready, transport)
            # The whole message left (the server has it), the verdict is not read yet: a
            # crash now finds the row "sending", with the very bytes, for a flagged re-send.
            received = server.wait_for(1)
            row = ledger.get("ada@example.org", NOW.date())
            assert row is not None and row.state == "sending"
            assert ledger.stored_message("ada@example.org", NOW.date()) == ready.msg.data
            delivery = finish_edition(started)
        finally:
            transport.close()
        assert (delivery.state, delivery.code) == ("sent", 250)
        row = ledger.get("ada@example.org", NOW.date())
        assert row is not None and row.state == "sent" and row.message_id == delivery.message_id
        assert received[0].data.replace(b"\r\n", b"\n") \
            == ready.msg.data.replace(b"\r\n", b"\n")


def test_a_run_builds_the_next_message_before_reading_the_last_reply(tmp_path: Path) -> None:
    events: list[str] = []
    with SmtpTestServer() as server:
        cfg = one_connection(make_config(tmp_path, EMAILS, server))
        report = run(cfg, renderer=LoggingRenderer(events),
                     progress=lambda d: events.append(f"done {d.email}"))
        assert report.sent == 3 and server.count == 3
    ada, bob, cy = EMAILS
    assert events == [f"render {ada}", f"render {bob}", f"done {ada}", f"render {cy}",
                      f"done {bob}", f"done {cy}"]


def test_a_failure_while_a_message_is_in_flight_still_records_that_message(
        tmp_path: Path) -> None:
    events: list[str] = []
    with SmtpTestServer() as server:
        cfg = one_connection(make_config(tmp_path, EMAILS, server))
        with pytest.raises(RuntimeError, match="template bug"):
            run(cfg, renderer=LoggingRenderer(events, fail_for="bob@example.org"))
        assert server.count == 1
    rows = {r.email: r.state for r in Ledger(cfg.settings.database).rows()}
    assert rows == {"ada@example.org": "sent"}  # not left "sending": it was accepted


def test_a_temporary_refusal_of_a_started_message_is_retried_then_sent(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        server.add_rule("data", "451 4.3.0 Try again later", recipient="bob@example.org",
                        times=1)
        cfg = one_connection(make_config(tmp_path, EMAILS, server))
        report = run(cfg)
        assert (report.sent, report.deferred, server.count) == (3, 0, 3)
    row = Ledger(cfg.settings.database).get("bob@example.org", NOW.date())
    assert row is not None and (row.state, row.attempts) == ("sent", 2)


def test_the_daemons_stream_records_an_outcome_before_waiting_for_the_next_fire(
        tmp_path: Path) -> None:
    """``deliver_many``'s editions may block until the next fire: a message's outcome must
    not wait for it (no building ahead on a stream)."""
    seen = threading.Event()
    waited_for_it: list[bool] = []

    with SmtpTestServer() as server:
        cfg = one_connection(make_config(tmp_path, EMAILS[:2], server))
        first, second = cfg.subscribers

        def fires() -> Iterator[tuple[Subscriber, date]]:
            yield first, edition_for(first, NOW)
            waited_for_it.append(seen.wait(timeout=10))  # the next fire comes later
            yield second, edition_for(second, NOW)

        papers = make_papers()
        edition_run = EditionRun(ledger=Ledger(cfg.settings.database), renderer=TinyRenderer(),
                                 settings=cfg.settings, summaries=summarize_all(papers, 350),
                                 now=NOW, retry=FAST)
        smtp = cfg.settings.smtp
        assert smtp is not None

        def progress(d: Delivery) -> None:
            if d.email == first.email:
                seen.set()

        report = deliver_many(fires(), papers, edition_run,
                              TransportFactory(lambda: SmtpTransport(smtp), 1, "test"),
                              progress=progress, processes=1)
        assert report.sent == 2 and server.count == 2
    assert waited_for_it == [True]


# ------------------------------------------------------------------ one thread, every connection


def test_one_thread_keeps_the_other_connections_going_while_one_waits(tmp_path: Path) -> None:
    """A batch keeps all its connections going from the calling thread: while the server sits
    on one message's final reply, the other connection carries everyone else."""
    emails = [f"reader{i}@example.org" for i in range(8)]
    threads: set[str] = set()
    order: list[str] = []
    with SmtpTestServer(stall_seconds=1.5) as server:
        stall = server.add_rule("data", "250 2.0.0 OK (slow)", action="late",
                                recipient=emails[0], times=1)
        cfg = make_config(tmp_path, emails, server)  # two connections
        before = threading.active_count()

        def progress(d: Delivery) -> None:
            threads.add(threading.current_thread().name)
            order.append(d.email)
            assert threading.active_count() == before  # no sending threads were started

        report = run(cfg, progress=progress)
        assert report.sent == 8 and server.count == 8 and stall.fired == 1
    assert threads == {threading.current_thread().name}
    assert order[-1] == emails[0] and sorted(order[:-1]) == sorted(emails[1:])
    rows = {r.email: (r.state, r.attempts) for r in Ledger(cfg.settings.database).rows()}
    assert rows == {e: ("sent", 1) for e in emails}


def test_a_final_reply_that_never_comes_is_given_up_on_at_data_timeout(tmp_path: Path) -> None:
    """The loop's own deadline stands in for the socket's: a silent end of DATA is the
    uncertain case (the server may have the message), a silent command a plain retry."""
    with SmtpTestServer(stall_seconds=5) as server:
        server.add_rule("data", "250 2.0.0 OK (too late)", action="stall",
                        recipient="bob@example.org", times=1)
        server.add_rule("rcpt", "250 OK (too late)", action="stall",
                        recipient="cy@example.org", times=1)
        cfg = make_config(tmp_path, EMAILS, server, timeout=0.4, data_timeout=0.6)
        report = run(cfg)
        assert (report.sent, report.deferred) == (2, 1)
    ledger = Ledger(cfg.settings.database)
    bob = ledger.get("bob@example.org", NOW.date())
    assert bob is not None and bob.state == "deferred" and bob.possible_duplicate
    assert bob.error is not None and "no answer within 0.6 s at the end of DATA" in bob.error
    cy = ledger.get("cy@example.org", NOW.date())  # the silent RCPT: retried, then sent
    assert cy is not None and (cy.state, cy.attempts) == ("sent", 2)


def test_a_final_reply_slower_than_timeout_is_waited_for_up_to_data_timeout(
        tmp_path: Path) -> None:
    """In the loop the final reply is waited for under ``data_timeout`` (the loop's own
    deadline), and the read of a reply that came needs no longer timeout on the socket."""
    with SmtpTestServer(stall_seconds=0.7) as server:
        server.add_rule("data", "250 2.0.0 OK (slow)", action="late",
                        recipient="bob@example.org", times=1)
        cfg = make_config(tmp_path, EMAILS, server, timeout=0.3, data_timeout=5)
        report = run(cfg)
        assert (report.sent, report.deferred) == (len(EMAILS), 0)
    bob = Ledger(cfg.settings.database).get("bob@example.org", NOW.date())
    assert bob is not None and (bob.state, bob.attempts, bob.possible_duplicate) == \
        ("sent", 1, False)


def test_a_run_leaves_the_collector_as_it_found_it(tmp_path: Path) -> None:
    """The loop raises the collector's thresholds (and freezes what exists) for the run
    only: a library caller's process gets its own settings back, after a failure too."""
    from digest.errors import TransportError

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    during: list[tuple[int, int, int]] = []
    with SmtpTestServer() as server:
        cfg = make_config(tmp_path, EMAILS, server)
        report = run(cfg, progress=lambda d: during.append(gc.get_threshold()))
        assert report.sent == len(EMAILS)
        assert during and all(t[0] > before[0] for t in during)
        assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)
        server.add_rule("mail", "550 5.7.1 Sender refused")
        with pytest.raises(TransportError, match="refused"):
            run(replace(cfg, subscribers=tuple(
                replace(s, email=f"x{s.email}") for s in cfg.subscribers)))
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)


@pytest.mark.parametrize(("security", "pipelining"), [
    ("tls", False), ("starttls", True), ("none", True)])
def test_the_loop_over_tls_and_pipelining_keeps_each_connection_in_step(
        tmp_path: Path, security: Any, pipelining: bool) -> None:
    """The loop waits on the socket: over TLS (a reply decrypted but unread is not seen by
    ``select``) and with PIPELINING (three replies to one group) every message still gets
    its own replies, a refused recipient included."""
    emails = [f"reader{i}@example.org" for i in range(6)]
    with SmtpTestServer(security=security, pipelining=pipelining) as server:
        server.add_rule("rcpt", "550 5.1.1 No such user", recipient=emails[2])
        server.add_rule("data", "250 2.0.0 OK (slow)", action="late", recipient=emails[4],
                        times=1)
        server.stall_seconds = 0.5
        cfg = make_config(tmp_path, emails, server)  # two connections
        report = run(cfg)
        assert (report.sent, report.failed) == (5, 1)
        received = server.wait_for(5)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(set(emails) - {emails[2]})
    rows = {r.email: (r.state, r.attempts) for r in Ledger(cfg.settings.database).rows()}
    assert rows == {e: ("failed" if e == emails[2] else "sent", 1) for e in emails}


def test_what_was_accepted_is_in_the_ledger_while_the_loop_waits(tmp_path: Path) -> None:
    """A ``sent`` held for the next ``begin`` is committed before the loop waits: while the
    server sits on bob's final reply, with nothing else to build, ada and cy (accepted
    meanwhile on the other connection) read ``sent`` from another connection to the file."""
    with SmtpTestServer(stall_seconds=4.0) as server:
        stall = server.add_rule("data", "250 2.0.0 OK (slow)", action="late",
                                recipient="bob@example.org", times=1)
        cfg = make_config(tmp_path, EMAILS, server)  # two connections
        done: list[SendReport] = []
        sender = threading.Thread(target=lambda: done.append(run(cfg)))
        sender.start()
        try:
            deadline = time.monotonic() + 3.0  # well inside bob's stall
            seen: dict[str, str] = {}
            while time.monotonic() < deadline:
                with Ledger(cfg.settings.database) as other:
                    seen = {r.email: r.state for r in other.rows()}
                if seen.get("cy@example.org") == "sent":
                    break
                time.sleep(0.02)
            assert stall.fired == 1 and not done, "bob's reply came too soon for this test"
            assert seen == {"ada@example.org": "sent", "bob@example.org": "sending",
                            "cy@example.org": "sent"}
        finally:
            sender.join()
    assert done and done[0].sent == 3


class _LedgerWatchingServer(SmtpTestServer):
    """Reads, as each message's body has fully arrived, its row through a connection of its
    own to the sender's ledger: what a crash at that moment would leave there."""

    def __init__(self, database: Path, edition: date, **kw: Any) -> None:
        super().__init__(**kw)
        self.database, self.edition = database, edition
        self.seen: dict[str, str | None] = {}

    def _accept(self, envelope: Any, session: Any) -> str:
        with Ledger(self.database) as other:
            row = other.get(envelope.rcpt_tos[0], self.edition)
        self.seen[envelope.rcpt_tos[0]] = None if row is None else row.state
        return super()._accept(envelope, session)


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize("connections", [1, 2, 4])
def test_no_body_reaches_the_server_before_its_row_reads_sending(
        tmp_path: Path, pipelining: bool, connections: int) -> None:
    """The loop holds each ``begin`` and commits it with the next message's (one commit for
    two or more); a body the server asks for meanwhile waits for that commit. So whenever a
    message's body arrives its row is on disk as ``sending``, and a crash then is seen by the
    next run; and every parked body is sent in the end, with one connection or many."""
    emails = [f"reader{i}@example.org" for i in range(7)]
    edition = edition_for(make_config(tmp_path, emails).subscribers[0], NOW)
    with _LedgerWatchingServer(tmp_path / "digest.db", edition, pipelining=pipelining) as server:
        cfg = make_config(tmp_path, emails, server)
        assert cfg.settings.smtp is not None
        cfg = replace(cfg, settings=replace(cfg.settings, smtp=replace(
            cfg.settings.smtp, connections=connections)))
        report = run(cfg)
        assert report.sent == 7
        assert server.seen == dict.fromkeys(emails, "sending")
    with Ledger(cfg.settings.database) as ledger:
        assert {r.email: r.state for r in ledger.rows()} == dict.fromkeys(emails, "sent")
