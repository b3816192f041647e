"""Benchmark delivery end to end: 10,000 subscribers select -> summarize -> render -> build ->
send into an aiosmtpd sink running in a SEPARATE process, next to the naive path and the sink's
own ceiling, plus a memory-flat check.

    .venv/bin/python bench/bench_send.py [--subscribers 10000] [--small 2000] [--naive 300]

Rows (each in its own child process, so each peak RSS is its own):
- ceiling: a client sending ONE pre-built digest ``--subscribers`` times over 4 connections
           as fast as it can: what the sink itself can take.
- ours:    ``digest.service.send_all`` exactly as ``digest send`` runs it (ledger in a fresh
           SQLite file, MJML shape cache, a pool of 4 reused SMTP connections, streaming); from
           5,000 subscribers on 2+ CPUs that is one spawned shard per CPU, each with its share
           of the 4 connections.
- ours at ``--small`` subscribers: compare peak RSS with the 10,000 row (memory flat). Below
           5,000 subscribers ``ours`` runs in one process, so the flat check compares that row
           with ``ours, 1 process``.
- tick per message / stop read per msg: ``ours`` with ONE of the shards' per-message costs
           put back the plain way: every outcome pickled to the parent on its own
           (``tick_batch=1`` instead of 64 at a time), or the parent's multiprocessing Event and
           ``getppid`` asked on every stop check (``stop_poll=0`` instead of a watcher thread
           setting a local flag every 0.1 s). Only meaningful when ``ours`` runs in shards.
- ours, 1 process: the same with the shards turned off (``processes=1``: 4 threads), to show
           what the shards cost or gain on this machine.
- naive:   the same per-subscriber unit, but a new SMTP connection per message and MJML
           compiled for every email (``Renderer(fast=False)`` built per email), one at a time;
           run on the first ``--naive`` subscribers (it is slow), rate extrapolated.
Peak RSS is that of the biggest single process of the row (the parent or one shard).
Subscribers are generated in code (fixed seed) with 1-3 topics of real terms from the bundled
sample papers, a few time zones and 3-10 papers each. The floor: 10,000 digests under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest.feeds import sample_papers
from digest.models import Config, Settings, SmtpSettings, Subscriber, Topic  # noqa: E402

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
TERMS = ["diffusion", "language model", "transformer", "reinforcement learning", "video",
         "attention", "benchmark", "agent", "reasoning", "quantization", "robot", "3D",
         "speech", "retrieval", "multimodal", "segmentation", "LLM", "efficient", "vision",
         "image generation", "alignment", "code", "math", "token*", "graph"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]


def subscribers(n: int) -> tuple[Subscriber, ...]:
    import random

    rnd = random.Random(20261125)
    out = []
    for i in range(n):
        topics = tuple(Topic(name=f"topic {k}", include=tuple(rnd.sample(TERMS, rnd.randint(1, 3))))
                       for k in range(rnd.randint(1, 3)))
        out.append(Subscriber(email=f"reader{i:05d}@example.org", name=f"Reader {i}",
                              timezone=rnd.choice(ZONES), schedule="0 7 * * *",
                              max_papers=rnd.randint(3, 10), topics=topics))
    return tuple(out)


def config(n: int, port: int, workdir: Path) -> Config:
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=30,
                        connections=4)
    settings = Settings(sender="Paper Digest <digest@example.org>",
                        database=workdir / "digest.db", outbox=workdir / "outbox",
                        delivery="smtp", smtp=smtp)
    return Config(path=workdir / "subscribers.yaml", settings=settings,
                  subscribers=subscribers(n))


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and every shard it started and waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _proc_cpu(pid: int) -> float:
    """CPU seconds used so far by another process (the sink), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mb() -> float:
    """The peak RSS of the biggest process involved (this one or a shard it started)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shards = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, shards) / 1024


# --------------------------------------------------------------------------- children


def run_ours(n: int, port: int, workdir: Path, processes: int | None,
             **shard_knobs: float) -> dict[str, object]:
    import functools

    from digest.delivery import _batch, send_all

    if shard_knobs:  # one of the shards' per-message costs put back the plain way
        _batch._send_sharded = functools.partial(  # type: ignore[assignment]
            _batch._send_sharded, **shard_knobs)

    cfg = config(n, port, workdir)
    papers = sample_papers()
    baseline = _current_rss_mb()  # the input itself: n Subscriber objects already in memory
    t0 = time.perf_counter()
    report = send_all(cfg, papers, NOW, environ={}, processes=processes)
    seconds = time.perf_counter() - t0
    return {"sent": report.sent, "skipped": report.nothing_new, "failed": report.failed,
            "seconds": seconds, "measured": n, "baseline_mb": baseline}


def run_naive(n: int, port: int, workdir: Path, limit: int) -> dict[str, object]:
    from digest.compose import LazySummaries, edition_for
    from digest.delivery import EditionRun, deliver_edition
    from digest.delivery._transports import SmtpTransport
    from digest.ledger import Ledger
    from digest.render import Renderer
    from digest.selection import Selector

    cfg = config(n, port, workdir)
    settings = cfg.settings
    assert settings.smtp is not None
    papers = sample_papers()
    ledger = Ledger(settings.database)
    summaries = LazySummaries(papers, settings.summary_chars)
    selector = Selector(papers)
    sent = 0
    t0 = time.perf_counter()
    for sub in cfg.subscribers[:limit]:
        transport = SmtpTransport(settings.smtp)  # a new connection for every message
        renderer = Renderer(settings.templates, max_bytes=settings.max_email_bytes, fast=False)
        run = EditionRun(ledger=ledger, renderer=renderer, settings=settings,
                         summaries=summaries, now=NOW, selector=selector)
        d = deliver_edition(sub, edition_for(sub, NOW), papers, run, transport=transport)
        transport.close()
        sent += d.state == "sent"
    seconds = time.perf_counter() - t0
    return {"sent": sent, "skipped": 0, "failed": 0, "seconds": seconds, "measured": limit}


def run_ceiling(n: int, port: int, workdir: Path) -> dict[str, object]:
    from digest.compose import build_digest, edition_for, summarize_all
    from digest.delivery import build_message
    from digest.delivery._transports import SmtpTransport
    from digest.render import Renderer
    from digest.selection import Selector

    cfg = config(1, port, workdir)
    settings = cfg.settings
    assert settings.smtp is not None
    sub = replace(cfg.subscribers[0], topics=(Topic(name="all", include=("model",)),),
                  max_papers=8)
    papers = sample_papers()
    selection = Selector(papers).select(sub)
    digest = build_digest(selection, summarize_all(papers, 350), edition_for(sub, NOW), NOW,
                          settings)
    msg = build_message(Renderer().render(digest), digest, settings, now=NOW)
    smtp = settings.smtp
    per = [n // 4 + (1 if i < n % 4 else 0) for i in range(4)]

    def pump(count: int) -> None:
        t = SmtpTransport(smtp)
        for _ in range(count):
            t.send(msg)
        t.close()

    threads = [threading.Thread(target=pump, args=(c,)) for c in per]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return {"sent": n, "skipped": 0, "failed": 0, "seconds": seconds, "measured": n,
            "bytes": len(msg.data)}


def child(mode: str, n: int, port: int, naive: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        work = Path(tmp)
        if mode == "ours":
            out = run_ours(n, port, work, None)
        elif mode == "ours-1":
            out = run_ours(n, port, work, 1)
        elif mode == "ours-2":
            out = run_ours(n, port, work, 2)
        elif mode == "ours-tick1":
            out = run_ours(n, port, work, None, tick_batch=1)
        elif mode == "ours-stop0":
            out = run_ours(n, port, work, None, stop_poll=0)
        elif mode == "naive":
            out = run_naive(n, port, work, naive)
        else:
            out = run_ceiling(n, port, work)
    out.update(mode=mode, subscribers=n, rss_mb=_rss_mb(), cpu=_cpu_seconds())
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------- parent


def run_child(mode: str, n: int, port: int, naive: int, sink: int) -> dict[str, object]:
    before = _proc_cpu(sink)
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--subscribers", str(n),
                           "--port", str(port), "--naive", str(naive)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["sink_cpu"] = _proc_cpu(sink) - before
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=2_000)
    ap.add_argument("--naive", type=int, default=300)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--child", choices=("ours", "ours-1", "ours-2", "ours-tick1", "ours-stop0",
                                        "naive", "ceiling"))
    args = ap.parse_args()
    if args.child:
        child(args.child, args.subscribers, args.port, args.naive)
        return

    sys.path.insert(0, str(ROOT / "tests"))
    from smtp_server import spawn_sink

    sink, port = spawn_sink()
    n = args.subscribers
    rows = []
    try:
        for mode, count in (("ceiling", n), ("ours", n), ("ours-tick1", n), ("ours-stop0", n),
                            ("ours", args.small), ("ours-1", n), ("naive", n)):
            print(f"running {mode} x {count} ...", file=sys.stderr, flush=True)
            rows.append(run_child(mode, count, port, args.naive, sink.pid))
    finally:
        sink.terminate()
        tail = sink.communicate(timeout=30)[0].strip()
    received = int(tail.rsplit(" ", 1)[-1]) if tail.startswith("received") else -1
    expected = sum(int(str(r["sent"])) for r in rows)

    print(f"\nbench_send: {n:,} subscribers, 81 sample papers, sink = aiosmtpd in its own "
          f"process (127.0.0.1:{port}), 4 connections, {_cpus()} CPUs\n")
    head = (f"{'path':<18}{'digests':>8}{'wall s':>8}{'msg/s':>7}{'CPU ms/msg':>12}"
            f"{'sink CPU ms/msg':>17}{'peak RSS MB':>13}  note")
    print(head)
    print("-" * len(head))
    for r in rows:
        measured = int(str(r["measured"]))
        seconds = float(str(r["seconds"]))
        rate = measured / seconds if seconds else 0.0
        note = ""
        if r["mode"] == "naive":
            note = f"first {measured:,} subscribers; {n:,} would take ~{n / rate:,.0f} s"
        elif r["mode"] == "ceiling":
            note = f"one pre-built {int(str(r['bytes'])):,}-byte digest, no ledger"
        elif str(r["mode"]).startswith("ours"):
            note = f"{r['sent']} sent, {r['skipped']} nothing new, {r['failed']} failed"
        label = {"ours": f"ours ({int(str(r['subscribers'])):,})",
                 "ours-1": "ours, 1 process",
                 "ours-2": "ours, 2 shards",
                 "ours-tick1": "  tick per message",
                 "ours-stop0": "  stop read per msg"}.get(str(r["mode"]), str(r["mode"]))
        cpu = float(str(r["cpu"])) / measured * 1000
        sink_cpu = float(str(r["sink_cpu"])) / measured * 1000
        print(f"{label:<18}{measured:>8,}{seconds:>8.1f}{rate:>7,.0f}{cpu:>12.2f}"
              f"{sink_cpu:>17.2f}{float(str(r['rss_mb'])):>13.1f}  {note}")
    # the same mode at both sizes: one process (shards only start from 5,000 subscribers)
    big = next(r for r in rows if r["mode"] == "ours-1")
    small = next(r for r in rows if r["mode"] == "ours" and r["subscribers"] == args.small)
    growth = float(str(big["rss_mb"])) - float(str(small["rss_mb"]))
    config_growth = float(str(big["baseline_mb"])) - float(str(small["baseline_mb"]))
    ours = next(r for r in rows if r["mode"] == "ours" and r["subscribers"] == n)
    big_s = float(str(ours["seconds"]))
    print(f"\nfloor: {n:,} digests in {big_s:.1f} s -> "
          f"{'PASS' if big_s < 60 and n >= 10_000 else 'FAIL' if n >= 10_000 else 'n/a'} "
          f"(< 60 s)")
    print(f"memory (one process): peak RSS {float(str(small['rss_mb'])):.1f} MB at "
          f"{args.small:,} vs {float(str(big['rss_mb'])):.1f} MB at {n:,} subscribers "
          f"(+{growth:.1f} MB for {n - args.small:,} more, of which the generated config "
          f"itself, in memory before the send starts: +{config_growth:.1f} MB)")
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {_cpus()} CPUs (other work competes for "
          "them: compare CPU ms/msg, which load does not inflate)")
    print(f"sink received {received:,} messages, clients reported {expected:,} accepted: "
          f"{'OK' if received == expected else 'MISMATCH'}")


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
