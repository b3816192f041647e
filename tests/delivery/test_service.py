"""The delivery service against a real aiosmtpd server (tests/smtp_server.py), a real Maildir
and real SQLite files: once per edition, retries, deferral, failures, crash replay, locks."""

from __future__ import annotations

import mailbox
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from smtp_server import SmtpTestServer

from digest.compose import edition_for
from digest.compose import TokenIndex
from digest.delivery import EditionRun, deliver_edition, send_all
from digest.delivery._edition import RetryPolicy
from digest.errors import LockedError, TransportError
from digest.ledger import Ledger, SendLock
from digest.models import (
    Config,
    Digest,
    Outcome,
    Paper,
    RenderedEmail,
    Settings,
    Subscriber,
    Topic,
)

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
EDITION = NOW.date()
FAST = RetryPolicy(retries=2, backoff=0.01, sleep=lambda s: None)


def make_papers() -> tuple[Paper, ...]:
    rows = [
        ("2611.00001", "Sparse attention for long-context transformers",
         "We propose a sparse attention scheme. It cuts memory by 40% on long documents."),
        ("2611.00002", "Diffusion models for protein design",
         "We train a diffusion model over protein backbones. It beats baselines by 12 points."),
        ("2611.00003", "Retrieval-augmented generation at scale",
         "We study retrieval-augmented generation with a billion-document index."),
    ]
    when = datetime(2026, 11, 24, tzinfo=timezone.utc)
    return tuple(Paper(id=i, title=t, abstract=a, authors=("A. Author",), published=when,
                       url=f"https://arxiv.org/abs/{i}", upvotes=10) for i, t, a in rows)


def make_subscriber(email: str, *terms: str) -> Subscriber:
    return Subscriber(email=email, name=email.split("@")[0].title(), timezone="UTC",
                      schedule="0 7 * * *", max_papers=5,
                      topics=(Topic(name="ml", include=terms or (
                          "attention", "diffusion", "retrieval")),))


def make_config(tmp_path: Path, emails: list[str], server: SmtpTestServer | None = None,
                **smtp: Any) -> Config:
    settings = Settings(
        sender="Paper Digest <digest@example.org>", database=tmp_path / "digest.db",
        outbox=tmp_path / "outbox", delivery="smtp" if server else "outbox",
        smtp=server.smtp_settings(connections=2, **smtp) if server else None)
    return Config(path=tmp_path / "subscribers.yaml", settings=settings,
                  subscribers=tuple(make_subscriber(e) for e in emails))


class TinyRenderer:
    """Stands in for digest.renderer: only the delivery logic is under test here."""

    def render(self, digest: Digest) -> RenderedEmail:
        titles = [i.summary.title for i in digest.items]
        html = "<ul>" + "".join(f"<li>{t}</li>" for t in titles) + "</ul>"
        if digest.unsubscribe_url:
            html += f'<a href="{digest.unsubscribe_url}">unsubscribe</a>'
        return RenderedEmail(subject=f"Your digest for {digest.edition}", html=html,
                             text="\n".join(titles),
                             papers=tuple(i.pick.paper.id for i in digest.items))


def run(cfg: Config, now: datetime = NOW, **kw: Any) -> Any:
    kw.setdefault("environ", {"SMTP_TEST_PASSWORD": "pw"})
    kw.setdefault("retry", FAST)
    return send_all(cfg, make_papers(), now, renderer=TinyRenderer(), **kw)


EMAILS = ["ada@example.org", "bob@example.org", "cy@example.org"]


def ids_by_rcpt(server: SmtpTestServer) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in server.messages:
        out.setdefault(m.rcpt_tos[0], []).append(str(m.message["Message-ID"]))
    return out


