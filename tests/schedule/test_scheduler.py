"""The scheduler wiring and the daemon in-process, on the REAL SQLite job store.

Restart and catch-up are set up the way they happen in life: a job store written by an earlier
run whose next run time has passed, then a daemon started on it. Deliveries go through a small
recording sender (the ``EditionSender`` seam) except where the real service and ledger are the
point (double fire sends once, empty feed).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paths
import pytest
from click.testing import CliRunner

from digest.cli import main
from digest.config import load_config
from digest.errors import FeedError, LockedError, TransportError
from digest.ledger import Ledger
from digest.models import Config, Delivery, Paper, Settings, Subscriber
from digest.schedule import Daemon, upcoming
from digest.schedule import _daemon as daemon_module
from digest.schedule._daemon import FireResult
from digest.schedule._jobs import build_scheduler, job_id, jobs_path, reconcile

SEED = paths.SEED


# --------------------------------------------------------------------------- helpers


def write_config(path: Path, subs: list[tuple[str, str, str]], *, catch_up: str = "12h",
                 feed: str = "{source: sample}", extra: str = "") -> Path:
    lines = ["settings:", '  sender: "Digest <digest@example.org>"', "  database: digest.db",
             "  delivery: outbox", "  outbox: outbox/", f"  feed: {feed}",
             f"  catch_up: {catch_up}", "subscribers:"]
    for email, schedule, tz in subs:
        lines += [f"  - email: {email}", f"    timezone: {tz}", f'    schedule: "{schedule}"',
                  "    topics: [diffusion, language model, quantization, reinforcement]"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def at_minute(moment: datetime) -> tuple[str, datetime]:
    """A daily UTC cron firing at ``moment``'s minute, and that exact fire time."""
    moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return f"{moment.minute} {moment.hour} * * *", moment


def seed_store(config: Config, next_runs: dict[str, datetime]) -> None:
    """What an earlier ``digest run`` leaves behind: its ledger and stored jobs, some now
    overdue."""
    Ledger(config.settings.database).create()
    scheduler = build_scheduler(jobs_path(config.settings))
    scheduler.start(paused=True)
    try:
        reconcile(scheduler, config)
        for email, when in next_runs.items():
            scheduler.modify_job(job_id(email), next_run_time=when)
    finally:
        scheduler.shutdown(wait=False)


def stored_next_runs(config: Config) -> dict[str, datetime]:
    scheduler = build_scheduler(jobs_path(config.settings))
    scheduler.start(paused=True)
    try:
        return {job.id: job.next_run_time for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)


@dataclass
class Recorder:
    """An ``EditionSender`` that records what it was asked to deliver."""

    delay: float = 0.0
    calls: list[tuple[str, date]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    def send(self, subscriber: Subscriber, edition: date, papers: tuple[Paper, ...],
             summaries: Any, settings: Settings, now: datetime) -> Delivery:
        self.started.set()
        time.sleep(self.delay)
        self.calls.append((subscriber.email, edition))
        return Delivery(email=subscriber.email, edition=edition, state="sent",
                        message_id="<x@example.org>", papers=tuple(p.id for p in papers[:3]))

    def close_idle(self, idle_seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


class Fires:
    """Collects ``FireResult``s; ``wait(n)`` blocks until n arrived (or fails)."""

    def __init__(self) -> None:
        self.results: list[FireResult] = []
        self._cond = threading.Condition()

    def __call__(self, result: FireResult) -> None:
        with self._cond:
            self.results.append(result)
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = 10.0) -> list[FireResult]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.results) >= n, timeout), self.results
            return list(self.results)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


TINY_FEED = (Paper(id="2601.00001", title="Diffusion models that quantize themselves",
                   abstract="We train a diffusion model with quantization. It is 2x faster.",
                   url="https://arxiv.org/abs/2601.00001"),)


def tiny_feed(settings: Settings, now: datetime) -> tuple[Paper, ...]:
    """One paper: the 81-paper sample costs a second of summarizing per fetch."""
    return TINY_FEED


def start(daemons: list[Daemon], path: Path, **kwargs: Any) -> tuple[Daemon, Fires]:
    """A started daemon; ``fetch=None`` for the real feed, else the one-paper feed."""
    fires = Fires()
    kwargs.setdefault("fetch", tiny_feed)
    d = Daemon(path, environ={}, on_fire=fires, **kwargs)
    d.start()
    daemons.append(d)
    return d, fires


