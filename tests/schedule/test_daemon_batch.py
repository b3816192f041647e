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

import httpx
import paths
from feed_server import Reply, feed_server
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
from digest.feeds import Endpoints, gather_for, write_papers
from digest.ledger import Ledger
from digest.models import Paper, Settings
from digest.schedule import Daemon

EMAILS = [f"reader{i:02d}@example.org" for i in range(12)]
HF_DAILY = (paths.FIXTURES / "hf_daily_papers.json").read_bytes()
JSON = (("Content-Type", "application/json"),)


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
    d._deliver(iter([("a@example.org", seven), ("a@example.org", seven)]))
    # the second is skipped by the ledger: in the batch once the first is recorded, or
    # handed over again for after the batch while the first is still in flight
    first, second = sorted(fires.wait(2), key=lambda r: r.outcome)
    assert first.outcome == "sent"
    assert (second.outcome, second.detail) == ("skipped", "already sent")
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1


def test_the_feed_is_asked_once_per_fetch_day_and_kept(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    """Batches at 07:00, 07:00:30, 07:05 and 16:00 share one fetch of the HF feed from a real
    server on 127.0.0.1 (counted there, and at the daemon's ``fetch`` seam); the next day
    fetches once more, and the same papers keep the same index and summaries."""
    emails = ["a@example.org", "b@example.org", "c@example.org", "d@example.org"]
    path = write_config(tmp_path / "s.yaml", [(e, "0 7 * * *", "UTC") for e in emails],
                        feed="{source: huggingface}")
    asked: list[datetime] = []
    clock = [datetime(2026, 3, 30, 7, 0, 1, tzinfo=UTC)]
    with feed_server() as server, httpx.Client(timeout=5) as client:
        server.route("/api/daily_papers", Reply(HF_DAILY, headers=JSON))

        def fetch(settings: Settings, now: datetime) -> tuple[Paper, ...]:
            asked.append(now)
            return gather_for(settings, None, now, client=client,
                              endpoints=Endpoints.at(server.url)).papers

        d, _ = start(daemons, path, fetch=fetch, clock=lambda: clock[0])
        seven = clock[0].replace(second=0)
        results = []
        for email, later in zip(emails, (timedelta(0), timedelta(seconds=30),
                                         timedelta(minutes=5), timedelta(hours=9))):
            clock[0] = seven + later
            results += d._deliver(iter([(email, seven)]))
        assert [r.outcome for r in results] == ["sent"] * 4
        assert len(asked) == 1 and len(server.requests("/api/daily_papers")) == 1
        kept = d._papers(d.config.settings, clock[0])

        clock[0] = seven + timedelta(days=1)  # the next fetch day asks again, once
        (next_day,) = d._deliver(iter([("a@example.org", seven + timedelta(days=1))]))
        assert next_day.outcome in ("sent", "skipped")
        d._deliver(iter([("b@example.org", seven + timedelta(days=1, minutes=2))]))
        assert len(asked) == 2 and len(server.requests("/api/daily_papers")) == 2
        assert d._papers(d.config.settings, clock[0]) is kept  # same papers: same index


def test_an_answer_not_settled_is_asked_again_after_the_reuse_window(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    """No papers yet (a listing not out): shared by the fires of the next 90 s, then asked
    again; once there are papers, they are kept for the day (the source is not asked again:
    ``answers`` has nothing left to give)."""
    answers: list[tuple[Paper, ...]] = [(), TINY_FEED]
    clock = [datetime(2026, 3, 30, 7, 0, 1, tzinfo=UTC)]
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    d, _ = start(daemons, path, fetch=lambda s, now: answers.pop(0), clock=lambda: clock[0])
    settings = d.config.settings
    assert d._papers(settings, clock[0]).papers == ()
    clock[0] += timedelta(seconds=30)
    assert d._papers(settings, clock[0]).papers == () and len(answers) == 1
    clock[0] += timedelta(minutes=5)
    kept = d._papers(settings, clock[0])
    assert kept.papers == TINY_FEED and answers == []
    clock[0] += timedelta(hours=3)
    assert d._papers(settings, clock[0]) is kept


def test_a_file_feed_is_read_again_when_the_file_changes(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    papers_file = tmp_path / "papers.json"
    write_papers(TINY_FEED, papers_file)
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")],
                        feed=f"{{source: file, path: {papers_file}}}")
    clock = [datetime(2026, 3, 30, 7, 0, 1, tzinfo=UTC)]
    d, _ = start(daemons, path, fetch=None, clock=lambda: clock[0])  # the real gather_for
    settings = d.config.settings
    kept = d._papers(settings, clock[0])
    assert [p.id for p in kept.papers] == [p.id for p in TINY_FEED]
    clock[0] += timedelta(hours=1)
    assert d._papers(settings, clock[0]) is kept
    write_papers((replace(TINY_FEED[0], title="Diffusion models, revised"),), papers_file)
    changed = d._papers(settings, clock[0])
    assert changed is not kept and changed.papers[0].title == "Diffusion models, revised"


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
