"""Benchmark the daemon's burst: N subscribers all due at 07:00 through ``digest run``, beside
``digest send`` of the same YAML, into the same aiosmtpd sink (a separate process), in one run.

    .venv/bin/python bench/bench_daemon.py [--subscribers 1000,10000] [--repeats 3,2]

Rows, interleaved per repeat (send, daemon, send, daemon, ...), each in its own process with a
fresh ledger:
- ``digest send``: ``python -m digest send --config Y --now <07:00>``, the whole command (start,
  config, papers, the run) timed from outside.
- ``digest send, shards off`` and ``burst, shards off`` (``--one-process``): the same with
  ``PROCESS_THRESHOLD`` raised, so 10,000 go through one process (the burst row is what a
  daemon batch did before it used the shards too).
- ``digest send, a shard per CPU`` and ``burst, a shard per CPU`` (``--every-cpu``): with
  ``LOCAL_SERVER_CPUS = 0``, a shard on the sink's CPU too (the rule before it: two on 2 CPUs).
- ``digest run`` burst: ``Daemon.run_forever`` (what ``digest run`` calls) on the same YAML,
  timed from the moment its clock reads 07:00:00 to the N-th fire's outcome. The clock is the
  tests' shifted clock (tests/schedule/shifted_run.py's approach: the daemon's ``clock`` and
  APScheduler's ``datetime.now`` read wall time plus an offset, at real speed): it reads 06:00
  while the daemon starts and reconciles every job, then jumps to 06:59:58, so the burst is
  due two seconds ahead with nothing else going on. Start-up is not in the figure (a daemon is
  up before its minute); ``digest send``'s figure includes its own start-up.
- a CPU line per N, user + sys seconds: the whole ``digest send`` process, and the daemon's
  process from the clock's jump to the last fire, every thread's (a shard's own are not
  counted). On a shared, loaded machine they drift less than the wall times.
``--pass`` times only APScheduler's processing pass over the N due jobs (the CPU seconds of
its thread, fires collected, not sent), with the triggers stored as ``digest run`` stores them
(each as its value) beside the older field-by-field pickles.
Every subscriber is in UTC with schedule ``0 7 * * *`` and 1-3 topics of real terms from the
bundled sample papers (bench_send.py's generator), ``smtp.connections: 4``, ``feed: sample``.
The floor (issue 16): the burst within 10% of ``digest send``, at every N. Prints min/median/max
per N, each N with its own repeats (default 3 at 1,000 and 2 at 10,000: a 10,000 row takes tens
of seconds on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DUE = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # a Wednesday


def write_yaml(path: Path, n: int, port: int) -> None:
    from bench_send import subscribers

    lines = ["settings:", '  sender: "Paper Digest <digest@example.org>"',
             "  database: digest.db", "  delivery: smtp",
             (f"  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 30, "
              "connections: 4}"), "  feed: {source: sample}", "subscribers:"]
    for sub in subscribers(n):
        lines += [f"  - email: {sub.email}", f"    name: {sub.name}", "    timezone: UTC",
                  '    schedule: "0 7 * * *"', f"    max_papers: {sub.max_papers}",
                  "    topics:"]
        for topic in sub.topics:
            terms = ", ".join(json.dumps(t) for t in topic.include)
            lines += [f"      - name: {topic.name}", f"        include: [{terms}]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- children


# ``digest send`` with its process shards turned off (they start from 5,000 subscribers on 2+
# CPUs; a daemon batch is one process): the same command, the threshold raised first.
ONE_PROCESS = ("import sys; import digest.delivery._batch as b; b.PROCESS_THRESHOLD = 10**9; "
               "from digest.cli import main; main(sys.argv[1:])")


# ... and with a shard on every CPU, the local sink's one included (the rule before
# LOCAL_SERVER_CPUS: on 2 CPUs, two shards).
EVERY_CPU = ("import sys; import digest.delivery._batch as b; b.LOCAL_SERVER_CPUS = 0; "
             "from digest.cli import main; main(sys.argv[1:])")


def run_send(yaml: Path, work: Path, *, one_process: bool = False,
             every_cpu: bool = False) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DIGEST_CONFIG", None)
    command = ["-c", ONE_PROCESS] if one_process else ["-c", EVERY_CPU] if every_cpu else [
        "-m", "digest"]
    cpu0 = _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *command, "send", "--config", str(yaml),
                           "--now", DUE.isoformat()], cwd=work, env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - t0
    cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"digest send failed:\n{proc.stdout}\n{proc.stderr}")
    return {"seconds": seconds, "cpu": cpu, "tail": proc.stdout.strip().splitlines()[-3:]}


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _shift_apscheduler_clock() -> list[timedelta]:
    """APScheduler's ``datetime.now`` reads wall time plus ``offset[0]`` (one hour before 07:00
    to begin with; the caller moves it): the tests' shifted clock, at real speed."""
    import apscheduler.executors.base as executors_base
    import apscheduler.schedulers.base as schedulers_base

    offset = [DUE - timedelta(hours=1) - datetime.now(UTC)]

    class _Shifted(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + offset[0]

    schedulers_base.datetime = _Shifted
    executors_base.datetime = _Shifted
    return offset


def run_daemon(yaml: Path, work: Path, n: int) -> dict[str, Any]:
    from apscheduler.schedulers.base import STATE_RUNNING

    from digest.schedule import Daemon
    from digest.schedule._daemon import FireResult

    logging.basicConfig(level=logging.INFO, filename=str(work / "run.log"),
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    offset = _shift_apscheduler_clock()

    done = threading.Event()
    outcomes: dict[str, int] = {}
    end = [0.0, 0.0]

    def on_fire(result: FireResult) -> None:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        if sum(outcomes.values()) >= n:
            end[:] = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
            done.set()

    daemon = Daemon(yaml, environ={}, clock=lambda: datetime.now(UTC) + offset[0],
                    on_fire=on_fire)
    runner = threading.Thread(target=daemon.run_forever, daemon=True)
    t_start = time.perf_counter()
    runner.start()
    # started: every job reconciled, the scheduler resumed (the last step of start())
    while daemon.scheduler is None or daemon.scheduler.state != STATE_RUNNING:
        if not runner.is_alive():
            raise SystemExit("the daemon did not start (see run.log)")
        time.sleep(0.05)
    startup = time.perf_counter() - t_start
    lead = 2.0
    offset[0] = DUE - timedelta(seconds=lead) - datetime.now(UTC)
    t_due = time.perf_counter() + lead
    cpu0 = _cpu(resource.RUSAGE_SELF)  # idle until 07:00: the burst's CPU, every thread's
    daemon.scheduler.wakeup()  # it was sleeping until 07:00 by the old clock reading
    if not done.wait(3600):
        raise SystemExit(f"the burst did not finish: {outcomes}")
    daemon.request_stop()
    runner.join(60)
    shards = [line.split(": over ", 1)[1].strip() for line in
              (work / "run.log").read_text(encoding="utf-8").splitlines()
              if "process shards" in line]
    return {"seconds": end[0] - t_due, "cpu": end[1] - cpu0, "startup": startup,
            "outcomes": outcomes,
            "batches": shards or ["one process"]}


def child(mode: str, yaml: Path, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        work = Path(tmp)
        shutil.copy(yaml, work / "subscribers.yaml")
        mine = work / "subscribers.yaml"
        if mode.startswith("daemon"):
            import digest.delivery._batch as batch

            if mode == "daemon-1":
                batch.PROCESS_THRESHOLD = 10**9
            if mode == "daemon-all":
                batch.LOCAL_SERVER_CPUS = 0
            out = run_daemon(mine, work, n)
        else:
            out = run_send(mine, work, one_process=mode == "send-1",
                           every_cpu=mode == "send-all")
    out["mode"] = mode
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------- the pass alone


def pass_child(n: int, field_by_field: bool) -> None:
    """CPU seconds of APScheduler's processing pass over ``n`` due jobs (what the burst's
    first second costs the daemon's process besides sending), on a real SQLite job store:
    the jobs as ``digest run`` stores them, or with each trigger pickled field by field (as
    before commit 9f37a5e, and as a store written then is read on its first pass). The fires
    are collected, not sent."""
    import io
    import pickle

    from apscheduler.schedulers.base import STATE_RUNNING

    import digest.schedule._daemon as daemon_module
    from digest.cron import WallClockCronTrigger, cron_trigger
    from digest.schedule._jobs import FIRE_FUNC, build_scheduler

    offset = _shift_apscheduler_clock()

    class FieldByField(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is WallClockCronTrigger:  # pickle's default for a class with slots
                return (getattr(__import__("copyreg"), "__newobj__"), (type(obj),),
                        obj.__getstate__())
            return NotImplemented

    class Collect:
        def __init__(self) -> None:
            self.fires: list[tuple[str, datetime]] = []

        def submit(self, email: str, run_time: datetime) -> None:
            self.fires.append((email, run_time))

    with tempfile.TemporaryDirectory(prefix="bench-daemon-pass-") as tmp:
        jobs = Path(tmp) / "digest.db.jobs"
        scheduler = build_scheduler(jobs)
        scheduler.start(paused=True)
        for i in range(n):
            email = f"user{i}@example.org"
            scheduler.add_job(FIRE_FUNC, cron_trigger("0 7 * * *", "UTC"), id=email,
                              name="0 7 * * * @ UTC", kwargs={"email": email},
                              misfire_grace_time=12 * 3600, coalesce=True, max_instances=1)
        store = scheduler._jobstores["default"]
        if field_by_field:
            table = store.jobs_t
            with store.engine.begin() as connection:
                for job in store.get_all_jobs():
                    buffer = io.BytesIO()
                    FieldByField(buffer, protocol=store.pickle_protocol).dump(
                        job.__getstate__())
                    connection.execute(table.update().where(table.c.id == job.id).values(
                        job_state=buffer.getvalue()))
        collect = Collect()
        daemon_module._current = collect  # type: ignore[assignment]
        offset[0] = DUE + timedelta(seconds=1) - datetime.now(UTC)
        scheduler.state = STATE_RUNNING  # its thread sleeps on: the pass runs here, timed
        cpu0 = time.thread_time()
        scheduler._process_jobs()
        cpu = time.thread_time() - cpu0
        scheduler.shutdown(wait=False)
        daemon_module._current = None
    if len(collect.fires) != n:
        raise SystemExit(f"the pass fired {len(collect.fires)} of {n} jobs")
    print(json.dumps({"cpu": cpu}), flush=True)


def time_the_pass(sizes: list[int], repeats: dict[int, int]) -> None:
    cpus: dict[tuple[int, bool], list[float]] = {}
    for n in sizes:
        for _ in range(repeats[n]):
            for fields in (False, True):  # interleaved
                proc = subprocess.run([sys.executable, __file__, "--child",
                                       "pass-fields" if fields else "pass", "--subscribers",
                                       str(n)], capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise SystemExit(f"the pass failed:\n{proc.stdout}\n{proc.stderr}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                cpus.setdefault((n, fields), []).append(float(row["cpu"]))
    print("\nbench_daemon --pass: APScheduler's processing pass over N due jobs (one schedule, "
          "a real SQLite job store), CPU s of the scheduler's thread\n")
    print(f"{'N':>7} {'jobs stored':<44}{'min':>7} {'median':>7} {'max':>7}  repeats")
    for n in sizes:
        for fields, label in ((False, "triggers as their value (digest run's)"),
                              (True, "triggers field by field (the older store)")):
            values = cpus[(n, fields)]
            print(f"{n:>7,} {label:<44}{min(values):7.3f} {statistics.median(values):7.3f} "
                  f"{max(values):7.3f}  {repeats[n]}")


# --------------------------------------------------------------------------- parent


def counts(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=counts, default=[1000, 10000],
                    help="comma-separated sizes, each timed in the same run (default 1000,10000)")
    ap.add_argument("--repeats", type=counts, default=[3, 2],
                    help="repeats per size, comma-separated (the last one serves the rest)")
    ap.add_argument("--child", choices=("send", "send-1", "send-all", "daemon", "daemon-1",
                                         "daemon-all", "pass", "pass-fields"))
    ap.add_argument("--pass", dest="the_pass", action="store_true",
                    help="only time APScheduler's processing pass over the N due jobs (CPU s), "
                         "with triggers stored as values and field by field")
    ap.add_argument("--one-process", action="store_true",
                    help="also time digest send and the burst with their process shards off "
                         "(they start from 5,000 subscribers)")
    ap.add_argument("--every-cpu", action="store_true",
                    help="also time both with a shard on every CPU, the local sink's included "
                         "(LOCAL_SERVER_CPUS = 0)")
    ap.add_argument("--yaml", type=Path)
    args = ap.parse_args()
    if args.child in ("pass", "pass-fields"):
        pass_child(args.subscribers[0], args.child == "pass-fields")
        return
    if args.child:
        child(args.child, args.yaml, args.subscribers[0])
        return

    sizes = args.subscribers
    repeats = {n: (args.repeats[i] if i < len(args.repeats) else args.repeats[-1])
               for i, n in enumerate(sizes)}
    if args.the_pass:
        time_the_pass(sizes, repeats)
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from smtp_server import spawn_sink

    sink, port = spawn_sink()
    modes = ("send", *(("send-1",) if args.one_process else ()),
             *(("send-all",) if args.every_cpu else ()), "daemon",
             *(("daemon-1",) if args.one_process else ()),
             *(("daemon-all",) if args.every_cpu else ()))
    seconds: dict[int, dict[str, list[float]]] = {n: {m: [] for m in modes} for n in sizes}
    cpus: dict[int, dict[str, list[float]]] = {n: {m: [] for m in modes} for n in sizes}
    extra: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    loads: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-daemon-yaml-") as tmp:
            for n in sizes:
                yaml = Path(tmp) / f"subscribers-{n}.yaml"
                write_yaml(yaml, n, port)
                for i in range(repeats[n]):
                    for mode in modes:  # interleaved: send, daemon, send, daemon, ...
                        print(f"{n:,}, repeat {i + 1}: {mode} ...", file=sys.stderr, flush=True)
                        loads.append(os.getloadavg()[0])
                        proc = subprocess.run([sys.executable, __file__, "--child", mode,
                                               "--subscribers", str(n), "--yaml", str(yaml)],
                                              capture_output=True, text=True, check=False)
                        if proc.returncode != 0:
                            raise SystemExit(f"{mode} failed:\n{proc.stdout}\n{proc.stderr}")
                        row = json.loads(proc.stdout.strip().splitlines()[-1])
                        seconds[n][mode].append(float(row["seconds"]))
                        cpus[n][mode].append(float(row["cpu"]))
                        extra[n].append(row)
    finally:
        sink.terminate()
        tail = sink.communicate(timeout=30)[0].strip()
    received = int(tail.rsplit(" ", 1)[-1]) if tail.startswith("received") else -1

    def mmm(values: list[float]) -> str:
        return (f"{min(values):7.1f} {statistics.median(values):7.1f} {max(values):7.1f}")

    print(f"\nbench_daemon: N subscribers due at 07:00 UTC, 81 sample papers, sink = aiosmtpd in "
          f"its own process, 4 connections, {len(os.sched_getaffinity(0))} CPUs; per N the "
          "rows are interleaved (send, burst, send, burst, ...)\n")
    print(f"{'N':>7} {'path':<34}{'min s':>7} {'median':>7} {'max s':>7}  repeats")
    worst = 0.0
    for n in sizes:
        rows = [("digest send (whole command)", "send")]
        if "send-1" in modes:
            rows.append(("digest send, shards off", "send-1"))
        if "send-all" in modes:
            rows.append(("digest send, a shard per CPU", "send-all"))
        rows.append(("digest run burst (07:00 -> last)", "daemon"))
        if "daemon-1" in modes:
            rows.append(("burst, shards off", "daemon-1"))
        if "daemon-all" in modes:
            rows.append(("burst, a shard per CPU", "daemon-all"))
        for label, mode in rows:
            print(f"{n:>7,} {label:<34}{mmm(seconds[n][mode])}  {repeats[n]}")
        ratio = statistics.median(seconds[n]["daemon"]) / statistics.median(seconds[n]["send"])
        worst = max(worst, ratio)
        line = f"{n:>7,} burst / send, medians: {ratio:.2f}"
        if "send-1" in modes:
            one = statistics.median(seconds[n]["daemon"]) / statistics.median(
                seconds[n]["send-1"])
            line += f" (of send with shards off: {one:.2f})"
        print(line)
        for mode, what in (("daemon-1", "with shards off"), ("daemon-all", "a shard per CPU")):
            if mode in modes:
                one = statistics.median(seconds[n][mode]) / statistics.median(seconds[n]["send"])
                print(f"{n:>7,} burst {what} / send, medians: {one:.2f}")
        cpu = statistics.median(cpus[n]["daemon"]) / statistics.median(cpus[n]["send"])
        print(f"{n:>7,} CPU s, user+sys: digest send {mmm(cpus[n]['send'])}, burst "
              f"{mmm(cpus[n]['daemon'])}; burst / send, medians: {cpu:.2f}")
        startups = [float(r["startup"]) for r in extra[n] if r["mode"] == "daemon"]
        outcomes = [r["outcomes"] for r in extra[n] if r["mode"] == "daemon"]
        batches = sorted({", ".join(r["batches"]) for r in extra[n] if r["mode"] == "daemon"})
        print(f"{n:>7,} daemon start-up before the burst (not timed): {mmm(startups)} s; "
              f"outcomes {outcomes[0]}; batches: {' | '.join(batches)}")
    verdict = "met" if worst <= 1.10 else "NOT met"
    print(f"\nfloor (issue 16): the burst within 10% of digest send at every N: worst "
          f"{worst:.2f} <= 1.10: {verdict}")
    print(f"load average while running: {min(loads):.1f} to {max(loads):.1f}, at the end "
          f"{os.getloadavg()[0]:.1f} (a shared machine: compare the ratios, taken within this run)")
    expected = sum(len(modes) * n * repeats[n] for n in sizes)
    print(f"sink received {received:,} messages ({expected:,} digests asked for; those whose "
          "subscriber matched no paper send nothing)")


if __name__ == "__main__":
    main()