# --------------------------------------------------------------------------- reconcile


def test_reconcile_adds_keeps_changes_and_removes_without_touching_the_rest(
        tmp_path: Path) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC"),
                                              ("b@example.org", "0 8 * * mon", "Asia/Tokyo"),
                                              ("c@example.org", "0 9 * * *", "UTC")])
    config = load_config(path)
    overdue = datetime.now(UTC) - timedelta(hours=1)
    seed_store(config, {"a@example.org": overdue})

    write_config(path, [("a@example.org", "0 7 * * *", "UTC"),          # unchanged
                        ("b@example.org", "0 8 * * mon", "Europe/Paris"),  # timezone changed
                        ("d@example.org", "0 6 * * *", "UTC")])           # added; c removed
    scheduler = build_scheduler(jobs_path(config.settings))
    scheduler.start(paused=True)
    try:
        changes = reconcile(scheduler, load_config(path))
        jobs = {j.id: j for j in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    assert (changes.added, changes.changed, changes.removed, changes.kept) == (
        ("d@example.org",), ("b@example.org",), ("c@example.org",), ("a@example.org",))
    assert str(changes) == "1 added, 1 changed, 1 removed, 1 kept"
    # the overdue run survives the restart: that is what replace_existing=True would lose
    assert jobs["a@example.org"].next_run_time == overdue
    assert jobs["b@example.org"].name == "0 8 * * mon @ Europe/Paris"
    assert jobs["b@example.org"].next_run_time.tzinfo == ZoneInfo("Europe/Paris")
    assert jobs["b@example.org"].next_run_time.strftime("%a %H:%M") == "Mon 08:00"
    assert jobs["d@example.org"].misfire_grace_time == 12 * 3600
    assert jobs["d@example.org"].coalesce is True


def test_reconcile_applies_a_new_catch_up_window_without_rescheduling(tmp_path: Path) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    overdue = datetime.now(UTC) - timedelta(hours=2)
    seed_store(load_config(path), {"a@example.org": overdue})
    write_config(path, [("a@example.org", "0 7 * * *", "UTC")], catch_up="3h")
    config = load_config(path)
    scheduler = build_scheduler(jobs_path(config.settings))
    scheduler.start(paused=True)
    try:
        changes = reconcile(scheduler, config)
        (job,) = scheduler.get_jobs()
    finally:
        scheduler.shutdown(wait=False)
    assert changes.kept == ("a@example.org",)
    assert job.misfire_grace_time == 3 * 3600
    assert job.next_run_time == overdue


# --------------------------------------------------------------------------- catch-up


def test_a_run_missed_while_stopped_fires_once_on_start_within_the_window(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    schedule, missed = at_minute(datetime.now(UTC) - timedelta(hours=1))
    path = write_config(tmp_path / "s.yaml", [("a@example.org", schedule, "UTC")])
    seed_store(load_config(path), {"a@example.org": missed})
    recorder = Recorder()
    d, fires = start(daemons, path, sender=recorder)
    (result,) = fires.wait(1)
    time.sleep(0.3)  # nothing else may follow
    assert len(fires.results) == 1
    assert (result.outcome, result.run_time) == ("sent", missed)
    assert recorder.calls == [("a@example.org", missed.date())]
    next_run = stored_next_runs_running(d)["a@example.org"]
    assert next_run == missed + timedelta(days=1)


def stored_next_runs_running(d: Daemon) -> dict[str, datetime]:
    return {job.id: job.next_run_time for job in d.scheduler.get_jobs()}


def test_a_run_missed_outside_the_window_never_fires(tmp_path: Path,
                                                      daemons: list[Daemon]) -> None:
    schedule, missed = at_minute(datetime.now(UTC) - timedelta(hours=13))
    path = write_config(tmp_path / "s.yaml", [("a@example.org", schedule, "UTC")])
    seed_store(load_config(path), {"a@example.org": missed})
    recorder = Recorder()
    d, fires = start(daemons, path, sender=recorder)
    (result,) = fires.wait(1)
    assert result.outcome == "skipped"
    assert result.detail == "missed: outside the catch-up window"
    assert recorder.calls == []
    assert stored_next_runs_running(d)["a@example.org"] == missed + timedelta(days=1)


def test_many_missed_runs_coalesce_into_one_catch_up_never_a_burst(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    now = datetime.now(UTC)
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "* * * * *", "UTC")])
    seed_store(load_config(path), {"a@example.org": now - timedelta(minutes=45)})
    recorder = Recorder()
    d, fires = start(daemons, path, sender=recorder)
    (result,) = fires.wait(1)
    time.sleep(0.3)
    assert len(recorder.calls) == 1
    # the one catch-up is for the LATEST missed minute, the edition it belongs to
    latest = datetime.now(UTC).replace(second=0, microsecond=0)
    assert latest - timedelta(minutes=1) <= result.run_time <= latest


