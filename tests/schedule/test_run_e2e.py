"""``digest run`` end to end: a real subprocess, a real aiosmtpd server, real SIGTERM.

``shifted_run.py`` (beside this file) makes the daemon's (and APScheduler's) clock read 07:59:5x
at start, so a subscriber scheduled for 08:00 Berlin time fires seconds later instead of at the
next real minute. The server stalls the first DATA and answers 451, and SIGTERM arrives during
that stall: the daemon must finish the message (retry, accepted), then exit 0 with no ledger
row left in ``sending``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

from smtp_server import SmtpTestServer

from digest.ledger import Ledger

SHIFTED_RUN = Path(__file__).with_name("shifted_run.py")
FAKE_START = "2026-03-30T07:59:53+02:00"  # a Monday; 08:00 comes 7 s in (slack for a busy CI)


class Proc:
    """A ``digest`` subprocess whose stderr lines are collected as they come."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str],
                 start: str | None = None) -> None:
        self.lines: list[str] = []
        command = ([sys.executable, str(SHIFTED_RUN), start] if start is not None
                   else [sys.executable, "-m", "digest"])
        self.popen = subprocess.Popen([*command, *args], cwd=cwd,
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        with self.popen.stderr:
            for line in self.popen.stderr:
                self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.popen.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line with {needle!r} in:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 20.0) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:  # say what it was doing
            raise AssertionError(f"still running after {timeout} s:\n"
                                 + "\n".join(self.lines)) from None
        self._reader.join(5)
        return code


def test_run_fires_once_stops_gracefully_mid_message_and_refuses_a_second_instance(
        tmp_path: Path) -> None:
    with SmtpTestServer(stall_seconds=2.0) as server:
        stall = server.add_rule("data", "451 4.3.0 Try again later", action="stall", times=1)
        config = tmp_path / "subscribers.yaml"
        config.write_text(f"""\
settings:
  sender: "Paper Digest <digest@example.org>"
  database: digest.db
  delivery: smtp
  smtp: {{host: 127.0.0.1, port: {server.port}, security: none, timeout: 10}}
  feed: {{source: sample}}
subscribers:
  - email: ada@example.org
    timezone: Europe/Berlin
    schedule: "0 8 * * mon-fri"
    topics: [diffusion, language model, quantization]
""")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        env.pop("DIGEST_CONFIG", None)
        daemon = Proc("--config", str(config), cwd=tmp_path, env=env, start=FAKE_START)
        second: Proc | None = None
        try:
            daemon.wait_for_line("digest run: 1 subscriber (1 added")
            # if start-up took longer than the slack, the job would wait for tomorrow: say so
            assert daemon.wait_for_line("next send: ").endswith(
                "ada@example.org at 2026-03-30T08:00:00+02:00"), "\n".join(daemon.lines)

            second = Proc("run", "--config", str(config), cwd=tmp_path, env=env)
            assert second.finish() == 1, "\n".join(["first:", *daemon.lines, "second:",
                                                    *second.lines])
            assert any(f"another digest process (pid {daemon.popen.pid})" in line
                       for line in second.lines), second.lines

            # The fire has begun and its message sits in the server's stalled DATA: stop now.
            deadline = time.monotonic() + 20
            while stall.fired == 0:
                assert time.monotonic() < deadline, "\n".join(daemon.lines)
                assert daemon.popen.poll() is None, "\n".join(daemon.lines)
                time.sleep(0.02)
            daemon.popen.send_signal(signal.SIGTERM)
            assert daemon.finish() == 0, "\n".join(daemon.lines)
        finally:
            for proc in (daemon, second):  # none outlives the test, whatever failed
                if proc is not None and proc.popen.poll() is None:
                    proc.popen.kill()
                    proc.popen.wait()

        (received,) = server.messages  # exactly one email, after the 451 and one retry
        assert received.rcpt_tos == ("ada@example.org",)
        assert received.message["Subject"]

    log = "\n".join(daemon.lines)
    stop_at = daemon.wait_for_line("received SIGTERM")
    sent_at = daemon.wait_for_line("fire ada@example.org edition 2026-03-30 scheduled "
                                   "2026-03-30T08:00:00+02:00: sent")
    assert daemon.lines.index(stop_at) < daemon.lines.index(sent_at), log
    assert daemon.lines[-1].endswith("digest run stopped"), log
    assert "Traceback" not in log

    with Ledger(tmp_path / "digest.db") as ledger:
        rows = ledger.rows()
    assert [(r.email, r.edition, r.state) for r in rows] == [
        ("ada@example.org", date(2026, 3, 30), "sent")]
    assert rows[0].message_id and rows[0].message_id in received.data.decode()


