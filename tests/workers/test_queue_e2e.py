"""End to end on the real services: ``digest send`` queues on RabbitMQ, ``digest worker``
processes deliver into an aiosmtpd sink, the ledger in PostgreSQL. Every subscriber gets
exactly one copy; under faults (a worker killed with ``kill -9`` mid-send, every task published
twice, the workers' PostgreSQL sessions terminated mid-run, RabbitMQ stopped and started
again mid-run) every subscriber still gets one, and only a message in flight may come twice,
flagged and with the same Message-ID.

No test hooks in the product: the tests stall the SMTP server, kill processes, terminate
database sessions and stop the broker (``rabbitmqctl``) from outside."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paths
import psycopg
import pytest
from services import reachable
from smtp_server import SmtpTestServer

from digest.config import load_config
from digest.ledger import PostgresLedger
from digest.models import PostgresDatabase

ENV = {**os.environ, "PYTHONPATH": str(paths.REPO)}


def write_config(folder: Path, database: PostgresDatabase, broker: str, port: int,
                 count: int) -> Path:
    subs = "".join(f"  - email: reader{i}@example.org\n    topics: [model]\n"
                   for i in range(count))
    papers = [{"id": f"2611.0000{i}", "title": f"A {what} model",
               "abstract": f"We build a {what} model. It is {i}0% better than before."}
              for i, what in enumerate(("diffusion", "language", "world"), start=1)]
    (folder / "papers.json").write_text(json.dumps(papers), encoding="utf-8")
    path = folder / "subscribers.yaml"
    path.write_text(f"""settings:
  sender: "Paper Digest <digest@example.org>"
  database: {database.url}
  queue: {broker}
  delivery: smtp
  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 30, connections: 1}}
  feed: {{source: file, path: papers.json}}