def test_send_then_rerun_sends_nothing_then_force_resends(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        cfg = make_config(tmp_path, EMAILS, server)
        first = run(cfg)
        assert (first.sent, first.failed, first.ok) == (3, 0, True)
        assert sorted(ids_by_rcpt(server)) == EMAILS
        again = run(cfg)
        assert (again.sent, again.already_sent) == (0, 3)
        assert server.count == 3
        forced = run(cfg, force=True)
        assert forced.sent == 3 and server.count == 6
        # a resend is recognizable: the same Message-ID per subscriber edition
        assert all(len(set(v)) == 1 and len(v) == 2 for v in ids_by_rcpt(server).values())
    ledger = Ledger(cfg.settings.database)
    rows = ledger.rows()
    assert {r.state for r in rows} == {"sent"} and {r.attempts for r in rows} == {2}
    assert ledger.history()["ada@example.org"] == {"2611.00001", "2611.00002", "2611.00003"}


def test_temporary_failures_retry_then_defer_then_a_later_run_delivers(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "451 4.3.0 Try again later", recipient="bob@example.org",
                        times=3)
        server.add_rule("data", "421 4.3.2 Shutting down", recipient="cy@example.org",
                        times=3)
        cfg = make_config(tmp_path, EMAILS, server)
        sleeps: list[float] = []
        report = run(cfg, retry=RetryPolicy(retries=2, backoff=0.25, sleep=sleeps.append))
        assert (report.sent, report.deferred, report.failed) == (1, 2, 0)
        assert sorted(sleeps) == [0.25, 0.25, 0.5, 0.5]  # exponential, per recipient
        ledger = Ledger(cfg.settings.database)
        bob = ledger.get("bob@example.org", EDITION)
        assert bob is not None and (bob.state, bob.code, bob.attempts) == ("deferred", 451, 3)
        assert "Try again later" in (bob.error or "")
        # a later run (same edition, an hour on) finishes the deferred ones, same message
        later = run(cfg, now=NOW + timedelta(hours=1))
        assert (later.sent, later.already_sent, later.deferred) == (2, 1, 0)
        assert sorted(ids_by_rcpt(server)) == EMAILS
        assert all(len(v) == 1 for v in ids_by_rcpt(server).values())
        cy = ledger.get("cy@example.org", EDITION)
        assert cy is not None and cy.state == "sent" and not cy.possible_duplicate


def test_deferred_past_retry_for_becomes_failed(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "451 4.3.0 Try again later", recipient="bob@example.org")
        cfg = make_config(tmp_path, EMAILS[:2], server)
        assert run(cfg).deferred == 1
        server.clear_rules()
        late = run(cfg, now=NOW + timedelta(days=2, minutes=1))
        # the old edition is given up; today's edition is new and goes out normally
        assert late.failed == 1
        row = Ledger(cfg.settings.database).get("bob@example.org", EDITION)
        assert row is not None and row.state == "failed"
        assert "gave up after 2 days" in (row.error or "")


def test_permanent_failure_does_not_stop_the_others(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "550 5.1.1 No such user", recipient="bob@example.org")
        cfg = make_config(tmp_path, EMAILS, server)
        report = run(cfg)
        assert (report.sent, report.failed, report.ok) == (2, 1, False)
        assert [d.email for d in report.problems] == ["bob@example.org"]
        assert report.problems[0].code == 550
        assert sorted(ids_by_rcpt(server)) == ["ada@example.org", "cy@example.org"]
        again = run(cfg)  # 5xx is not retried
        assert (again.sent, again.failed_before, again.failed) == (0, 1, 0)
        assert server.count == 2
    row = Ledger(cfg.settings.database).get("bob@example.org", EDITION)
    assert row is not None and row.state == "failed" and row.code == 550
    assert "No such user" in (row.error or "")


def test_auth_refused_stops_the_run_and_marks_nothing_sent(tmp_path: Path) -> None:
    with SmtpTestServer(security="starttls", auth=("digest", "right")) as server:
        cfg = make_config(tmp_path, EMAILS, server)
        with pytest.raises(TransportError, match="authentication refused"):
            run(cfg, environ={"SMTP_TEST_PASSWORD": "wrong"})
        assert server.count == 0
        ledger = Ledger(cfg.settings.database)
        assert all(r.state == "deferred" for r in ledger.rows())
        assert not any(r.state == "sent" for r in ledger.rows())
        report = run(cfg, environ={"SMTP_TEST_PASSWORD": "right"})
        assert report.sent == 3 and server.count == 3


def test_untrusted_tls_stops_the_run(tmp_path: Path) -> None:
    with SmtpTestServer(security="starttls") as server:
        cfg = make_config(tmp_path, EMAILS, server, ca_file=None)
        with pytest.raises(TransportError, match="certificate"):
            run(cfg)
        assert server.count == 0
        assert not any(r.state == "sent" for r in Ledger(cfg.settings.database).rows())
        assert run(make_config(tmp_path, EMAILS, server)).sent == 3  # trusted via ca_file


def test_row_left_sending_by_a_crash_is_resent_with_the_same_message(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, EMAILS[:1])
    ledger = Ledger(cfg.settings.database)
    ledger.begin("ada@example.org", EDITION, message_id="<crash.1@example.org>",
                 papers=("2611.00001",), data=b"Message-ID: <crash.1@example.org>\r\n\r\nhi\r\n",
                 now=NOW)
    ledger.close()
    report = run(cfg, now=NOW + timedelta(minutes=5))
    assert (report.sent, report.possible_duplicates) == (1, 1)
    box = mailbox.Maildir(cfg.settings.outbox, create=False)
    [msg] = list(box)
    assert msg["Message-ID"] == "<crash.1@example.org>"
    row = Ledger(cfg.settings.database).get("ada@example.org", EDITION)
    assert row is not None and row.state == "sent" and row.possible_duplicate
    assert not row.has_message  # the stored bytes go once accepted


def test_outbox_goes_through_the_ledger_and_honours_suppression(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, EMAILS)
    ledger = Ledger(cfg.settings.database)
    ledger.suppress("Cy@Example.org", now=NOW)
    report = run(cfg)
    assert (report.sent, report.suppressed) == (2, 1)
    box = mailbox.Maildir(cfg.settings.outbox, create=False)
    assert sorted(m["To"].split("<")[-1].rstrip(">") for m in box) == EMAILS[:2]
    assert run(cfg).already_sent == 2 and len(box) == 2
    assert {r.email for r in ledger.rows()} == set(EMAILS[:2])


def test_nothing_new_sends_nothing(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, EMAILS[:1])
    cfg = replace(cfg, subscribers=(make_subscriber("ada@example.org", "quantum gravity"),))
    report = run(cfg)
    assert (report.sent, report.nothing_new) == (0, 1)
    assert not Ledger(cfg.settings.database).rows()
    # papers already sent in an earlier edition are not sent again the next day
    cfg2 = make_config(tmp_path / "b", EMAILS[:1])
    assert run(cfg2).sent == 1
    assert run(cfg2, now=NOW + timedelta(days=1)).nothing_new == 1


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, EMAILS)
    report = run(cfg, dry_run=True)
    assert (report.would_send, report.sent) == (3, 0)
    assert not cfg.settings.database.exists() and not cfg.settings.outbox.exists()


