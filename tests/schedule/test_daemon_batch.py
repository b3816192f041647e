"""The daemon's batches: fires due together go out through one pool of SMTP connections (as
``digest send`` does), with one feed fetch, and keep what the daemon guarantees: a stop lets the
messages in flight finish and parks the rest for the next start, an unusable server defers the
whole batch with retry jobs, one edition never goes out twice. Real aiosmtpd, real SQLite
ledger and job store; the daemon runs in-process."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smtp_server import SmtpTestServer, free_port
from test_scheduler import (
    TINY_FEED,
    Fires,
    at_minute,
    daemons,  # noqa: F401  (the fixture)
    seed_store,
    start,
    stored_next_runs,
    write_config,
)

from digest.config import load_config
from digest.ledger import Ledger
from digest.models import Paper, Settings
from digest.schedule import Daemon

EMAILS = [f"reader{i:02d}@example.org" for i in range(12)]


def smtp_config(tmp_path: Path, port: int, emails: list[str], schedule: str, *,
                connections: int) -> Path:
    path = write_config(tmp_path / "s.yaml", [(e, schedule, "UTC") for e in emails])
    path.write_text(path.read_text().replace("  delivery: outbox\n", (
        f"  delivery: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, security: none, "
        f"timeout: 10, connections: {connections}}}\n")))
    return path


def overdue_burst(tmp_path: Path, port: int, emails: list[str], *,
                  connections: int) -> tuple[Path, datetime]:
    """Every subscriber's 07:00-style send an hour ago, left due by an earlier run."""
    schedule, missed = at_minute(datetime.now(UTC) - timedelta(hours=1))
    path = smtp_config(tmp_path, port, emails, schedule, connections=connections)
    seed_store(load_config(path), {e: missed for e in emails})
    return path, missed


def test_a_burst_goes_out_through_the_pool_with_one_feed_fetch(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    fetched: list[datetime] = []

    def fetch(settings: Settings, now: datetime) -> tuple[Paper, ...]:
        fetched.append(now)
        return TINY_FEED

    with SmtpTestServer() as server:
        path, missed = overdue_burst(tmp_path, server.port, EMAILS, connections=3)
        _, fires = start(daemons, path, fetch=fetch)  # the real sender, ledger and pool
        results = fires.wait(len(EMAILS))
        received = server.wait_for(len(EMAILS))
    assert sorted((r.email, r.outcome, r.run_time) for r in results) == [
        (e, "sent", missed) for e in EMAILS]
    assert len(fetched) == 1
    assert sorted(m.rcpt_tos for m in received) == [(e,) for e in EMAILS]
    peers = {m.peer for m in received}
    assert 1 < len(peers) <= 3  # the pool's connections, never more than configured


def test_stop_mid_burst_finishes_the_message_in_flight_and_parks_the_rest(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    emails = EMAILS[:6]
    with SmtpTestServer(stall_seconds=1.0) as server:
        stall = server.add_rule("data", "451 4.3.0 stalled", action="stall", times=1)
        path, missed = overdue_burst(tmp_path, server.port, emails, connections=1)
        fires = Fires()
        d = Daemon(path, environ={}, on_fire=fires, fetch=lambda s, n: TINY_FEED)
        d.start()
        deadline = time.monotonic() + 10
        while stall.fired == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        d.stop()  # during the stalled DATA: that message is retried and accepted, no more
        assert server.count == 1
        results = fires.results
        assert sorted(r.outcome for r in results) == ["deferred"] * 5 + ["sent"]
        assert all(r.detail == "stopping; it fires on the next start"
                   for r in results if r.outcome == "deferred")
        with Ledger(tmp_path / "digest.db") as ledger:
            assert [(r.state, r.email) for r in ledger.rows()] == [
                ("sent", next(r.email for r in results if r.outcome == "sent"))]
        stored = stored_next_runs(load_config(path))
        parked = {r.email for r in results if r.outcome == "deferred"}
        assert {e for e in emails if stored[e] == missed} == parked

        _, fires2 = start(daemons, path)  # the next start sends the parked ones, once each
        fires2.wait(5)
        server.wait_for(6)
        time.sleep(0.3)
        assert sorted(m.rcpt_tos for m in server.messages) == [(e,) for e in emails]


def test_an_unreachable_server_defers_the_whole_batch_with_retry_jobs(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    emails = EMAILS[:5]
    path, missed = overdue_burst(tmp_path, free_port(), emails, connections=2)  # no server
    d, fires = start(daemons, path)
    results = fires.wait(len(emails))
    assert sorted(r.email for r in results) == emails
    assert {r.outcome for r in results} == {"deferred"}
    retries = {j.id for j in d.scheduler.get_jobs() if "#retry-" in j.id}
    assert retries == {f"{e}#retry-{missed.date()}" for e in emails}
    with Ledger(tmp_path / "digest.db") as ledger:
        assert {r.state for r in ledger.rows()} <= {"deferred"}


def test_the_same_edition_twice_in_one_batch_goes_out_once(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    d, fires = start(daemons, path)  # the real sender, Maildir outbox
    seven = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    first = d._deliver(iter([("a@example.org", seven), ("a@example.org", seven)]))
    assert [r.outcome for r in first] == ["sent"]
    second = fires.wait(2)[1]  # handed over again, after the batch
    assert (second.outcome, second.detail) == ("skipped", "already sent")
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1


def test_the_kept_feed_serves_the_day_while_the_source_answers_the_same(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    answers = [TINY_FEED, tuple(replace(p) for p in TINY_FEED),  # equal, freshly parsed
               (replace(TINY_FEED[0], title="Diffusion models, revised"),)]
    clock = [datetime(2026, 3, 30, 7, 0, 1, tzinfo=UTC)]
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    d, _ = start(daemons, path, fetch=lambda s, now: answers.pop(0), clock=lambda: clock[0])
    kept = d._papers(d.config.settings, clock[0])
    clock[0] += timedelta(minutes=5)  # past the reuse window: the source is asked again
    assert d._papers(d.config.settings, clock[0]) is kept  # same papers: same index, summaries
    clock[0] += timedelta(minutes=5)
    changed = d._papers(d.config.settings, clock[0])
    assert changed is not kept and changed.papers[0].title == "Diffusion models, revised"
    assert answers == []



def test_the_same_refusal_for_many_in_a_row_puts_the_burst_back_to_deferred(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    """RefusalStreak across the pool: the 10th alike 550 stops the batch; the refused editions go
    back to deferred (none burnt as failed), and every fire of the burst has a retry job."""
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "550 5.7.1 Relaying denied")
        path, _ = overdue_burst(tmp_path, server.port, EMAILS, connections=1)
        d, fires = start(daemons, path)
        fires.wait(len(EMAILS))

        def retried() -> set[str]:
            return {j.id.split("#retry-")[0] for j in d.scheduler.get_jobs()
                    if "#retry-" in j.id}

        deadline = time.monotonic() + 10
        while retried() != set(EMAILS):
            assert time.monotonic() < deadline, retried()
            time.sleep(0.05)
        with Ledger(tmp_path / "digest.db") as ledger:  # those never tried have no row
            assert {r.state for r in ledger.rows()} == {"deferred"}
            assert len(ledger.rows()) >= 10
        assert server.count == 0