subscribers:
{subs}""", encoding="utf-8")
    return path


class Workers:
    """``digest worker`` processes, each in its own process group (so ``kill -9`` of one
    takes its pool children with it, like the loss of its machine)."""

    def __init__(self, config: Path, log_dir: Path, *args: str) -> None:
        self.config, self.log_dir, self.args = config, log_dir, args
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "worker", "-c", str(self.config), "-v",
             "--reconcile-every", "0.5", *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(p.read_text(errors="replace")[-tail:]
                         for p in sorted(self.log_dir.glob("worker*.log")))


@pytest.fixture
def queue_setup(tmp_path: Path, pg_database: PostgresDatabase,
                amqp_url: str) -> Iterator[Callable[..., tuple[Path, Workers, PostgresDatabase]]]:
    """Makes (config, workers, database) for a sink port; the broker queue is deleted after."""
    made: list[tuple[Workers, PostgresDatabase, Path]] = []
    tag = f"digest-e2e-{uuid.uuid4().hex[:8]}"  # names this test's database sessions
    database = PostgresDatabase(f"{pg_database.url}&application_name={tag}")

    def make(port: int, count: int, *worker_args: str) -> tuple[Path, Workers, PostgresDatabase]:
        config = write_config(tmp_path, database, amqp_url, port, count)
        workers = Workers(config, tmp_path, *worker_args)
        made.append((workers, database, config))
        return config, workers, database

    yield make
    from digest.workers import make_app, queue_name

    for workers, db, config in made:
        workers.stop()
        app = make_app(load_config(config).settings, os.environ)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue_name(db))
        app.close()


def send(config: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digest", "send", "-c", str(config),
                           "--ignore-schedule", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def settled(database: PostgresDatabase, count: int) -> bool:
    with PostgresLedger(database) as ledger:
        status = ledger.status()
    return sum(s.sent for s in status) == count and not any(
        s.queued or s.sending or s.deferred for s in status)


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               workers: Workers | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n"
                                 + (workers.logs() if workers else ""))
        time.sleep(0.1)


def copies(server: SmtpTestServer) -> Counter[str]:
    return Counter(m.rcpt_tos[0] for m in server.messages)


def one_message_id_each(server: SmtpTestServer) -> bool:
    ids: dict[str, set[str]] = {}
    for m in server.messages:
        ids.setdefault(m.rcpt_tos[0], set()).add(str(m.message["Message-ID"]))
    return all(len(v) == 1 for v in ids.values())


@pytest.mark.parametrize("processes", [2, 4])
def test_workers_deliver_every_subscriber_once_even_when_every_task_comes_twice(
        queue_setup: Callable[..., tuple[Path, Workers, PostgresDatabase]],
        processes: int) -> None:
    count = 40
    with SmtpTestServer() as server:
        config, workers, database = queue_setup(server.port, count)
        for _ in range(processes):
            workers.start()
        done = send(config, "--wait")
        assert done.returncode == 0, done.stdout + done.stderr + workers.logs()
        assert re.search(r"queued for the workers\s+│\s+40 ", done.stdout), done.stdout
        assert settled(database, count)
        got = copies(server)
        assert len(got) == count and set(got.values()) == {1}
        # the same task published again (a duplicate from the broker, a replayed publish):
        from digest.workers import Job, make_app, publish

        with PostgresLedger(database) as ledger:
            rows = ledger.rows()
        app = make_app(load_config(config).settings, os.environ)
        try:
            assert publish(app, (Job(r.email, r.edition, None, r.created) for r in rows)) == count
        finally:
            app.close()
        again = send(config)  # and a second send: nothing new to queue
        assert again.returncode == 0, again.stderr
        assert re.search(r"queued for the workers\s+│\s+0 ", again.stdout), again.stdout
        def drained() -> bool:  # every duplicate taken and skipped by a claim that failed
            return len(re.findall(r"example\.org \S+: skipped: already done",
                                  workers.logs(tail=10**7))) == count

        wait_until(drained, 60, "the duplicate tasks", workers)
        assert copies(server) == got
        with PostgresLedger(database) as ledger:
            assert not any(r.possible_duplicate for r in ledger.rows())
        status = subprocess.run([sys.executable, "-m", "digest", "status", "-c", str(config),
                                 "--json"], capture_output=True, text=True, env=ENV)
        (edition,) = json.loads(status.stdout)
        assert (edition["sent"], edition["queued"], edition["failed"]) == (count, 0, 0)


def test_kill_9_of_a_worker_mid_send(
        queue_setup: Callable[..., tuple[Path, Workers, PostgresDatabase]]) -> None:
    count = 12
    victim = "reader5@example.org"
    with SmtpTestServer(stall_seconds=60) as server:
        # the worker sends victim's body, then waits for a reply that comes only after the kill
        server.add_rule("data", "451 4.3.0 stalled", action="stall", recipient=victim, times=1)
        config, workers, database = queue_setup(server.port, count, "--lease", "6",
                                                "--time-limit", "5")
        first = workers.start()
        queued = send(config)
        assert queued.returncode == 0, queued.stderr

        def victim_in_flight() -> bool:
            with PostgresLedger(database) as ledger:
                row = ledger.get(victim, ledger.rows()[0].edition) if ledger.rows() else None
            return row is not None and row.state == "sending" and row.message_id is not None

        wait_until(victim_in_flight, 60, "the victim's send", workers)
        workers.kill(first)  # the machine is gone: worker, pool and its connections
        with PostgresLedger(database) as ledger:  # messages begun (bytes may have left) at death
            in_flight = {r.email for r in ledger.rows()
                         if r.state == "sending" and r.message_id is not None}
        assert victim in in_flight
        workers.start()
        wait_until(lambda: settled(database, count), 90, "every digest settled", workers)
        got = copies(server)
        assert set(got) == {f"reader{i}@example.org" for i in range(count)}
        assert got[victim] == 1  # the stalled body was never accepted
        assert all(n == 1 for n in got.values())
        assert one_message_id_each(server)
        with PostgresLedger(database) as ledger:
            rows = {r.email: r for r in ledger.rows()}
        # what was in flight is flagged (nobody could know whether it had arrived), nothing else
        # (a row only claimed, never begun, is not); on a busy machine the dead worker may have
        # begun a second message before the kill
        assert {e for e, r in rows.items() if r.possible_duplicate} == in_flight
        assert rows[victim].attempts == 2


def test_database_sessions_terminated_mid_run(
        queue_setup: Callable[..., tuple[Path, Workers, PostgresDatabase]]) -> None:
    count = 60
    with SmtpTestServer() as server:
        config, workers, database = queue_setup(server.port, count)
        tag = database.url.rsplit("application_name=", 1)[1]
        queued = send(config)
        assert queued.returncode == 0, queued.stderr
        workers.start()
        workers.start()
        killed = 0
        with psycopg.connect(database.url.split("?")[0], autocommit=True) as admin:
            wait_until(lambda: server.count >= 5, 60, "the first messages", workers)
            for _ in range(3):  # drop every session of the workers, three times over
                found = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM "
                                      "pg_stat_activity WHERE application_name = %s",
                                      (tag,)).fetchone()
                killed += found[0] if found else 0
                time.sleep(0.3)
        assert killed >= 2
        wait_until(lambda: settled(database, count), 90, "every digest settled", workers)
        got = copies(server)
        assert len(got) == count
        assert one_message_id_each(server)
        with PostgresLedger(database) as ledger:
            flagged = {r.email for r in ledger.rows() if r.possible_duplicate}
        # a second copy only for a message in flight, and then flagged
        assert {e for e, n in got.items() if n > 1} <= flagged


SHIFTED_RUN = paths.TESTS / "schedule" / "shifted_run.py"


def test_digest_run_queues_its_fires_and_is_the_only_scheduler(
        queue_setup: Callable[..., tuple[Path, Workers, PostgresDatabase]]) -> None:
    with SmtpTestServer() as server:
        config, workers, database = queue_setup(server.port, 3)
        text = config.read_text(encoding="utf-8").replace(
            "    topics: [model]\n", "    topics: [model]\n    timezone: Europe/Berlin\n"
            "    schedule: \"0 8 * * *\"\n")
        config.write_text(text, encoding="utf-8")
        workers.start()
        start = "2026-03-30T07:59:55+02:00"  # 08:00 Berlin comes 5 s in
        log = config.parent / "run.log"
        with log.open("w") as sink:
            daemon = subprocess.Popen([sys.executable, str(SHIFTED_RUN), start, "--config",
                                       str(config)], env=ENV, stdout=subprocess.DEVNULL,
                                      stderr=sink, text=True)
        try:
            try:
                wait_until(lambda: server.count == 3, 60, "the scheduled digests", workers)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\ndigest run:\n{log.read_text()}") from None
            second = subprocess.run([sys.executable, str(SHIFTED_RUN), start, "--config",
                                     str(config)], env=ENV, capture_output=True, text=True,
                                    timeout=60)
            assert second.returncode == 1
            assert "another digest process (server pid" in second.stderr
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        err = log.read_text()
        assert daemon.returncode == 0, err
        assert err.count("queued for the workers") == 3, err
        assert sorted(copies(server).values()) == [1, 1, 1]
        with PostgresLedger(database) as ledger:
            assert {(r.edition.isoformat(), r.state) for r in ledger.rows()} == {
                ("2026-03-30", "sent")}


class TimedServer(SmtpTestServer):
    """Also notes when each message was accepted."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.times: list[float] = []

    def _accept(self, envelope: Any, session: Any) -> str:
        self.times.append(time.monotonic())
        return super()._accept(envelope, session)