def test_only_one_subscriber(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, EMAILS)
    report = run(cfg, only="BOB@example.org")
    assert (report.sent, report.total) == (1, 1)


def test_signed_unsubscribe_url_reaches_the_headers(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        cfg = make_config(tmp_path, EMAILS[:1], server)
        cfg = replace(cfg, settings=replace(cfg.settings,
                                            unsubscribe_url="https://d.example.org/unsub",
                                            unsubscribe_secret_env="DIGEST_SECRET"))
        run(cfg, environ={"DIGEST_SECRET": "k3y" * 11})
        [got] = server.messages
        header = str(got.message["List-Unsubscribe"])
        token = header.split("token=")[1].split(">")[0]
        assert TokenIndex("k3y" * 11, ["ada@example.org"]).resolve(token) == "ada@example.org"
        assert got.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_second_sender_is_locked_out(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, EMAILS)
    with SendLock(cfg.settings.database):
        with pytest.raises(LockedError, match="another digest process .* digest.db"):
            run(cfg)
    assert run(cfg).sent == 3


def test_deliver_edition_alone_is_idempotent(tmp_path: Path) -> None:
    """The unit a queue worker runs: subscriber, edition and papers in, the ledger decides."""
    from digest.delivery._transports import MaildirOutbox

    settings = make_config(tmp_path, []).settings
    ledger = Ledger(settings.database)
    sub = make_subscriber("ada@example.org")
    outbox = MaildirOutbox(settings.outbox)
    from digest.compose import summarize_all
    papers = make_papers()
    run = EditionRun(ledger=ledger, renderer=TinyRenderer(), settings=settings,
                     summaries=summarize_all(papers, 350), now=NOW)
    kw: dict[str, Any] = dict(transport=outbox)
    edition = edition_for(sub, NOW)
    first = deliver_edition(sub, edition, papers, run, **kw)
    second = deliver_edition(sub, edition, papers, run, **kw)
    assert (first.state, second.state, second.detail) == ("sent", "skipped", "already sent")
    assert first.papers == ("2611.00001", "2611.00002", "2611.00003")
    forced = deliver_edition(sub, edition, papers, run, force=True, **kw)
    assert forced.state == "sent" and forced.message_id == first.message_id
    assert len(list(mailbox.Maildir(settings.outbox, create=False))) == 2


def test_process_shards_send_each_once_and_report_progress(tmp_path: Path) -> None:
    emails = [f"r{i}@example.org" for i in range(8)]
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "550 5.1.1 No such user", recipient="r5@example.org")
        cfg = make_config(tmp_path, emails, server)
        ticks: list[str] = []
        report = send_all(cfg, make_papers(), NOW, processes=2, environ={},
                          retry=RetryPolicy(retries=0), progress=lambda d: ticks.append(d.email))
        assert (report.sent, report.failed) == (7, 1)
        assert [d.email for d in report.problems] == ["r5@example.org"]
        assert sorted(ticks) == sorted(emails)
        assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(set(emails) - {
            "r5@example.org"})
        again = send_all(cfg, make_papers(), NOW, processes=2, environ={})
        assert (again.sent, again.already_sent, again.failed_before) == (0, 7, 1)
        assert server.count == 7