def test_catch_up_uses_the_local_date_of_the_missed_run(tmp_path: Path,
                                                        daemons: list[Daemon]) -> None:
    # A send scheduled for 23:59 in Kiritimati (UTC+14) and caught up later still belongs to
    # that local day, whatever the date is when it finally goes out.
    missed = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    local = missed.astimezone(ZoneInfo("Pacific/Kiritimati"))
    path = write_config(tmp_path / "s.yaml", [
        ("a@example.org", f"{local.minute} {local.hour} * * *", "Pacific/Kiritimati")])
    seed_store(load_config(path), {"a@example.org": missed})
    recorder = Recorder()
    _, fires = start(daemons, path, sender=recorder)
    (result,) = fires.wait(1)
    assert result.edition == local.date()
    assert recorder.calls == [("a@example.org", local.date())]


# --------------------------------------------------------------------------- reload


def test_reload_follows_schedule_changes_and_keeps_the_last_good_config(
        tmp_path: Path, daemons: list[Daemon], caplog: pytest.LogCaptureFixture) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC"),
                                              ("b@example.org", "0 8 * * *", "UTC")])
    d, _ = start(daemons, path, sender=Recorder())
    assert d.reload() is None  # unchanged file: nothing to do
    write_config(path, [("a@example.org", "30 6 * * mon-fri", "America/New_York"),
                        ("c@example.org", "0 9 * * *", "UTC")])
    assert d.reload() is True
    jobs = {j.id: j for j in d.scheduler.get_jobs()}
    assert sorted(jobs) == ["a@example.org", "c@example.org"]
    assert jobs["a@example.org"].name == "30 6 * * mon-fri @ America/New_York"
    local = jobs["a@example.org"].next_run_time.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (6, 30) and local.weekday() < 5
    assert [s.email for s in d.config.subscribers] == ["a@example.org", "c@example.org"]

    caplog.set_level(logging.ERROR, logger="digest.schedule")
    path.write_text(path.read_text().replace('"0 9 * * *"', '"0 25 * * *"')
                    .replace("timezone: UTC", "timezone: Mars/Olympus"))
    assert d.reload() is False
    errors = [r.getMessage() for r in caplog.records]
    # every problem with file:line, then what happens
    assert any(f"{path}:" in e and "schedule" in e and "hour" in e for e in errors), errors
    assert any(f"{path}:" in e and "Mars/Olympus" in e for e in errors), errors
    assert errors[-1] == ("config reload failed; still running the last good config "
                          "(2 subscribers)")
    assert {j.id: j.name for j in d.scheduler.get_jobs()} == {
        "a@example.org": "30 6 * * mon-fri @ America/New_York", "c@example.org": "0 9 * * * @ UTC"}
    assert d.reload() is None  # the bad file is not re-read until it changes again


def test_the_watcher_picks_up_an_edit_within_seconds(tmp_path: Path,
                                                      daemons: list[Daemon]) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    d = Daemon(path, environ={}, sender=Recorder(), poll=0.05, fetch=tiny_feed)
    runner = threading.Thread(target=d.run_forever)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while d.scheduler is None or not d.scheduler.running:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        write_config(path, [("a@example.org", "0 7 * * *", "UTC"),
                            ("b@example.org", "15 7 * * *", "UTC")])
        while len(d.scheduler.get_jobs()) < 2:
            assert time.monotonic() < deadline, "the edit was not picked up"
            time.sleep(0.02)
    finally:
        d.request_stop()
        runner.join(5)
    assert not runner.is_alive()


# --------------------------------------------------------------------------- delivery


