"""Benchmark peak memory of ``digest send`` from a YAML file, per process, as the subscriber
list grows: is it flat? Beside the same command run on a baseline checkout, in the same run.

    .venv/bin/python bench/bench_memory.py [--sizes 1000,10000,30000,100000] [--repeats 1]
                                           [--baseline main]

For each size a subscribers file is written (bench_send.py's generator: 1-3 topics of real terms
from the bundled sample papers, five time zones, ``schedule: "0 7 * * *"``, SMTP with 4
connections, ``feed: sample``), then ``python -m digest send --config FILE --now <07:00 UTC>``
runs into one aiosmtpd sink in its own process (tests/smtp_server.py), once with this checkout
on PYTHONPATH ("ours") and once with ``--baseline`` (a git ref, checked out as a detached
worktree in a temp dir for the run; a path to a checkout also works), alternating, each in a
fresh folder (a new ledger). While it runs, the bench reads ``VmHWM`` (the kernel's peak RSS)
from ``/proc/<pid>/status`` of the command and of every process under it every 20 ms, and
keeps each one's last reading (and its CPU time): the parent, each send shard (from 5,000 subscribers on 2+ CPUs
the send is split over one spawned shard per CPU), and multiprocessing's resource tracker
(tiny, not a shard, shown apart).

The floor (issue 16): every process's peak at each size within 10% of the 1k parent's figure
(the same code) plus the size of the config file. Prints the wall time and peaks as
min/median/max over ``--repeats`` (100k takes minutes per run: one repeat is the default), in
MB to one decimal, and the margin: how far the biggest peak stays under that limit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

DUE = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # a Wednesday
POLL_SECONDS = 0.02


def write_yaml(path: Path, n: int, port: int) -> None:
    """``n`` subscribers in ``path``; settings first (the order the example file uses)."""
    from bench_send import subscribers

    with path.open("w", encoding="utf-8") as out:
        out.write("\n".join([
            "settings:", '  sender: "Paper Digest <digest@example.org>"',
            "  database: digest.db", "  delivery: smtp",
            (f"  smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 30, "
             "connections: 4}"), "  feed: {source: sample}", "subscribers:"]) + "\n")
        for sub in subscribers(n):
            lines = [f"  - email: {sub.email}", f"    name: {sub.name}",
                     f"    timezone: {sub.timezone}", '    schedule: "0 7 * * *"',
                     f"    max_papers: {sub.max_papers}", "    topics:"]
            for topic in sub.topics:
                terms = ", ".join(json.dumps(t) for t in topic.include)
                lines += [f"      - name: {topic.name}", f"        include: [{terms}]"]
            out.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- sampling


def _status_kb(pid: int, name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{name}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _kind(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    if "resource_tracker" in cmd:
        return "tracker"
    return "shard" if "spawn_main" in cmd else "other"


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SETTLED = ("parent", "shard", "tracker")


@dataclass
class Peaks:
    """The last ``VmHWM`` read of each process of one command, by pid."""

    parent: int
    kb: dict[int, int] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)  # the last read of each, seconds

    def sample(self) -> None:
        todo = [self.parent]
        while todo:
            pid = todo.pop()
            hwm = _status_kb(pid, "VmHWM")
            if hwm is None:
                continue
            # A child caught between fork and exec still shows the parent's command line:
            # asked again until it reads as a shard or the tracker (counted once it does).
            # Its readings from before the exec are the parent's memory, so they are dropped.
            if self.kinds.get(pid) not in _SETTLED:
                self.kinds[pid] = "parent" if pid == self.parent else _kind(pid)
                if self.kinds[pid] in _SETTLED:
                    self.kb.pop(pid, None)
            self.kb[pid] = max(self.kb.get(pid, 0), hwm)
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), _cpu_seconds(pid))
            todo += _children(pid)

    def of(self, kind: str) -> list[float]:
        return [kb / 1024 for pid, kb in sorted(self.kb.items()) if self.kinds[pid] == kind]


def run_send(code: Path, yaml: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    env.pop("DIGEST_CONFIG", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "digest", "send", "--config", str(yaml),
                             "--now", DUE.isoformat()], cwd=yaml.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = Peaks(proc.pid)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.communicate()), daemon=True)
    reader.start()
    while proc.poll() is None:
        peaks.sample()
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - t0
    reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"digest send ({code}) failed:\n{out[0]}\n{out[1]}")
    sent = re.search(r"│ sent\s*│\s*(\d+)", out[0]) or re.search(r"\bsent\s+(\d+)", out[0])
    return {"seconds": seconds, "cpu": sum(peaks.cpu.values()),
            "parent": peaks.of("parent")[0], "shards": peaks.of("shard"),
            "tracker": peaks.of("tracker"), "sent": int(sent.group(1)) if sent else -1}


# --------------------------------------------------------------------------- the table


def _mmm(values: list[float], fmt: str = "{:.0f}") -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def baseline_checkout(ref: str, into: Path) -> Path:
    if Path(ref).is_dir():
        return Path(ref)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), ref],
                   check=True, capture_output=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,30000,100000")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline", default="main",
                        help="a git ref (or a checkout's path) to run as the baseline")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from smtp_server import spawn_sink

    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    base_dir = work / "baseline"
    base = baseline_checkout(args.baseline, base_dir)
    head = subprocess.run(["git", "-C", str(base), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    ours_head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True).stdout.strip()
    codes = {"baseline": base, "ours": ROOT}
    sink, port = spawn_sink()
    results: dict[tuple[str, int], list[dict[str, object]]] = {}
    files: dict[int, float] = {}
    try:
        for n in sizes:
            source = work / f"subscribers-{n}.yaml"
            write_yaml(source, n, port)
            files[n] = source.stat().st_size / 2**20
            for repeat in range(args.repeats):
                for name, code in codes.items():
                    run_dir = work / f"{name}-{n}-{repeat}"
                    run_dir.mkdir()
                    yaml = run_dir / "subscribers.yaml"
                    shutil.copyfile(source, yaml)
                    result = run_send(code, yaml)
                    results.setdefault((name, n), []).append(result)
                    print(f"  {name:8} {n:>7,}: {result['seconds']:.1f} s, "
                          f"{result['cpu']:.1f} CPU s, parent "
                          f"{result['parent']:.1f} MB, shards "
                          f"{', '.join(f'{s:.1f}' for s in result['shards']) or '-'} MB, "  # type: ignore[attr-defined]
                          f"sent {result['sent']}", file=sys.stderr, flush=True)
                    shutil.rmtree(run_dir)
    finally:
        sink.terminate()
        sink.communicate(timeout=30)
        if base == base_dir:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(base_dir)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nbench_memory: digest send --config FILE into an aiosmtpd sink, peak RSS (VmHWM) "
          f"per process, MB; {args.repeats} repeat(s) (min/median/max when more); "
          f"ours = {ours_head}, baseline = {args.baseline} ({head}); {_cpus()} CPUs")
    print(f"{'code':<9}{'subscribers':>12}{'file MB':>9}{'wall s':>16}{'CPU s':>16}"
          f"{'parent MB':>16}"
          f"{'shards':>7}{'biggest shard MB':>18}{'limit MB':>10}{'margin MB':>11}  flat?")
    first = min(sizes)
    for name in codes:
        one_k = statistics.median(float(r["parent"]) for r in results[(name, first)])  # type: ignore[arg-type]
        for n in sizes:
            rows = results[(name, n)]
            parents = [float(r["parent"]) for r in rows]  # type: ignore[arg-type]
            shards = [max(r["shards"]) for r in rows if r["shards"]]  # type: ignore[type-var,arg-type]
            count = max(len(r["shards"]) for r in rows)  # type: ignore[arg-type]
            limit = 1.10 * one_k + files[n]
            flat = all(p <= limit for p in parents + shards)
            margin = limit - max(parents + shards)
            print(f"{name:<9}{n:>12,}{files[n]:>9.1f}"
                  f"{_mmm([float(r['seconds']) for r in rows], '{:.1f}'):>16}"  # type: ignore[arg-type]
                  f"{_mmm([float(r['cpu']) for r in rows], '{:.1f}'):>16}"  # type: ignore[arg-type]
                  f"{_mmm(parents, '{:.1f}'):>16}{count:>7}{_mmm(shards, '{:.1f}'):>18}"
                  f"{limit:>10.1f}{margin:>11.1f}  {'yes' if flat else 'NO'}")
    print(f"limit = 1.10 x the {first:,} parent's median + the file's size; margin = the limit "
          "less the biggest peak of any process at that size (the worst repeat); CPU s = user + "
          "system of every process of the command (the sink's not); the resource tracker "
          "(multiprocessing's, not a shard) is left out of the peaks.")


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