def test_the_smtp_rate_limit_holds_for_all_workers_together(
        queue_setup: Callable[..., tuple[Path, Workers, PostgresDatabase]]) -> None:
    count, rate = 16, 5.0
    with TimedServer() as server:
        config, workers, database = queue_setup(server.port, count)
        text = config.read_text(encoding="utf-8").replace(
            "connections: 1}", f"connections: 1, max_per_second: {rate}}}")
        config.write_text(text, encoding="utf-8")
        queued = send(config)
        assert queued.returncode == 0, queued.stderr
        for _ in range(2):
            workers.start()
        wait_until(lambda: settled(database, count), 90, "every digest settled", workers)
        assert len(server.times) == count
        span = server.times[-1] - server.times[0]
        # one bucket for both workers: 16 messages at 5/s take >= 3 s (each alone would
        # allow 10/s together, 1.5 s); a little slack for the clock of the sink
        assert span >= (count - 1) / rate - 0.3, span
        gaps = [b - a for a, b in zip(server.times, server.times[1:])]
        assert sum(1 for g in gaps if g < 0.5 / rate) <= 1, gaps


def test_every_worker_renders_the_frozen_edition(
        queue_setup: Callable[..., tuple[Path, Workers, PostgresDatabase]]) -> None:
    with SmtpTestServer() as server:
        config, workers, database = queue_setup(server.port, 2)
        queued = send(config)
        assert queued.returncode == 0, queued.stderr
        # the feed changes after the run was queued: the workers must not see it
        (config.parent / "papers.json").write_text(json.dumps([{
            "id": "2612.99999", "title": "A changed model",
            "abstract": "We change the model. It is 90% different."}]), encoding="utf-8")
        workers.start()
        wait_until(lambda: settled(database, 2), 60, "both digests", workers)
        bodies = [m.message.get_body(("plain",)) for m in server.messages]
        texts = [b.get_content() for b in bodies if b is not None]
        assert len(texts) == 2
        assert all("A diffusion model" in t and "A changed model" not in t for t in texts)