def test_a_double_fire_on_the_fall_back_night_sends_once(tmp_path: Path,
                                                         daemons: list[Daemon]) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "30 1 * * *",
                                               "America/New_York")])
    d, fires = start(daemons, path)  # the real service, ledger and Maildir outbox
    ny = ZoneInfo("America/New_York")
    first = datetime(2026, 11, 1, 1, 30, tzinfo=ny)
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ny)
    assert second - first == timedelta(0) and second.utcoffset() != first.utcoffset()
    d.fire("a@example.org", first)
    d.fire("a@example.org", second)
    outcomes = [(r.outcome, r.edition) for r in fires.wait(2)]
    assert outcomes == [("sent", date(2026, 11, 1)), ("skipped", date(2026, 11, 1))]
    assert fires.results[1].detail.startswith("already sent")
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1
    (row,) = Ledger(tmp_path / "digest.db").rows()
    assert (row.state, row.edition) == ("sent", date(2026, 11, 1))


def test_an_empty_feed_skips_with_a_reason_and_sends_nothing(tmp_path: Path,
                                                             daemons: list[Daemon]) -> None:
    (tmp_path / "papers.json").write_text("[]")
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")],
                        feed="{source: file, path: papers.json}")
    d, fires = start(daemons, path, fetch=None)  # the real feeds.papers_for
    d.fire("a@example.org", datetime(2026, 3, 28, 7, 0, tzinfo=UTC))
    (result,) = fires.wait(1)
    assert (result.outcome, result.detail) == (
        "skipped", "the feed has no papers (weekend or holiday?)")
    assert not (tmp_path / "outbox" / "new").exists() or not any(
        (tmp_path / "outbox" / "new").iterdir())
    assert Ledger(tmp_path / "digest.db").rows() == ()


def test_fires_close_together_share_one_feed_fetch(tmp_path: Path,
                                                  daemons: list[Daemon]) -> None:
    fetched: list[datetime] = []

    def fetch(settings: Settings, now: datetime) -> tuple[Paper, ...]:
        fetched.append(now)
        return TINY_FEED

    clock = [datetime(2026, 3, 30, 7, 0, 1, tzinfo=UTC)]
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC"),
                                              ("b@example.org", "0 7 * * *", "UTC"),
                                              ("c@example.org", "1 7 * * *", "UTC")])
    d, fires = start(daemons, path, sender=Recorder(), fetch=fetch, clock=lambda: clock[0])
    seven = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    d.fire("a@example.org", seven)  # due at the same minute: one fetch
    clock[0] += timedelta(seconds=20)
    d.fire("b@example.org", seven)
    d.fire("c@example.org", seven + timedelta(minutes=1))  # a different minute, still fresh
    clock[0] += timedelta(hours=5)
    d.fire("b@example.org", seven + timedelta(hours=5))  # the same fetch day: kept
    clock[0] += timedelta(days=1)
    d.fire("a@example.org", seven + timedelta(days=1))  # the next fetch day: fetched again
    fires.wait(5)
    assert fetched == [datetime(2026, 3, 30, 7, 0, 1, tzinfo=UTC),
                       datetime(2026, 3, 31, 12, 0, 21, tzinfo=UTC)]


def test_a_feed_outage_is_retried_within_the_catch_up_window_and_asked_once(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    calls: list[datetime] = []

    def down(settings: Settings, now: datetime) -> tuple[Paper, ...]:
        calls.append(now)
        raise FeedError("https://huggingface.co/api/daily_papers", "HTTP 503")

    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC"),
                                              ("b@example.org", "0 7 * * *", "UTC")],
                        catch_up="1h")
    d, fires = start(daemons, path, sender=Recorder(), fetch=down)
    now = datetime.now(UTC).replace(microsecond=0)
    first = d.fire("a@example.org", now)
    second = d.fire("b@example.org", now)
    assert len(calls) == 1  # b reused a's fresh failure instead of asking again
    for result in (first, second):
        assert result.outcome == "deferred"
        assert result.detail.startswith("feed unavailable: https://huggingface.co/api/"
                                        "daily_papers: HTTP 503; retrying at ")
    assert {j.id for j in d.scheduler.get_jobs() if "#retry-" in j.id} == {
        f"a@example.org#retry-{now.date()}", f"b@example.org#retry-{now.date()}"}
    late = d.fire("a@example.org", now - timedelta(minutes=50))
    assert (late.outcome, late.detail.endswith("past the catch-up window, not retried")) == (
        "failed", True)