def test_process_shards_stop_gracefully_when_told(tmp_path: Path) -> None:
    """The shards read a cheap local flag their watcher sets from the parent's stop: a stop
    during a stalled message lets it finish, starts nothing more, leaves no row ``sending``."""
    import threading

    emails = [f"r{i:02d}@example.org" for i in range(40)]
    with SmtpTestServer(stall_seconds=1.0) as server:
        stall = server.add_rule("data", "451 4.3.0 stalled", action="stall", times=1)
        cfg = make_config(tmp_path, emails, server)
        stop = threading.Event()

        def stop_at_the_stall() -> None:
            while stall.fired == 0:
                time.sleep(0.01)
            stop.set()

        threading.Thread(target=stop_at_the_stall, daemon=True).start()
        report = send_all(cfg, make_papers(), NOW, processes=2, environ={}, stop=stop)
        assert report.stopped
        assert 1 <= report.sent == server.count < len(emails)
        states = [r.state for r in Ledger(cfg.settings.database).rows()]
        assert "sending" not in states and states.count("sent") == report.sent


def test_process_shards_stop_on_a_transport_error(tmp_path: Path) -> None:
    with SmtpTestServer(security="starttls", auth=("digest", "right")) as server:
        cfg = make_config(tmp_path, EMAILS, server)
        with pytest.raises(TransportError, match="authentication refused"):
            send_all(cfg, make_papers(), NOW, processes=2,
                     environ={"SMTP_TEST_PASSWORD": "wrong"})
        assert server.count == 0
        assert not any(r.state == "sent" for r in Ledger(cfg.settings.database).rows())


