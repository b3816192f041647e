"""A big batch of fires goes over process shards, as a big ``digest send`` does, and keeps what the
daemon guarantees: each subscriber's edition sent exactly once, a stop lets the messages in
flight finish and leaves no ``sending`` row, a repeated fire sends nothing. Real aiosmtpd, real
SQLite ledger and job store, real spawned shard processes; the daemon runs in-process with the
real ``ServiceSender`` told to shard every batch (``processes=2``, as ``send_all`` takes it), and
once with the real rule deciding at a lowered threshold."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from smtp_server import SmtpTestServer
from test_daemon_batch import overdue_burst
from test_scheduler import (
    TINY_FEED,
    Fires,
    daemons,  # noqa: F401  (the fixture)
    start,
    stored_next_runs,
)

from digest.config import load_config
from digest.delivery import _batch
from digest.ledger import Ledger
from digest.schedule import Daemon
from digest.schedule._daemon import ServiceSender

EMAILS = [f"reader{i:02d}@example.org" for i in range(14)]
SHARDED = "14 editions expected: over 2 process shards"


def test_a_large_batch_goes_over_the_shards_and_each_subscriber_gets_one_email(
        tmp_path: Path, daemons: list[Daemon], caplog: pytest.LogCaptureFixture  # noqa: F811
        ) -> None:
    with SmtpTestServer() as server, caplog.at_level(logging.INFO, logger="digest.delivery"):
        path, missed = overdue_burst(tmp_path, server.port, EMAILS, connections=2)
        d, fires = start(daemons, path, sender=ServiceSender({}, processes=2))
        results = fires.wait(len(EMAILS), timeout=60)
        received = server.wait_for(len(EMAILS))
        assert SHARDED in caplog.messages
        assert sorted((r.email, r.outcome, r.run_time) for r in results) == [
            (e, "sent", missed) for e in EMAILS]
        assert all(r.detail.startswith("1 papers, <") for r in results)  # one line each
        assert sorted(m.rcpt_tos for m in received) == [(e,) for e in EMAILS]
        with Ledger(tmp_path / "digest.db") as ledger:
            assert sorted((r.email, r.state) for r in ledger.rows()) == [
                (e, "sent") for e in EMAILS]

        # the same fires again (a double fire, a restart racing a catch-up): nothing twice
        again = d._deliver(iter([(e, missed) for e in EMAILS]), expected=len(EMAILS))
        assert {(r.outcome, r.detail) for r in again} == {("skipped", "already sent")}
        time.sleep(0.3)
        assert server.count == len(EMAILS)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < _batch.MIN_CPUS_FOR_SHARDS,
                    reason="send_all's rule never shards on this machine")
def test_the_batch_size_decides_by_send_alls_rule(
        tmp_path: Path, daemons: list[Daemon], caplog: pytest.LogCaptureFixture,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Everyone due at the first fire's minute counts, before the rest of the burst arrived:
    at the threshold the batch is sharded, one fewer and it is one process."""
    monkeypatch.setattr(_batch, "PROCESS_THRESHOLD", len(EMAILS))
    # the test's server is on this machine, whose CPU the rule leaves it: as if it were not,
    # so that two CPUs shard
    monkeypatch.setattr(_batch, "LOCAL_SERVER_CPUS", 0)
    with SmtpTestServer() as server, caplog.at_level(logging.INFO, logger="digest.delivery"):
        path, _ = overdue_burst(tmp_path, server.port, EMAILS, connections=2)
        _, fires = start(daemons, path)  # the default sender: the rule decides
        fires.wait(len(EMAILS), timeout=60)
        assert SHARDED in caplog.messages
        assert server.wait_for(len(EMAILS)) and server.count == len(EMAILS)
    daemons.pop().stop()
    caplog.clear()
    monkeypatch.setattr(_batch, "PROCESS_THRESHOLD", len(EMAILS) + 1)
    with SmtpTestServer() as server, caplog.at_level(logging.INFO, logger="digest.delivery"):
        (tmp_path / "b").mkdir()
        path, _ = overdue_burst(tmp_path / "b", server.port, EMAILS, connections=2)
        _, fires = start(daemons, path)
        fires.wait(len(EMAILS), timeout=30)
        assert not [m for m in caplog.messages if "process shards" in m]
        assert server.wait_for(len(EMAILS)) and server.count == len(EMAILS)


def test_stop_during_a_sharded_batch_finishes_in_flight_and_leaves_no_sending_row(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    with SmtpTestServer(stall_seconds=1.5) as server:
        # Both shards' first DATA stalls: a shard takes its next fire only when it is free,
        # so with one stalled the other would send the whole burst before the stop lands.
        stall = server.add_rule("data", "451 4.3.0 stalled", action="stall", times=2)
        path, missed = overdue_burst(tmp_path, server.port, EMAILS, connections=2)
        fires = Fires()
        d = Daemon(path, environ={}, on_fire=fires, fetch=lambda s, n: TINY_FEED,
                   sender=ServiceSender({}, processes=2))
        d.start()
        deadline = time.monotonic() + 30
        while stall.fired < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        d.stop()  # during a stalled DATA: that message is retried and accepted, no more
        results = fires.results
        sent = {r.email for r in results if r.outcome == "sent"}
        parked = {r.email for r in results if r.outcome == "deferred"}
        assert sent and parked and sent | parked == set(EMAILS) and not sent & parked
        assert all(r.detail == "stopping; it fires on the next start"
                   for r in results if r.outcome == "deferred")
        assert sorted(m.rcpt_tos for m in server.messages) == sorted((e,) for e in sent)
        with Ledger(tmp_path / "digest.db") as ledger:
            assert sorted((r.email, r.state) for r in ledger.rows()) == sorted(
                (e, "sent") for e in sent)  # never "sending", nothing for the parked ones
        stored = stored_next_runs(load_config(path))
        assert {e for e in EMAILS if stored[e] == missed} == parked

        _, fires2 = start(daemons, path, sender=ServiceSender({}, processes=2))
        fires2.wait(len(parked), timeout=60)  # the next start sends the parked ones, once
        server.wait_for(len(EMAILS))
        time.sleep(0.3)
        assert sorted(m.rcpt_tos for m in server.messages) == [(e,) for e in EMAILS]


def test_a_burst_minute_counts_everyone_due_then_and_no_one_else(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    from test_scheduler import write_config

    path = write_config(tmp_path / "s.yaml", [
        ("a@example.org", "0 7 * * *", "UTC"), ("b@example.org", "0 8 * * *", "Europe/London"),
        ("c@example.org", "0 9 * * *", "Europe/Berlin"), ("d@example.org", "0 7 * * sat", "UTC")])
    d, _ = start(daemons, path)
    seven = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # a Wednesday; London is on GMT
    assert d._due_at(seven) == 1  # a
    assert d._due_at(seven + timedelta(hours=1)) == 2  # b at 08:00 GMT, c at 09:00 CET
    assert d._due_at(datetime(2026, 11, 28, 7, 0, tzinfo=UTC)) == 2  # Saturday: a and d
    assert d._due_at(seven + timedelta(minutes=1)) == 0
