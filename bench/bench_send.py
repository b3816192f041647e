"""Benchmark delivery end to end: 10,000 subscribers select -> summarize -> render -> build ->
send into an aiosmtpd sink running in a SEPARATE process, next to the naive path and the sink's
own ceiling, plus a memory-flat check.

    .venv/bin/python bench/bench_send.py [--subscribers 10000] [--repeats 3] [--rows a,b,...]
                                         [--baseline DIR]

Each row runs ``--repeats`` times (the secondary rows, marked in ONCE, once) and prints
min/median/max; "of ceiling" is each repeat's rate over the ceiling of the same sink in the same
repeat. Two sinks run side by side: the plain one, and one offering PIPELINING (RFC 2920).

Rows (each in its own child process, so each peak RSS is its own):
- ceiling: a client sending ONE pre-built digest ``--subscribers`` times over 4 connections
           as fast as it can: what the sink itself can take.
- ours:    ``digest.service.send_all`` exactly as ``digest send`` runs it (ledger in a fresh
           SQLite file, MJML shape cache, a pool of 4 reused SMTP connections, streaming); from
           5,000 subscribers it is one spawned shard per CPU, each with its share of the 4
           connections, less the one CPU left to a local server (the sink here): on 2 CPUs,
           one process.
- ours at ``--small`` subscribers: compare peak RSS with the 10,000 row (memory flat). Below
           5,000 subscribers ``ours`` runs in one process, so the flat check compares that row
           with ``ours, 1 process``.
- tick per message / stop read per msg: ``ours`` with ONE of the shards' per-message costs
           put back the plain way: every outcome pickled to the parent on its own
           (``tick_batch=1`` instead of 64 at a time), or the parent's multiprocessing Event and
           ``getppid`` asked on every stop check (``stop_poll=0`` instead of a watcher thread
           setting a local flag every 0.1 s). Only meaningful when ``ours`` runs in shards.
- ours, 1 process / ours, 2 shards: the same with ``processes=1`` or ``processes=2``
           whatever the CPU count, to show what the shards cost or gain on this machine.
- digest send (command): ``python -m digest send --config FILE`` of the same subscribers
           written as a YAML file, the whole command from outside (start-up, loading, shards).
- ceiling, PIPELINING / ours, PIPELINING: the same two rows against the sink offering
           PIPELINING (MAIL, RCPT and DATA in one round trip).
- ours, 2 connections: ``smtp.connections: 2`` (one sending thread per shard instead of two).
- ours, 4 shards: four spawned shards of one connection (one thread) each, instead of two of
           two: processes instead of threads, each paying its own start-up.
- ledger, zlib / in the row / spool / held / begun / no bytes: the ledger's share of a delivery
           alone (2 reads, begin, mark_sent, every row alike, though a send reads once since
           session 12; ``--ledger`` deliveries, one thread, four in flight as four
           connections keep them): the message bytes stored compressed in the
           row (before session 4), as they are in the row (before session 10), in the spool
           beside the database (``digest/ledger/_spool.py``), the same with each ``sent``
           held and committed with the next ``begin`` (session 11: ``mark_sent(hold=True)``),
           the begins held too and committed two at a time (now, as the send's loop commits a
           parked body's begin with the next message's: ``begin(hold=True)``), or not at all.
- ledger, PostgreSQL (generic plans / now / held): the same calls on a PostgreSQL ledger in a
           fresh schema of the machine's server (the tests' ``postgresql://127.0.0.1:5432/test``):
           with PostgreSQL's own choice between generic and custom plans (before session
           11), with a plan per run (``plan_cache_mode = force_custom_plan``, now), and with
           each ``sent`` held for the next ``begin`` as well (now, as the loop calls it); the
           wall column is what to read there (most of it is the server's and the round trips).
- ours, --baseline DIR: the ``ours`` row run from another checkout (e.g. ``git worktree add
           /tmp/base HEAD~1``), its code, the same sink, interleaved with ``ours`` in every
           repeat: what a change gained end to end, measured in the same minutes.
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
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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


def run_ours(n: int, port: int, workdir: Path, processes: int | None, *,
             connections: int = 4, **shard_knobs: float) -> dict[str, object]:
    import functools

    from digest.delivery import _batch, send_all

    if shard_knobs:  # one of the shards' per-message costs put back the plain way
        _batch._send_sharded = functools.partial(  # type: ignore[assignment]
            _batch._send_sharded, **shard_knobs)

    cfg = config(n, port, workdir)
    if connections != 4:
        assert cfg.settings.smtp is not None
        cfg = replace(cfg, settings=replace(cfg.settings, smtp=replace(
            cfg.settings.smtp, connections=connections)))
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


def write_yaml(path: Path, n: int, port: int) -> None:
    """The ``subscribers(n)`` of the other rows as a subscribers file (same time zones, topics
    and limits), sending into the sink at ``port`` like ``config()``."""
    lines = ["settings:", '  sender: "Paper Digest <digest@example.org>"',
             "  database: digest.db", "  outbox: outbox", "  delivery: smtp",
             (f"  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 30, "
              "connections: 4}"), "  feed: {source: sample}", "subscribers:"]
    for sub in subscribers(n):
        lines += [f"  - email: {sub.email}", f"    name: {sub.name}",
                  f"    timezone: {sub.timezone}", '    schedule: "0 7 * * *"',
                  f"    max_papers: {sub.max_papers}", "    topics:"]
        for topic in sub.topics:
            terms = ", ".join(json.dumps(t) for t in topic.include)
            lines += [f"      - name: {topic.name}", f"        include: [{terms}]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_command(n: int, port: int, workdir: Path) -> dict[str, object]:
    """``digest send --config FILE`` of a generated file, the whole command from outside (its
    start-up, loading the YAML, the shards), as a user runs it."""
    yaml = workdir / "subscribers.yaml"
    write_yaml(yaml, n, port)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DIGEST_CONFIG", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "digest", "send", "--config", str(yaml),
                           "--now", NOW.isoformat()], cwd=workdir, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"digest send failed:\n{proc.stdout}\n{proc.stderr}")
    counts = dict(re.findall(r"│ (sent|skipped: nothing new|failed)\s*│\s*(\d+)", proc.stdout))
    return {"sent": int(counts.get("sent", -1)),
            "skipped": int(counts.get("skipped: nothing new", -1)),
            "failed": int(counts.get("failed", -1)), "seconds": seconds, "measured": n}


def run_ledger(n: int, workdir: Path, stored: str) -> dict[str, object]:
    """The ledger's share of one delivery, alone (no SMTP, one thread), as a send calls it: the
    two reads (the selection's and prepare_edition's), ``begin`` (with the message bytes stored the way ``stored``
    says), ``mark_sent``; CPU per message and the ledger's size at the end."""
    from digest.compose import edition_for
    from digest.ledger import Ledger, LedgerStore, PostgresLedger
    from digest.ledger import _blob

    msg = _sample_message()
    sub = subscribers(1)[0]
    edition = edition_for(sub, NOW)
    schema = None
    ledger: LedgerStore
    if stored.startswith("pg"):  # a fresh schema in the machine's PostgreSQL (tests' server)
        sys.path.insert(0, str(ROOT / "tests"))
        from services import admin, schema_url

        from digest.models import PostgresDatabase

        schema = f"bench_{os.getpid()}"
        with admin() as conn:  # type: ignore[attr-defined]
            conn.execute(f"CREATE SCHEMA {schema}")
        pg = PostgresLedger(PostgresDatabase(schema_url(schema)))
        pg.create()
        if stored == "pg-auto":  # PostgreSQL's own choice of plans, as before session 11
            pg._connect().execute("SET plan_cache_mode = auto")
        ledger = pg
    else:
        ledger = Ledger(workdir / "ledger.db")
        ledger.create()
    if stored in ("zlib", "row"):  # the bytes in the row, as before the spool (SQLite)
        from digest.ledger import _spool
        _spool.Spool.put = lambda self, data, make_room: None  # type: ignore[method-assign]
    if stored == "zlib":  # what both ledgers did before: zlib (level 1) in begin() already
        _blob.pending = _blob.kept  # type: ignore[assignment]
    data: bytes | None = None if stored == "none" else msg.data
    hold = stored in ("held", "begun", "pg-held")  # as the loop: committed with the next write
    begun = stored == "begun"  # the begins held too, committed two at a time, as the loop's
    flying: list[str] = []
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        email = f"reader{i:05d}@example.org"
        ledger.selection_state(email, edition)  # the selection's read (jobs())
        ledger.edition_state(email, edition)  # and prepare_edition's, right before the build
        ledger.begin(email, edition, message_id=f"<{i}.{msg.message_id[1:]}", papers=("a", "b"),
                     data=data, now=NOW, hold=begun)
        if begun and i % 2:  # the body the server asked for meanwhile goes with this begin
            ledger.flush()
        flying.append(email)
        if len(flying) > 4:  # four in flight, as the send's four connections keep them
            ledger.mark_sent(flying.pop(0), edition, now=NOW, code=250, reply="OK", hold=hold)
    for email in flying:
        ledger.mark_sent(email, edition, now=NOW, code=250, reply="OK")
    cpu = time.process_time() - c0
    seconds = time.perf_counter() - t0
    ledger.close()
    if schema is not None:
        with admin() as conn:  # type: ignore[attr-defined]
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    size = sum(f.stat().st_size for f in workdir.glob("ledger.db*") if f.suffix != ".spool")
    spool = workdir / "ledger.db.spool"
    return {"sent": n, "skipped": 0, "failed": 0, "seconds": seconds, "measured": n,
            "ledger_cpu": cpu, "ledger_mb": size / 2**20,
            "spool_mb": spool.stat().st_size / 2**20 if spool.exists() else 0.0}