BURST = [f"reader{i:02d}@example.org" for i in range(1, 13)]


def _burst_config(tmp_path: Path, port: int) -> Path:
    subs = "".join(f"""  - email: {e}
    timezone: Europe/Berlin
    schedule: "0 8 * * mon-fri"
    topics: [diffusion, language model, quantization]
""" for e in BURST)
    config = tmp_path / "subscribers.yaml"
    config.write_text(f"""\
settings:
  sender: "Paper Digest <digest@example.org>"
  database: digest.db
  delivery: smtp
  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 10, connections: 1}}
  feed: {{source: sample}}
subscribers:
{subs}""")
    return config


def _seed_burst_due_at_eight(config: Path) -> None:
    """What the previous ``digest run`` left: its ledger, and every job due at 08:00 (so the
    test need not wait for a clock to reach 08:00)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from digest.config import load_config
    from digest.schedule._jobs import build_scheduler, jobs_path, reconcile

    loaded = load_config(config)
    Ledger(loaded.settings.database).create()
    scheduler = build_scheduler(jobs_path(loaded.settings))
    scheduler.start(paused=True)
    try:
        reconcile(scheduler, loaded)
        eight = datetime(2026, 3, 30, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))
        for job in scheduler.get_jobs():
            scheduler.modify_job(job.id, next_run_time=eight)
    finally:
        scheduler.shutdown(wait=False)


def test_kill_9_mid_burst_then_restart_inside_catch_up_delivers_every_edition(
        tmp_path: Path) -> None:
    """APScheduler moves every due job's next run time to tomorrow when it hands the burst to
    the executor; a kill -9 then loses the queued fires. What is owed must come from the
    schedules and the ledger: after the restart, two minutes later, everyone is delivered and
    only the message in flight at the kill may arrive twice."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("DIGEST_CONFIG", None)
    with SmtpTestServer(stall_seconds=30.0) as server:
        stall = server.add_rule("data", "451 4.3.0 stalled", action="stall",
                                recipient=BURST[4], times=1)
        config = _burst_config(tmp_path, server.port)
        _seed_burst_due_at_eight(config)  # the first process starts with the burst due
        first = Proc("--config", str(config), cwd=tmp_path, env=env,
                     start="2026-03-30T08:00:20+02:00")
        try:
            deadline = time.monotonic() + 25
            while stall.fired == 0:
                assert time.monotonic() < deadline, "\n".join(first.lines)
                assert first.popen.poll() is None, "\n".join(first.lines)
                time.sleep(0.02)
        finally:
            first.popen.send_signal(signal.SIGKILL)
            first.finish()
        assert server.count == 4
        server.clear_rules()

        later = "2026-03-30T08:02:00+02:00"  # two minutes on, well inside catch_up (12 h)
        second = Proc("--config", str(config), cwd=tmp_path, env=env, start=later)
        try:
            deadline = time.monotonic() + 25
            while server.count < len(BURST):
                assert time.monotonic() < deadline, "\n".join(second.lines)
                assert second.popen.poll() is None, "\n".join(second.lines)
                time.sleep(0.05)
            second.wait_for_line(f"fire {BURST[-1]} edition 2026-03-30")
            second.popen.send_signal(signal.SIGTERM)
            assert second.finish() == 0, "\n".join(second.lines)
        finally:
            if second.popen.poll() is None:
                second.popen.kill()
                second.popen.wait()
        copies = {e: sum(1 for m in server.messages if m.rcpt_tos == (e,)) for e in BURST}
    assert set(copies.values()) == {1}, copies
    assert "Traceback" not in "\n".join(second.lines)
    with Ledger(tmp_path / "digest.db") as ledger:
        rows = ledger.rows()
    assert sorted((r.email, r.state) for r in rows) == [(e, "sent") for e in BURST]
    assert [r.email for r in rows if r.possible_duplicate] == [BURST[4]]