def test_dropped_or_stalled_body_is_resent_once_by_a_later_run_and_flagged(
        tmp_path: Path) -> None:
    """The connection died (or the final reply did not come within ``data_timeout``) after
    the body: the server may have kept it, so it is not retried within the run; the next run
    re-sends it once, recorded as a possible duplicate, with the same Message-ID."""
    with SmtpTestServer(stall_seconds=5) as server:
        server.add_rule("data", action="drop", recipient="bob@example.org", times=1)
        server.add_rule("data", action="stall", recipient="cy@example.org", times=1)
        cfg = make_config(tmp_path, EMAILS, server, timeout=1.5, data_timeout=1.5)
        report = run(cfg)
        assert (report.sent, report.possible_duplicates, report.deferred) == (1, 0, 2)
        assert server.count == 1
        report = run(cfg)
        assert (report.sent, report.possible_duplicates, report.deferred) == (2, 2, 0)
        assert sorted(d.email for d in report.problems) == ["bob@example.org", "cy@example.org"]
        assert all(len(v) == 1 for v in ids_by_rcpt(server).values())
    rows = {r.email: r for r in Ledger(cfg.settings.database).rows()}
    assert [e for e, r in sorted(rows.items()) if r.possible_duplicate] == [
        "bob@example.org", "cy@example.org"]
    assert rows["bob@example.org"].attempts == 2


MANY = [f"reader{i:02d}@example.org" for i in range(1, 15)]


def test_the_same_5xx_for_many_recipients_in_a_row_is_our_problem(tmp_path: Path) -> None:
    """A relay that refuses every recipient alike (554 relay denied, a blocklisted sender)
    would burn every subscriber's edition: after ``SAME_REFUSALS`` in a row the run stops and
    their rows stay deferred, to be sent by a later run once it is fixed."""
    from digest.delivery._edition import SAME_REFUSALS

    with SmtpTestServer() as server:
        server.add_rule("rcpt", "554 5.7.1 Relay access denied")
        cfg = make_config(tmp_path, MANY, server)
        with pytest.raises(TransportError, match=rf"{SAME_REFUSALS} recipients in a row refused"
                           r" with 554 5\.7\.1.*stay deferred"):
            run(cfg)
        rows = Ledger(cfg.settings.database).rows()
        assert SAME_REFUSALS <= len(rows) < len(MANY)
        assert {r.state for r in rows} == {"deferred"}
        server.clear_rules()
        report = run(cfg)  # fixed: everyone gets their edition
        assert (report.sent, report.failed) == (len(MANY), 0)