def test_a_4xx_becomes_ledger_state_and_the_reconciler_retries_it(
        queue_setup: Callable[..., tuple[Path, Workers, PostgresDatabase]]) -> None:
    count = 4
    later = "reader2@example.org"
    with SmtpTestServer() as server:
        # three refusals: the task's own retries (two, no ETA) end with the row deferred
        server.add_rule("data", "451 4.3.0 try again later", recipient=later, times=3)
        config, workers, database = queue_setup(server.port, count, "--retry-after", "1")
        queued = send(config)
        assert queued.returncode == 0, queued.stderr
        workers.start()
        wait_until(lambda: settled(database, count), 60, "the retry", workers)
        # the first task ended with the row deferred; a re-published one delivered it
        outcomes = re.findall(rf"{re.escape(later)} \S+: (\w+)", workers.logs(tail=10**7))
        assert outcomes == ["deferred", "sent"], outcomes
        assert copies(server)[later] == 1
        with PostgresLedger(database) as ledger:
            row = {r.email: r for r in ledger.rows()}[later]
        assert (row.state, row.attempts, row.possible_duplicate) == ("sent", 4, False)



def rabbitmqctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, check=False,
                          timeout=timeout)


class Broker:
    """The machine's RabbitMQ, stopped and started with ``rabbitmqctl stop_app`` /
    ``start_app``: the node, its durable queues and their persistent messages stay."""

    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True  # before the call: a stop that fails half-way is undone too
        done = rabbitmqctl("stop_app")
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        """Start the app again and wait until it serves (a no-op when it runs)."""
        done = rabbitmqctl("start_app")
        ready = rabbitmqctl("await_startup")
        assert done.returncode == 0 and ready.returncode == 0, done.stderr + ready.stderr
        wait_until(lambda: reachable("127.0.0.1", 5672), 60, "RabbitMQ's port after start_app")
        self.stopped = False