def test_a_fire_for_someone_no_longer_subscribed_is_skipped(tmp_path: Path,
                                                            daemons: list[Daemon]) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    d, fires = start(daemons, path, sender=Recorder())
    result = d.fire("gone@example.org", datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    assert (result.outcome, result.detail) == ("skipped", "no longer in the config")
    assert fires.results == [result]


def test_fire_without_a_daemon_is_harmless(caplog: pytest.LogCaptureFixture) -> None:
    assert daemon_module._current is None
    daemon_module.fire("a@example.org", datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    assert "no daemon running" in caplog.text


@dataclass
class Deferring(Recorder):
    """The server keeps answering 451."""

    def send(self, subscriber: Subscriber, edition: date, papers: tuple[Paper, ...],
             summaries: Any, settings: Settings, now: datetime) -> Delivery:
        super().send(subscriber, edition, papers, summaries, settings, now)
        return Delivery(email=subscriber.email, edition=edition, state="deferred", code=451,
                        error="451 4.3.0 Try again later")


def test_a_deferred_edition_gets_a_retry_job_that_reconcile_keeps(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC"),
                                              ("b@example.org", "0 7 * * *", "UTC")])
    d, fires = start(daemons, path, sender=Deferring())
    run_time = datetime.now(UTC).replace(second=0, microsecond=0)
    retry_id = f"b@example.org#retry-{run_time.date().isoformat()}"
    before = datetime.now(UTC)
    result = d.fire("b@example.org", run_time)
    assert result.outcome == "deferred"
    assert result.detail.startswith("451 4.3.0 Try again later; retrying at ")
    retry = d.scheduler.get_job(retry_id)
    assert before + timedelta(minutes=15) <= retry.next_run_time
    assert retry.next_run_time <= datetime.now(UTC) + timedelta(minutes=15)
    assert retry.kwargs == {"email": "b@example.org", "run_time": run_time}

    write_config(path, [("a@example.org", "0 7 * * *", "UTC"),
                        ("b@example.org", "0 7 * * *", "UTC")], catch_up="6h")
    assert d.reload() is True
    assert d.scheduler.get_job(retry_id) is not None
    write_config(path, [("a@example.org", "0 7 * * *", "UTC")])  # b unsubscribed
    assert d.reload() is True
    assert sorted(j.id for j in d.scheduler.get_jobs()) == ["a@example.org"]


def test_editions_left_deferred_by_an_earlier_process_are_finished_at_start(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "Asia/Tokyo")])
    earlier = datetime.now(UTC) - timedelta(hours=3)
    data = (b"From: digest@example.org\r\nTo: a@example.org\r\nSubject: owed\r\n"
            b"Message-ID: <owed@example.org>\r\n\r\nThe edition a 451 held back.\r\n")
    with Ledger(tmp_path / "digest.db") as ledger:
        ledger.begin("a@example.org", date(2026, 3, 30), message_id="<owed@example.org>",
                     papers=("2601.00001",), data=data, now=earlier)
        ledger.mark_deferred("a@example.org", date(2026, 3, 30), now=earlier, code=451,
                             error="451 busy")
    _, fires = start(daemons, path)  # the real service and outbox
    (result,) = fires.wait(1)
    assert (result.outcome, result.edition) == ("sent", date(2026, 3, 30))
    (delivered,) = (tmp_path / "outbox" / "new").iterdir()
    assert b"Subject: owed" in delivered.read_bytes()
    with Ledger(tmp_path / "digest.db") as ledger:
        assert [r.state for r in ledger.rows()] == ["sent"]


def test_an_unusable_transport_stops_the_start_not_the_first_fire(tmp_path: Path) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    path.write_text(path.read_text().replace("  delivery: outbox\n", (
        "  delivery: smtp\n  smtp: {host: 127.0.0.1, port: 2525, security: none, "
        "username: u, password_env: DIGEST_TEST_NO_SUCH_PASSWORD}\n")))
    # the password variable is checked by the config too; give it there, not to the daemon
    config = load_config(path, environ={"DIGEST_TEST_NO_SUCH_PASSWORD": "x"})
    assert config.settings.delivery == "smtp"
    d = Daemon(path, environ={}, loader=lambda p, environ: config)
    with pytest.raises(TransportError, match="DIGEST_TEST_NO_SUCH_PASSWORD is not set"):
        d.start()
    assert daemon_module._current is None
    assert not (tmp_path / "digest.db.jobs").exists()
    # the lock was released: a corrected daemon starts
    d2 = Daemon(path, environ={"DIGEST_TEST_NO_SUCH_PASSWORD": "x"}, fetch=tiny_feed)
    d2.start()
    d2.stop()


