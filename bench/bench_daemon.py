"""Benchmark the daemon's burst: N subscribers all due at 07:00 through ``digest run``, beside
``digest send`` of the same YAML, into the same aiosmtpd sink (a separate process), in one run.

    .venv/bin/python bench/bench_daemon.py [--subscribers 1000] [--repeats 3]

Rows, interleaved per repeat (send, daemon, send, daemon, ...), each in its own process with a
fresh ledger:
- ``digest send``: ``python -m digest send --config Y --now <07:00>``, the whole command (start,
  config, papers, the run) timed from outside.
- ``digest send, shards off`` (``--one-process``): the same with ``PROCESS_THRESHOLD`` raised,
  so 10,000 go through one process as a daemon batch does.
- ``digest run`` burst: ``Daemon.run_forever`` (what ``digest run`` calls) on the same YAML,
  timed from the moment its clock reads 07:00:00 to the N-th fire's outcome. The clock is the
  tests' shifted clock (tests/schedule/shifted_run.py's approach: the daemon's ``clock`` and
  APScheduler's ``datetime.now`` read wall time plus an offset, at real speed): it reads 06:00
  while the daemon starts and reconciles every job, then jumps to 06:59:58, so the burst is
  due two seconds ahead with nothing else going on. Start-up is not in the figure (a daemon is
  up before its minute); ``digest send``'s figure includes its own start-up.
Every subscriber is in UTC with schedule ``0 7 * * *`` and 1-3 topics of real terms from the
bundled sample papers (bench_send.py's generator), ``smtp.connections: 4``, ``feed: sample``.
The floor (issue 16): the burst within 10% of ``digest send``. Prints min/median/max.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def run_send(yaml: Path, work: Path, *, one_process: bool = False) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DIGEST_CONFIG", None)
    command = ["-c", ONE_PROCESS] if one_process else ["-m", "digest"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *command, "send", "--config", str(yaml),
                           "--now", DUE.isoformat()], cwd=work, env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"digest send failed:\n{proc.stdout}\n{proc.stderr}")
    return {"seconds": seconds, "tail": proc.stdout.strip().splitlines()[-3:]}


def run_daemon(yaml: Path, work: Path, n: int) -> dict[str, Any]:
    import apscheduler.executors.base as executors_base
    import apscheduler.schedulers.base as schedulers_base
    from apscheduler.schedulers.base import STATE_RUNNING

    from digest.schedule import Daemon
    from digest.schedule._daemon import FireResult

    logging.basicConfig(level=logging.INFO, filename=str(work / "run.log"),
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    offset = [DUE - timedelta(hours=1) - datetime.now(UTC)]

    class _Shifted(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + offset[0]

    schedulers_base.datetime = _Shifted  # type: ignore[misc]
    executors_base.datetime = _Shifted  # type: ignore[misc]

    done = threading.Event()
    outcomes: dict[str, int] = {}
    end = [0.0]

    def on_fire(result: FireResult) -> None:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        if sum(outcomes.values()) >= n:
            end[0] = time.perf_counter()
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
    daemon.scheduler.wakeup()  # it was sleeping until 07:00 by the old clock reading
    if not done.wait(3600):
        raise SystemExit(f"the burst did not finish: {outcomes}")
    daemon.request_stop()
    runner.join(60)
    return {"seconds": end[0] - t_due, "startup": startup, "outcomes": outcomes}


def child(mode: str, yaml: Path, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        work = Path(tmp)
        shutil.copy(yaml, work / "subscribers.yaml")
        mine = work / "subscribers.yaml"
        if mode == "daemon":
            out = run_daemon(mine, work, n)
        else:
            out = run_send(mine, work, one_process=mode == "send-1")
    out["mode"] = mode
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------- parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", choices=("send", "send-1", "daemon"))
    ap.add_argument("--one-process", action="store_true",
                    help="also time digest send with its process shards off (from 5,000 on)")
    ap.add_argument("--yaml", type=Path)
    args = ap.parse_args()
    n = args.subscribers
    if args.child:
        child(args.child, args.yaml, n)
        return

    sys.path.insert(0, str(ROOT / "tests"))
    from smtp_server import spawn_sink

    sink, port = spawn_sink()
    modes = ("send", "send-1", "daemon") if args.one_process else ("send", "daemon")
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    extra: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-daemon-yaml-") as tmp:
            yaml = Path(tmp) / "subscribers.yaml"
            write_yaml(yaml, n, port)
            for i in range(args.repeats):
                for mode in modes:
                    print(f"repeat {i + 1}: {mode} x {n} ...", file=sys.stderr, flush=True)
                    proc = subprocess.run([sys.executable, __file__, "--child", mode,
                                           "--subscribers", str(n), "--yaml", str(yaml)],
                                          capture_output=True, text=True, check=False)
                    if proc.returncode != 0:
                        raise SystemExit(f"{mode} failed:\n{proc.stdout}\n{proc.stderr}")
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                    seconds[mode].append(float(row["seconds"]))
                    extra.append(row)
    finally:
        sink.terminate()
        tail = sink.communicate(timeout=30)[0].strip()
    received = int(tail.rsplit(" ", 1)[-1]) if tail.startswith("received") else -1

    def mmm(values: list[float]) -> str:
        return (f"{min(values):7.1f} {statistics.median(values):7.1f} {max(values):7.1f}")

    print(f"\nbench_daemon: {n:,} subscribers due at 07:00 UTC, 81 sample papers, sink = "
          f"aiosmtpd in its own process, 4 connections, {len(os.sched_getaffinity(0))} CPUs, "
          f"{args.repeats} repeats interleaved\n")
    print(f"{'path':<34}{'min s':>7} {'median':>7} {'max s':>7}")
    print(f"{'digest send (whole command)':<34}{mmm(seconds['send'])}")
    if "send-1" in seconds:
        print(f"{'digest send, shards off':<34}{mmm(seconds['send-1'])}")
    print(f"{'digest run burst (07:00 -> last)':<34}{mmm(seconds['daemon'])}")
    ratio = statistics.median(seconds["daemon"]) / statistics.median(seconds["send"])
    print(f"\nburst / send, medians: {ratio:.2f} (floor: <= 1.10)")
    if "send-1" in seconds:
        one = statistics.median(seconds["daemon"]) / statistics.median(seconds["send-1"])
        print(f"burst / send with shards off, medians: {one:.2f}")
    startups = [float(r["startup"]) for r in extra if r["mode"] == "daemon"]
    outcomes = [r["outcomes"] for r in extra if r["mode"] == "daemon"]
    print(f"daemon start-up before the burst (not timed): {mmm(startups)} s; outcomes "
          f"{outcomes[0]}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (a shared machine: compare "
          "the ratio, taken within this run)")
    print(f"sink received {received:,} messages (expected {len(modes) * n * args.repeats:,} if every "
          "digest had papers)")


if __name__ == "__main__":
    main()