def test_different_refusals_or_a_success_between_them_are_per_recipient(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        for e in MANY[::2]:
            server.add_rule("rcpt", "550 5.1.1 No such user", recipient=e)
        cfg = make_config(tmp_path, MANY, server)
        report = run(cfg)
        assert (report.sent, report.failed) == (len(MANY) // 2, len(MANY) // 2)


def test_552_to_rcpt_is_temporary_and_ehlo_refused_stops_the_run(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "552 5.2.2 Mailbox full", recipient=EMAILS[0])
        cfg = make_config(tmp_path, EMAILS, server)
        report = run(cfg)
        assert (report.sent, report.deferred, report.failed) == (2, 1, 0)
    with SmtpTestServer() as server:
        server.add_rule("helo", "550 5.7.1 Your HELO name is refused")
        cfg = make_config(tmp_path / "b", EMAILS, server)
        with pytest.raises(TransportError, match="refused the session: 550"):
            run(cfg)
        assert {r.state for r in Ledger(cfg.settings.database).rows()} == {"deferred"}


def test_a_refusal_after_the_streak_tripped_reports_the_same_cause(tmp_path: Path) -> None:
    """With a pool, another thread's refusal can reach the run's error list before the one
    that tripped the streak: it must say the same thing ("10 recipients in a row ..."), not
    "1 recipients in a row", while deferring only its own row."""
    from digest.delivery import RefusalStreak
    from digest.errors import DeliveryError, SenderRefusedError

    ledger = Ledger(tmp_path / "digest.db")
    streak = RefusalStreak(limit=3)
    refusal = DeliveryError("RCPT TO refused: 5.7.1 Relay access denied", code=554)
    for i in range(4):
        ledger.begin(f"r{i}@x.org", EDITION, message_id=f"<{i}@x>", papers=(), data=None,
                     now=NOW)
    for i in range(2):
        streak.refused(f"r{i}@x.org", EDITION, refusal, ledger=ledger, now=NOW)
    with pytest.raises(SenderRefusedError) as tripped:
        streak.refused("r2@x.org", EDITION, refusal, ledger=ledger, now=NOW)
    with pytest.raises(SenderRefusedError) as late:
        streak.refused("r3@x.org", EDITION, refusal, ledger=ledger, now=NOW)
    assert str(tripped.value).startswith("3 recipients in a row refused with 554 5.7.1")
    assert str(late.value) == str(tripped.value)
    assert [e for e, _ in tripped.value.deferred] == ["r0@x.org", "r1@x.org", "r2@x.org"]
    assert [e for e, _ in late.value.deferred] == ["r3@x.org"]
    assert {r.state for r in ledger.rows()} == {"deferred"}


@pytest.mark.parametrize(("host", "cpus", "shards"), [
    ("127.0.0.1", 2, 1),  # the server takes the other CPU: one process is faster
    ("localhost", 2, 1),
    ("[::1]", 4, 3),
    ("127.0.0.53", 8, 4),  # at most one shard per connection (4)
    ("smtp.example.org", 2, 2),  # a remote server: both CPUs are ours
    ("192.0.2.10", 1, 1),
    ("10.0.0.1", 16, 4),
])
def test_the_default_shard_count_leaves_a_local_server_its_cpu(host: str, cpus: int,
                                                               shards: int) -> None:
    from digest.delivery import _batch
    from digest.models import SmtpSettings

    settings = Settings(sender="Paper Digest <digest@example.org>", database=Path("d.db"),
                        delivery="smtp", smtp=SmtpSettings(host=host, port=25,
                                                           security="none", connections=4))
    assert _batch._auto_processes(settings, 10_000, False, cpus=cpus) == shards
    assert _batch._auto_processes(settings, 4_999, False, cpus=cpus) == 1  # too small to pay
    assert _batch._auto_processes(settings, 10_000, True, cpus=cpus) == 1  # a dry run


def _seed_what_selections_read(ledger: Ledger) -> None:
    """Ada dislikes the first paper, Bob wants one paper a digest, Cy got the second paper in
    last week's edition, Dee unsubscribed on the web."""
    ada_dislikes = make_papers()[0]
    ledger.record_feedback("ada@example.org", ada_dislikes, "less", now=NOW)
    ledger.set_preferences("bob@example.org", paused_until=None, max_papers=1, now=NOW)
    last_week = EDITION - timedelta(days=7)
    ledger.begin("cy@example.org", last_week, message_id="<old@x>", papers=("2611.00002",),
                 data=b"old", now=NOW - timedelta(days=7))
    ledger.mark_sent("cy@example.org", last_week, now=NOW - timedelta(days=7))
    ledger.suppress("dee@example.org", now=NOW, source="web")


SELECTED = {"ada@example.org": ("2611.00002", "2611.00003", "2611.00001"),
            "bob@example.org": ("2611.00001",),
            "cy@example.org": ("2611.00001", "2611.00003")}


def test_a_run_and_deliver_edition_select_with_what_the_ledger_holds(tmp_path: Path) -> None:
    """Feedback, preferences, history and suppression, read per subscriber (a run reads them
    ahead of building, deliver_edition while building): the same papers either way."""
    from digest.compose import summarize_all

    emails = [*EMAILS, "dee@example.org"]
    cfg = make_config(tmp_path / "run", emails)
    _seed_what_selections_read(Ledger(cfg.settings.database))
    seen: dict[str, tuple[str, ...]] = {}
    report = run(cfg, progress=lambda d: seen.__setitem__(d.email, d.papers))
    assert (report.sent, report.suppressed) == (3, 1)
    assert {e: p for e, p in seen.items() if p} == SELECTED

    from digest.delivery._transports import MaildirOutbox

    alone = make_config(tmp_path / "alone", emails)
    ledger = Ledger(alone.settings.database)
    _seed_what_selections_read(ledger)
    papers = make_papers()
    each = EditionRun(ledger=ledger, renderer=TinyRenderer(), settings=alone.settings,
                      summaries=summarize_all(papers, 350), now=NOW)
    got = {s.email: deliver_edition(s, EDITION, papers, each,
                                    transport=MaildirOutbox(alone.settings.outbox))
           for s in alone.subscribers}
    assert {e: d.papers for e, d in got.items() if d.state == "sent"} == SELECTED
    assert got["dee@example.org"].outcome is Outcome.SUPPRESSED


def test_an_unsubscribe_or_pause_made_after_a_runs_selection_is_honoured(
        tmp_path: Path) -> None:
    """A run selects each subscriber's papers ahead of building the message (a job ahead of
    it); prepare_edition reads suppression and preferences again: an unsubscribe or a pause
    made on the web in between stops that message."""
    from digest.compose import summarize_all
    from digest.delivery._edition import Ready, prepare_edition
    from digest.selection import Selector

    settings = make_config(tmp_path, []).settings
    papers = make_papers()
    ledger = Ledger(settings.database)
    ledger.create()
    run_of = EditionRun(ledger=ledger, renderer=TinyRenderer(), settings=settings,
                        summaries=summarize_all(papers, 350), now=NOW)
    ada, bob = make_subscriber("ada@example.org"), make_subscriber("bob@example.org")
    selected = {s.email: Selector(papers).select(s) for s in (ada, bob)}
    assert isinstance(prepare_edition(ada, EDITION, papers, run_of,
                                      selection=selected[ada.email]), Ready)
    with Ledger(settings.database) as web:  # digest serve's own connection
        web.suppress("ada@example.org", now=NOW, source="web")
        web.set_preferences("bob@example.org", paused_until=EDITION + timedelta(days=3),
                            max_papers=None, now=NOW)
    got = [prepare_edition(s, EDITION, papers, run_of, selection=selected[s.email])
           for s in (ada, bob)]
    assert [getattr(d, "outcome", None) for d in got] == [Outcome.SUPPRESSED, Outcome.PAUSED]


def test_an_unsubscribe_made_while_a_run_builds_the_message_before_is_honoured(
        tmp_path: Path) -> None:
    """A run reads each subscriber's state once, as it takes the job to build it (the read its
    selection and its build share): what the web changed while an earlier message was being
    built is seen, so the message it stops is never built."""
    with SmtpTestServer() as server:
        cfg = make_config(tmp_path, EMAILS, server)
        report, built = _send_unsubscribing_bob_while_ada_is_built(cfg)
        assert sorted(ids_by_rcpt(server)) == ["ada@example.org", "cy@example.org"]
    assert (report.sent, report.suppressed) == (2, 1)
    assert built == ["ada@example.org", "cy@example.org"]


def _send_unsubscribing_bob_while_ada_is_built(cfg: Config) -> tuple[Any, list[str]]:
    built: list[str] = []

    class UnsubscribingRenderer(TinyRenderer):
        def render(self, digest: Digest) -> RenderedEmail:
            built.append(digest.subscriber.email)
            if digest.subscriber.email == "ada@example.org":  # bob unsubscribes meanwhile
                with Ledger(cfg.settings.database) as web:  # digest serve's own connection
                    web.suppress("bob@example.org", now=NOW, source="web")
            return super().render(digest)

    report = send_all(cfg, make_papers(), NOW, renderer=UnsubscribingRenderer(), retry=FAST,
                      environ={"SMTP_TEST_PASSWORD": "pw"})
    return report, built