def test_run_reports_an_invalid_config_with_lines_and_exits_1(tmp_path: Path) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * *", "UTC")])
    result = CliRunner().invoke(main, ["run", "-c", str(path)])
    assert result.exit_code == 1
    assert f"{path}:11: subscribers[0].schedule:" in result.output
    assert "expected 5 fields" in result.output
    assert not (tmp_path / "digest.db.jobs").exists()


# --------------------------------------------------------------------------- stop and lock


def test_stop_finishes_the_fire_in_flight_and_parks_the_queued_one(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    schedule_a, missed_a = at_minute(datetime.now(UTC) - timedelta(minutes=30))
    schedule_b, missed_b = at_minute(datetime.now(UTC) - timedelta(minutes=20))
    path = write_config(tmp_path / "s.yaml", [("a@example.org", schedule_a, "UTC"),
                                              ("b@example.org", schedule_b, "UTC")])
    config = load_config(path)
    seed_store(config, {"a@example.org": missed_a, "b@example.org": missed_b})
    recorder = Recorder(delay=0.5)
    d = Daemon(path, environ={}, sender=recorder, on_fire=Fires(), fetch=tiny_feed)
    d.start()
    assert recorder.started.wait(5)
    d.stop()  # while a's message is in flight; b waits in the queue
    assert recorder.calls == [("a@example.org", missed_a.date())]
    stored = stored_next_runs(config)
    assert stored["b@example.org"] == missed_b  # parked: due again on the next start
    assert stored["a@example.org"] == missed_a + timedelta(days=1)

    recorder2 = Recorder()
    d2, fires2 = start(daemons, path, sender=recorder2)
    (result,) = fires2.wait(1)
    assert (result.email, result.outcome, result.run_time) == ("b@example.org", "sent", missed_b)


def test_a_second_daemon_on_the_same_database_refuses_to_start(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    start(daemons, path, sender=Recorder())
    with pytest.raises(LockedError, match="another digest process"):
        Daemon(path, environ={}, sender=Recorder(), fetch=tiny_feed).start()


# --------------------------------------------------------------------------- digest schedule


def test_upcoming_lists_local_times() -> None:
    sub = Subscriber(email="a@example.org", name=None, timezone="Europe/Berlin",
                     schedule="30 2 * * *", max_papers=5, topics=())
    (runs,) = upcoming([sub], datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 2)
    assert [t.isoformat() for t in runs.runs] == ["2026-03-29T03:30:00+02:00",
                                                  "2026-03-30T02:30:00+02:00"]


def test_schedule_command_json_and_table(tmp_path: Path) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "30 2 * * *", "Europe/Berlin"),
                                              ("b@example.org", "0 8 * * 1", "UTC")])
    runner = CliRunner()
    result = runner.invoke(main, ["schedule", "-c", str(path), "--next", "2",
                                  "--now", "2026-03-28T12:00:00Z", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"subscribers": [
        {"email": "a@example.org", "timezone": "Europe/Berlin", "schedule": "30 2 * * *",
         "next": ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]},
        {"email": "b@example.org", "timezone": "UTC", "schedule": "0 8 * * 1",
         "next": ["2026-03-30T08:00:00+00:00", "2026-04-06T08:00:00+00:00"]}]}
    table = runner.invoke(main, ["schedule", "-c", str(path), "--now", "2026-03-28T12:00:00Z"])
    assert table.exit_code == 0, table.output
    assert "Sun 2026-03-29 03:30 CEST" in table.output
    assert "Sun 2026-03-29 01:30" in table.output  # the same instant in UTC
    bad = runner.invoke(main, ["schedule", "-c", str(path), "--now", "tomorrow"])
    assert bad.exit_code == 2 and "ISO-8601" in bad.output