@pytest.fixture
def broker(amqp_url: str) -> Iterator[Broker]:
    """The broker to stop mid-test, always started again at the end whatever the test did
    (every other test, and every other test run on this machine, needs it). Needs
    ``rabbitmqctl`` and the right to use it (root); under ``CI=true`` their absence fails the
    test instead of skipping it."""
    probe = rabbitmqctl("status") if shutil.which("rabbitmqctl") else None
    if probe is None or probe.returncode != 0:
        why = ("rabbitmqctl is not usable here (not on PATH, or not root): "
               + (probe.stderr.strip()[-300:] if probe is not None else "not found"))
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    control = Broker()
    try:
        yield control
    finally:
        if control.stopped:  # the test did not get to start it again
            control.start()


def test_rabbitmq_stopped_and_restarted_mid_run(
        queue_setup: Callable[..., tuple[Path, Workers, PostgresDatabase]],
        broker: Broker) -> None:
    """The broker goes away for a few seconds while two workers are mid-run (some sent, some
    queued) and a `digest send` is handed over meanwhile: the workers wait and reconnect, the
    send waits and publishes, and every subscriber is delivered once."""
    count, rate = 30, 5.0  # the global rate limit spreads the run over ~6 s
    with SmtpTestServer() as server:
        config, workers, database = queue_setup(server.port, count)
        text = config.read_text(encoding="utf-8").replace(
            "connections: 1}", f"connections: 1, max_per_second: {rate}}}")
        config.write_text(text, encoding="utf-8")
        queued = send(config)
        assert queued.returncode == 0, queued.stderr
        procs = [workers.start(), workers.start()]
        wait_until(lambda: server.count >= 2, 60, "the first messages", workers)
        late: subprocess.Popen[str] | None = None
        try:
            broker.stop()  # mid-run: tasks in flight, unacked, and waiting in the queue
            with PostgresLedger(database) as ledger:
                (at_stop,) = ledger.status()
            assert at_stop.sent >= 2 and at_stop.queued >= 1, at_stop
            # `digest send` while the broker is away: it re-publishes the rows still queued,
            # waiting for the broker rather than failing
            late = subprocess.Popen([sys.executable, "-m", "digest", "send", "-c", str(config),
                                     "--ignore-schedule"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=ENV)
            time.sleep(2)
            assert not reachable("127.0.0.1", 5672)
            assert late.poll() is None, late.communicate()  # still waiting, not failed
            assert all(p.poll() is None for p in procs), workers.logs()  # workers too
        except BaseException:
            if late is not None:
                late.kill()
                late.wait()
            raise
        finally:
            broker.start()
        out, err = late.communicate(timeout=120)
        assert late.returncode == 0, out + err
        again = re.search(r"queued for the workers\s+│\s+(\d+) ", out)
        assert again and int(again.group(1)) >= 1, out
        wait_until(lambda: settled(database, count), 90, "every digest settled", workers)

        def drained() -> bool:  # each row still queued at the stop had two tasks by now: the
            # broker's own (kept across the restart) and the late send's; one claim each won
            return len(re.findall(r"example\.org \S+: skipped: already done",
                                  workers.logs(tail=10**7))) >= int(again.group(1))

        wait_until(drained, 30, "the second task of every re-published row", workers)
        # the workers reconnected by themselves and are still serving
        assert all(p.poll() is None for p in procs), workers.logs()
        got = copies(server)
        assert set(got) == {f"reader{i}@example.org" for i in range(count)}
        assert one_message_id_each(server)
        with PostgresLedger(database) as ledger:
            rows = {r.email: r for r in ledger.rows()}
        assert len(rows) == count and {r.state for r in rows.values()} == {"sent"}
        # a second copy only for a message in flight at the stop, and then flagged
        flagged = {e for e, r in rows.items() if r.possible_duplicate}
        assert {e for e, n in got.items() if n > 1} <= flagged
    assert reachable("127.0.0.1", 5672) and not broker.stopped