def _sample_message() -> Any:
    """One realistic digest (8 papers, ~44 KB), built the way ``run_ceiling`` builds it."""
    from digest.compose import build_digest, edition_for, summarize_all
    from digest.delivery import build_message
    from digest.render import Renderer
    from digest.selection import Selector

    cfg = config(1, 25, Path("."))
    sub = replace(cfg.subscribers[0], topics=(Topic(name="all", include=("model",)),),
                  max_papers=8)
    papers = sample_papers()
    digest = build_digest(Selector(papers).select(sub), summarize_all(papers, 350),
                          edition_for(sub, NOW), NOW, cfg.settings)
    return build_message(Renderer().render(digest), digest, cfg.settings, now=NOW)


def child(mode: str, n: int, port: int, naive: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        work = Path(tmp)
        if mode in ("ours", "ours-pipe"):
            out = run_ours(n, port, work, None)
        elif mode == "ours-1":
            out = run_ours(n, port, work, 1)
        elif mode == "ours-2":
            out = run_ours(n, port, work, 2)
        elif mode == "ours-4":
            out = run_ours(n, port, work, 4)
        elif mode == "ours-conn2":
            out = run_ours(n, port, work, None, connections=2)
        elif mode == "ours-tick1":
            out = run_ours(n, port, work, None, tick_batch=1)
        elif mode == "ours-stop0":
            out = run_ours(n, port, work, None, stop_poll=0)
        elif mode == "send":
            out = run_command(n, port, work)
        elif mode.startswith("ledger-"):
            out = run_ledger(n, work, mode.removeprefix("ledger-"))
        elif mode == "naive":
            out = run_naive(n, port, work, naive)
        else:
            out = run_ceiling(n, port, work)
    out.update(mode=mode, subscribers=n, rss_mb=_rss_mb(), cpu=_cpu_seconds())
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------- the sinks


def spawn(pipelining: bool) -> tuple[subprocess.Popen[str], int]:
    """tests/smtp_server.py's counting sink in its own process, optionally offering PIPELINING
    (RFC 2920) in its EHLO reply, as Postfix, Exim and the big providers do."""
    sys.path.insert(0, str(ROOT / "tests"))
    from smtp_server import spawn_sink

    return spawn_sink(pipelining=pipelining)


# --------------------------------------------------------------------------- parent


def run_child(mode: str, n: int, port: int, naive: int, sink: int | None, *,
              script: Path = Path(__file__)) -> dict[str, object]:
    before = _proc_cpu(sink) if sink else 0.0
    proc = subprocess.run([sys.executable, str(script), "--child", mode, "--subscribers",
                           str(n), "--port", str(port), "--naive", str(naive)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["sink_cpu"] = (_proc_cpu(sink) - before) if sink else 0.0
    return result


MODES = ("ceiling", "ours", "base", "send", "ceiling-pipe", "ours-pipe", "ours-conn2", "ours-tick1",
         "ours-stop0", "ours-small", "ours-4", "ours-1", "ours-2", "naive", "ledger-zlib",
         "ledger-row", "ledger-raw", "ledger-held", "ledger-begun", "ledger-none",
         "ledger-pg-auto", "ledger-pg", "ledger-pg-held")
LABELS = {"ceiling": "ceiling", "ours": "ours", "base": "ours, --baseline",
          "send": "digest send (command)",
          "ceiling-pipe": "ceiling, PIPELINING", "ours-pipe": "ours, PIPELINING",
          "ours-conn2": "ours, 2 connections", "ours-tick1": "  tick per message",
          "ours-stop0": "  stop read per msg", "ours-small": "ours (small)",
          "ours-1": "ours, 1 process", "ours-2": "ours, 2 shards", "ours-4": "ours, 4 shards",
          "naive": "naive",
          "ledger-zlib": "ledger, zlib bytes", "ledger-row": "ledger, bytes in row",
          "ledger-raw": "ledger, spooled bytes",
          "ledger-held": "ledger, spooled, held",
          "ledger-begun": "ledger, begins held too",
          "ledger-none": "ledger, no bytes",
          "ledger-pg-auto": "ledger, PostgreSQL, generic plans",
          "ledger-pg": "ledger, PostgreSQL",
          "ledger-pg-held": "ledger, PostgreSQL, held"}
# run once whatever --repeats says (the secondary rows)
ONCE = frozenset({"ours-tick1", "ours-stop0", "ours-small", "ours-1", "ours-2", "naive"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=2_000)
    ap.add_argument("--naive", type=int, default=300)
    ap.add_argument("--ledger", type=int, default=3_000, help="deliveries per ledger row")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", default=",".join(MODES),
                    help=f"comma-separated rows to run (default all: {','.join(MODES)})")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--baseline", type=Path,
                    help="another checkout whose 'ours' row runs beside ours (row 'base')")
    ap.add_argument("--child", choices=MODES)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.subscribers, args.port, args.naive)
        return
    wanted = [m for m in args.rows.split(",") if m]
    unknown = set(wanted) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))}")
    if args.baseline is None:
        wanted = [m for m in wanted if m != "base"]
    elif "base" not in wanted:
        wanted.insert(wanted.index("ours") + 1 if "ours" in wanted else len(wanted), "base")
    if args.baseline is not None:
        LABELS["base"] = f"ours, --baseline {args.baseline.name}"

    n = args.subscribers
    sinks = {False: spawn(False), True: spawn(True)}
    results: dict[str, list[dict[str, object]]] = {m: [] for m in wanted}
    try:
        for rep in range(args.repeats):
            for mode in wanted:
                if mode in ONCE and rep:
                    continue
                sink, port = sinks[mode.endswith("-pipe")]
                count = args.small if mode == "ours-small" else \
                    args.ledger if mode.startswith("ledger-") else n
                print(f"[{rep + 1}/{args.repeats}] {mode} x {count} ...", file=sys.stderr,
                      flush=True)
                child_mode = "ours" if mode in ("ours-small", "base") else mode
                script = args.baseline / "bench" / "bench_send.py" if mode == "base" \
                    else Path(__file__)
                results[mode].append(run_child(child_mode, count, port, args.naive,
                                               None if mode.startswith("ledger-") else sink.pid,
                                               script=script))
    finally:
        received = 0
        for sink, _port in sinks.values():
            sink.terminate()
            tail = sink.communicate(timeout=30)[0].strip()
            received += int(tail.rsplit(" ", 1)[-1]) if "received" in tail else -10**9
    expected = sum(int(str(r["sent"])) for mode, rs in results.items() for r in rs
                   if not mode.startswith("ledger-"))

    def mmm(values: list[float], fmt: str) -> str:
        values = sorted(values)
        if len(values) == 1:
            return format(values[0], fmt)
        return "/".join(format(v, fmt) for v in (values[0], statistics.median(values),
                                                 values[-1]))

    print(f"\nbench_send: {n:,} subscribers, 81 sample papers, sink = aiosmtpd in its own "
          f"process, 4 connections, {_cpus()} CPUs; min/median/max over {args.repeats} "
          "repeats (one value: run once)\n")
    head = (f"{'path':<23}{'digests':>8}{'wall s':>17}{'msg/s':>19}{'of ceiling':>17}"
            f"{'CPU ms/msg':>17}{'sink ms/msg':>12}{'RSS MB':>8}  note")
    print(head)
    print("-" * len(head))
    for mode in wanted:
        rows = results[mode]
        if mode.startswith("ledger-") or not rows:
            continue
        measured = int(str(rows[0]["measured"]))
        secs = [float(str(r["seconds"])) for r in rows]
        rates = [measured / s for s in secs]
        ceiling = results.get("ceiling-pipe" if mode.endswith("-pipe") else "ceiling") or []
        # each repeat against the ceiling of the same repeat (same sink, same minute)
        ratios = [rate / (int(str(c["measured"])) / float(str(c["seconds"])))
                  for rate, c in zip(rates, ceiling)] if not mode.startswith("ceiling") else []
        cpu = [float(str(r["cpu"])) / measured * 1000 for r in rows]
        sink_cpu = statistics.median(float(str(r["sink_cpu"])) / measured * 1000 for r in rows)
        rss = max(float(str(r["rss_mb"])) for r in rows)
        r0 = rows[0]
        note = ""
        if mode == "naive":
            note = f"first {measured:,}; {n:,} would take ~{n / rates[0]:,.0f} s"
        elif mode.startswith("ceiling"):
            note = f"one pre-built {int(str(r0['bytes'])):,}-byte digest, no ledger"
        else:
            note = f"{r0['sent']} sent, {r0['skipped']} nothing new, {r0['failed']} failed"
        label = LABELS[mode] if mode != "ours-small" else f"ours ({measured:,})"
        print(f"{label:<23}{measured:>8,}{mmm(secs, '.1f'):>17}{mmm(rates, ',.0f'):>19}"
              f"{mmm(ratios, '.2f') if ratios else '':>17}{mmm(cpu, '.2f'):>17}"
              f"{sink_cpu:>12.2f}{rss:>8.0f}  {note}")

    ledger_modes = [m for m in wanted if m.startswith("ledger-")]
    if ledger_modes:
        print(f"\nledger alone, {args.ledger:,} deliveries of a {_sample_size():,}-byte message "
              "(2 reads, begin, mark_sent; one thread):")
        print(f"{'stored message':<30}{'CPU ms/msg':>20}{'wall ms/msg':>20}"
              f"{'ledger MB at the end':>22}{'spool MB':>10}")
        for mode in ledger_modes:
            rows = results[mode]
            cpu = [float(str(r["ledger_cpu"])) / int(str(r["measured"])) * 1000 for r in rows]
            wall = [float(str(r["seconds"])) / int(str(r["measured"])) * 1000 for r in rows]
            size = statistics.median(float(str(r["ledger_mb"])) for r in rows)
            spool = statistics.median(float(str(r["spool_mb"])) for r in rows)
            print(f"{LABELS[mode].removeprefix('ledger, '):<30}{mmm(cpu, '.3f'):>20}"
                  f"{mmm(wall, '.3f'):>20}{size:>22.1f}{spool:>10.1f}")

    if "ours-small" in results and "ours-1" in results:
        big, small = results["ours-1"][0], results["ours-small"][0]
        growth = float(str(big["rss_mb"])) - float(str(small["rss_mb"]))
        config_growth = float(str(big["baseline_mb"])) - float(str(small["baseline_mb"]))
        print(f"\nmemory (one process): peak RSS {float(str(small['rss_mb'])):.1f} MB at "
              f"{args.small:,} vs {float(str(big['rss_mb'])):.1f} MB at {n:,} subscribers "
              f"(+{growth:.1f} MB, of which the generated config itself: "
              f"+{config_growth:.1f} MB)")
    if "ours" in results and "base" in results:
        per = sorted(float(str(a["seconds"])) / float(str(b["seconds"]))
                     for a, b in zip(results["ours"], results["base"]))
        print(f"ours / --baseline wall time, per repeat: {mmm(per, '.3f')} "
              "(below 1: ours is faster)")
    if "ours" in results and "send" in results:
        ours = statistics.median(float(str(r["seconds"])) for r in results["ours"])
        cmd = statistics.median(float(str(r["seconds"])) for r in results["send"])
        print(f"digest send (whole command) / ours, medians: {cmd / ours:.2f} "
              f"(floor: within 1.20)")
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {_cpus()} CPUs (other work competes for "
          "them: compare CPU ms/msg and ratios within a repeat)")
    print(f"sinks received {received:,} messages, clients reported {expected:,} accepted: "
          f"{'OK' if received == expected else 'MISMATCH'}")


def _sample_size() -> int:
    return len(_sample_message().data)


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