def test_latest_run_is_the_last_scheduled_send_inside_the_window() -> None:
    from digest.schedule._jobs import latest_run

    now = datetime(2026, 3, 30, 6, 2, tzinfo=UTC)  # 08:02 in Berlin, a Monday
    window = timedelta(hours=12)
    assert latest_run("0 8 * * mon-fri", "Europe/Berlin", now, window) == datetime(
        2026, 3, 30, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    # Sunday's 08:00 is 24 h back: outside a 12 h window, so nothing is owed
    assert latest_run("0 8 * * sun", "Europe/Berlin", now, window) is None
    # a send exactly now counts; one a minute on does not yet
    assert latest_run("2 8 * * *", "Europe/Berlin", now, window) == now
    assert latest_run("3 8 * * *", "Europe/Berlin", now, window) is None  # yesterday: 24 h
    assert latest_run("* * * * *", "UTC", now, window) == now


def test_a_corrupt_job_store_is_a_clean_error(tmp_path: Path) -> None:
    path = write_config(tmp_path / "s.yaml", [("a@example.org", "0 7 * * *", "UTC")])
    Ledger(tmp_path / "digest.db").create()
    (tmp_path / "digest.db.jobs").write_bytes(b"this is not SQLite" * 100)
    result = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert "digest.db.jobs: not a usable job store" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_job_store_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    import stat

    scheduler = build_scheduler(tmp_path / "digest.db.jobs")
    scheduler.start(paused=True)
    scheduler.shutdown(wait=False)
    assert stat.S_IMODE((tmp_path / "digest.db.jobs").stat().st_mode) == 0o600


@dataclass
class LedgerRecorder(Recorder):
    """A Recorder whose sends are the ledger (what ``recorded`` reports)."""

    rows: set[tuple[str, date]] = field(default_factory=set)

    def send(self, subscriber: Subscriber, edition: date, papers: tuple[Paper, ...],
             summaries: Any, settings: Settings, now: datetime) -> Delivery:
        self.rows.add((subscriber.email, edition))
        return super().send(subscriber, edition, papers, summaries, settings, now)

    def recorded(self, settings: Settings, first: date) -> frozenset[tuple[str, date]]:
        return frozenset(r for r in self.rows if r[1] >= first)


def test_owed_sends_come_from_the_schedules_and_the_ledger_not_the_job_store(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    """The store says tomorrow for all three (the burst was queued, then the process died):
    the one the ledger knows is not sent again, the two it does not are sent once; a later
    check sends nothing more, and a subscriber added after its send time is owed nothing."""
    schedule, missed = at_minute(datetime.now(UTC) - timedelta(hours=1))
    subs = [(e, schedule, "UTC") for e in ("a@example.org", "b@example.org", "c@example.org")]
    path = write_config(tmp_path / "s.yaml", subs)
    seed_store(load_config(path), {e: missed + timedelta(days=1) for e, _, _ in subs})
    recorder = LedgerRecorder()
    recorder.rows.add(("a@example.org", missed.date()))
    d, fires = start(daemons, path, sender=recorder)
    fires.wait(2)
    time.sleep(0.3)
    assert sorted(recorder.calls) == [("b@example.org", missed.date()),
                                      ("c@example.org", missed.date())]
    assert d._catch_up_owed(d.config.settings) == 0  # nothing owed any more
    write_config(path, [*subs, ("new@example.org", schedule, "UTC")])
    assert d.reload() is True
    assert d._catch_up_owed(d.config.settings) == 0  # added after its send time
    assert len(recorder.calls) == 2


def test_a_pass_over_due_jobs_stores_every_job_moved_on(tmp_path: Path,
                                                          daemons: list[Daemon]) -> None:
    """The job store writes what one processing pass moved on in one transaction: after the
    pass, every fired job's next run time is stored (a new scheduler on the file reads it)."""
    emails = [f"r{i}@example.org" for i in range(30)]
    schedule, missed = at_minute(datetime.now(UTC) - timedelta(hours=1))
    path = write_config(tmp_path / "s.yaml", [(e, schedule, "UTC") for e in emails])
    seed_store(load_config(path), {e: missed for e in emails})
    d, fires = start(daemons, path, sender=Recorder())
    fires.wait(len(emails))
    d.stop()
    stored = stored_next_runs(load_config(path))
    assert set(stored) == set(emails)
    assert {when for when in stored.values()} == {missed + timedelta(days=1)}
