"""Benchmark one machine vs the queue: 10,000 digests into an aiosmtpd sink in its own process,
today's in-process path (SQLite ledger) next to PostgreSQL + Celery on RabbitMQ with 1, 2 and 4
``digest worker`` processes, and the sink's own ceiling, in one run.

    .venv/bin/python bench/bench_queue.py [--subscribers 10000] [--workers 1,2,4]

Rows:
- ceiling:      one pre-built digest sent ``--subscribers`` times over 4 connections (what the
                sink itself takes; ``bench_send.py``'s row).
- in-process:   ``send_all`` as ``digest send`` runs it today (SQLite file, 4 SMTP connections,
                from 5,000 subscribers one spawned shard per CPU).
- queue, N:     the same subscribers and papers with ``settings.queue`` and a PostgreSQL
                ledger (a fresh schema of the ``test`` database): N ``digest worker
                --concurrency 1`` processes are started and ready first; the wall time runs
                from ``enqueue_run`` (freeze the edition, write 10,000 ``queued`` rows,
                publish 10,000 tasks) until no row is queued or sending.
Peak RSS per process is VmHWM from /proc: for the queue rows the biggest worker process (main
or pool child); "lost" is digests the in-process row sent that the queue row did not, "dup"
is messages the sink received beyond the rows marked sent (both must be 0). Then, from the
measured per-worker rate, what 1,000,000 subscribers would need.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_send import NOW, _cpus, _proc_cpu, run_ceiling, run_ours, subscribers  # noqa: E402

PG = "postgresql://127.0.0.1:5432/test"
AMQP = "amqp://guest@127.0.0.1:5672//"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _hwm_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else 0.0


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def write_yaml(path: Path, n: int, port: int, database: str) -> None:
    lines = ["settings:", '  sender: "Paper Digest <digest@example.org>"',
             f"  database: {database}", f"  queue: {AMQP}", "  delivery: smtp",
             f"  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 30, "
             "connections: 4}", "subscribers:"]
    for s in subscribers(n):
        lines += [f"  - email: {s.email}", f"    timezone: {s.timezone}",
                  f"    max_papers: {s.max_papers}", "    topics:"]
        for t in s.topics:
            lines.append(f"      - {{name: {t.name}, include: {json.dumps(list(t.include))}}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_queue(n: int, port: int, workers: int, sink: int) -> dict[str, object]:
    import psycopg

    from digest.config import load_config
    from digest.feeds import sample_papers
    from digest.ledger import PostgresLedger
    from digest.models import PostgresDatabase
    from digest.workers import enqueue_run, make_app, queue_name

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    database = f"{PG}?options=-csearch_path%3D{schema}"
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        cfg_path = Path(tmp) / "subscribers.yaml"
        write_yaml(cfg_path, n, port, database)
        config = load_config(cfg_path, environ={})
        try:
            with PostgresLedger(PostgresDatabase(database)) as ledger:
                ledger.rows(limit=1)  # migrate before the workers start
            logs = [Path(tmp) / f"w{i}.log" for i in range(workers)]
            for log in logs:
                with log.open("wb") as sink_file:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "digest", "worker", "-c", str(cfg_path), "-v",
                         "--concurrency", "1"], stdout=sink_file, stderr=subprocess.STDOUT,
                        env=ENV))
            deadline = time.monotonic() + 120
            while not all("ready." in log.read_text(errors="replace") for log in logs):
                if time.monotonic() > deadline:
                    raise SystemExit("workers did not start:\n"
                                     + "\n".join(log.read_text()[-2000:] for log in logs))
                time.sleep(0.2)
            sink_before = _proc_cpu(sink)
            t0 = time.perf_counter()
            report = enqueue_run(config, sample_papers(), NOW, ignore_schedule=True,
                                 environ={})
            queued_s = time.perf_counter() - t0
            with PostgresLedger(PostgresDatabase(database)) as ledger:
                while True:
                    (status,) = ledger.status() or (None,)
                    if status is not None and status.queued == 0 and status.sending == 0:
                        break
                    time.sleep(0.25)
            seconds = time.perf_counter() - t0
            rss = max((_hwm_mb(p) for w in procs for p in (w.pid, *_children(w.pid))),
                      default=0.0)
            assert status is not None
            result: dict[str, object] = {
                "sent": status.sent, "failed": status.failed, "deferred": status.deferred,
                "duplicates_flagged": status.possible_duplicates, "seconds": seconds,
                "queued": report.queued, "enqueue_seconds": queued_s, "rss_mb": rss,
                "sink_cpu": _proc_cpu(sink) - sink_before, "workers": workers}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
            app = make_app(config.settings, {})
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue_name(PostgresDatabase(database)))
            app.close()
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return result


def child(mode: str, n: int, port: int) -> None:
    import resource

    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        out = run_ceiling(n, port, Path(tmp)) if mode == "ceiling" else \
            run_ours(n, port, Path(tmp), None)
    usage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    out.update(rss_mb=usage / 1024)
    print(json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--relay", type=float, default=50.0,
                    help="messages per second the relay allows, for the extrapolation")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--child", choices=("ceiling", "inprocess"))
    args = ap.parse_args()
    n = args.subscribers
    if args.child:
        child(args.child, n, args.port)
        return
    from smtp_server import spawn_sink

    sink, port = spawn_sink()
    rows: list[tuple[str, dict[str, object]]] = []
    try:
        for mode in ("ceiling", "inprocess"):
            print(f"running {mode} x {n} ...", file=sys.stderr, flush=True)
            before = _proc_cpu(sink.pid)
            proc = subprocess.run([sys.executable, __file__, "--child", mode, "--subscribers",
                                   str(n), "--port", str(port)], capture_output=True,
                                  text=True, env=ENV, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{proc.stderr}")
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            out["sink_cpu"] = _proc_cpu(sink.pid) - before
            rows.append((mode, out))
        for count in (int(w) for w in args.workers.split(",")):
            print(f"running queue with {count} worker(s) x {n} ...", file=sys.stderr,
                  flush=True)
            rows.append((f"queue, {count}", run_queue(n, port, count, sink.pid)))
    finally:
        sink.terminate()
        tail = sink.communicate(timeout=60)[0].strip()
    total_received = int(tail.rsplit(" ", 1)[-1]) if tail.startswith("received") else -1
    report(rows, n, port, total_received, args.relay)


def report(rows: list[tuple[str, dict[str, object]]], n: int, port: int, received: int,
           relay: float) -> None:
    inproc = dict(rows)["inprocess"]
    expected = int(str(inproc["sent"]))
    print(f"\nbench_queue: {n:,} subscribers (81 sample papers), sink = aiosmtpd in its own "
          f"process on 127.0.0.1:{port}, {_cpus()} CPUs shared with the ledger, the broker "
          "and the workers\n")
    head = (f"{'path':<16}{'sent':>7}{'wall s':>8}{'msg/s':>7}{'enqueue s':>11}"
            f"{'peak RSS MB/proc':>18}{'lost':>6}{'dup':>5}  note")
    print(head)
    print("-" * len(head))
    sent_total = 0
    for name, r in rows:
        sent = int(str(r["sent"]))
        sent_total += sent
        seconds = float(str(r["seconds"]))
        rate = sent / seconds if seconds else 0.0
        enqueue = f"{float(str(r['enqueue_seconds'])):.1f}" if "enqueue_seconds" in r else ""
        lost = dup = ""
        note = ""
        if name == "ceiling":
            note = "one pre-built digest, 4 connections, no ledger"
        elif name == "inprocess":
            note = f"SQLite, 4 connections; {r['skipped']} had nothing new"
        else:
            lost = str(max(0, expected - sent))
            dup = str(r["duplicates_flagged"])
            note = (f"{r['workers']} x digest worker --concurrency 1; {r['queued']} tasks; "
                    f"{r['failed']} failed, {r['deferred']} deferred")
        print(f"{name:<16}{sent:>7,}{seconds:>8.1f}{rate:>7,.0f}{enqueue:>11}"
              f"{float(str(r['rss_mb'])):>18.1f}{lost:>6}{dup:>5}  {note}")
    print(f"\nsink received {received:,} messages; the rows report {sent_total:,} accepted: "
          f"{'OK (0 lost, 0 duplicated)' if received == sent_total else 'MISMATCH'}")
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {_cpus()} CPUs (other work competes: "
          "compare rows of this run with each other, not with another run)")
    queue_rows = [(int(str(r["workers"])), int(str(r["sent"])) / float(str(r["seconds"])))
                  for name, r in rows if name.startswith("queue")]
    if queue_rows:
        best_w, best = max(queue_rows, key=lambda x: x[1] / x[0])
        per_worker = best / best_w
        needed = max(1, -(-relay // per_worker))
        hours_relay = 1_000_000 / relay / 3600
        print(f"\n1,000,000 subscribers against a relay allowing {relay:g} msg/s: the relay "
              f"alone needs {hours_relay:.1f} h. Measured here, one worker process does "
              f"{per_worker:.0f} msg/s (the best per-worker rate above: {best_w} worker(s) on "
              f"{_cpus()} shared CPUs), so {needed:.0f} worker process(es) keep the relay "
              f"busy: {needed:.0f} SMTP connections, about {2 * needed:.0f} PostgreSQL "
              "connections (one per pool process, one per reconciler pass) and one broker "
              "connection each. Without a relay limit, at the best total rate measured on this "
              f"box ({max(x[1] for x in queue_rows):.0f} msg/s), 1,000,000 take "
              f"{1_000_000 / max(x[1] for x in queue_rows) / 3600:.1f} h; more machines add "
              "workers until PostgreSQL (6 statements, 2 durable commits per digest) or the "
              "relay is the limit.")

if __name__ == "__main__":
    main()
