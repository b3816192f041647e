"""Benchmark reading and checking the subscribers YAML the way ``digest send`` does
(``config.open_config``), beside another checkout's code in the same run.

    .venv/bin/python bench/bench_config.py [--sizes 1000,10000,30000] [--repeats 5]
                                           [--baseline DIR]

For each size, bench_daemon.py's ``write_yaml`` writes the subscribers file (settings first,
then N subscribers of bench_send.py's generator: 1-3 topics of real terms, UTC, ``"0 7 * * *"``,
SMTP with 4 connections, ``feed: sample``). Each repeat runs, in a fresh interpreter per row
(nothing warm: the term and domain memos start empty, as in a ``digest send``), this
checkout's code ("ours") and, with ``--baseline``, the code of another checkout ("base", e.g.
``git worktree add /tmp/base main``) right after it on the same file, so the two share the
same minutes of a busy machine. Columns, min/median/max over the repeats:
- import s: ``import digest.config`` (PyYAML, email-validator, the models, cron);
- load s: ``open_config``'s block entered: the file read, parsed, every subscriber checked and
  (past 256 KB) spilled to its temporary file; CPU s the same in CPU time;
- read back s: one pass over ``config.subscribers`` (what a send's count and shards do);
- peak RSS MB: the child's ``ru_maxrss`` (the interpreter and its imports included);
- load vs base: ours / base within each repeat (the ratio is what to read, absolute figures
  drift with the machine's load).
Run it under ``nice -n -15`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from digest.config import open_config
t1 = time.perf_counter()
from pathlib import Path
c0 = time.process_time()
t2 = time.perf_counter()
with open_config(Path(sys.argv[1]), environ={}) as config:
    t3, c1 = time.perf_counter(), time.process_time()
    count = sum(1 for _ in config.subscribers)
    t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t3 - t2, "cpu": c1 - c0, "read": t4 - t3,
                  "count": count, "kind": type(config.subscribers).__name__,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(code: Path, yaml: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(yaml)], cwd=yaml.parent, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"open_config failed ({code}):\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def mmm(values: list[float], fmt: str) -> str:
    values = sorted(values)
    return "/".join(format(v, fmt) for v in (values[0], statistics.median(values), values[-1]))


def main() -> None:
    from bench_daemon import write_yaml

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,30000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another checkout, run beside ours")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    codes = {"ours": ROOT}
    if args.baseline is not None:
        codes["base"] = args.baseline.resolve()
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-config-") as tmp:
        files = {}
        for n in sizes:
            files[n] = Path(tmp) / f"subscribers-{n}.yaml"
            write_yaml(files[n], n, 2525)
        for rep in range(args.repeats):
            for n in sizes:
                for label, code in codes.items():
                    print(f"[{rep + 1}/{args.repeats}] {label} x {n:,} ...", file=sys.stderr,
                          flush=True)
                    found = run_child(code, files[n])
                    if found["count"] != n:
                        raise SystemExit(f"{label} read {found['count']} of {n} subscribers")
                    results.setdefault((n, label), []).append(found)
        megabytes = {n: files[n].stat().st_size / 2**20 for n in sizes}

    print(f"\nbench_config: open_config on bench_daemon.py's subscribers file, a fresh process "
          f"per row and repeat; min/median/max over {args.repeats} repeats\n")
    head = (f"{'subscribers':>11}  {'code':<5}{'file MB':>8}{'import s':>20}{'load s':>20}"
            f"{'CPU s':>20}{'read back s':>20}{'peak RSS MB':>14}{'load vs base':>17}")
    print(head)
    print("-" * len(head))
    for n in sizes:
        for label in codes:
            rows = results[(n, label)]
            ratio = ""
            if label == "ours" and "base" in codes:
                ratio = mmm([r["load"] / b["load"] for r, b in zip(rows, results[(n, "base")])],
                            ".2f")
            print(f"{n:>11,}  {label:<5}{megabytes[n]:>8.1f}"
                  f"{mmm([r['import'] for r in rows], '.3f'):>20}"
                  f"{mmm([r['load'] for r in rows], '.3f'):>20}"
                  f"{mmm([r['cpu'] for r in rows], '.3f'):>20}"
                  f"{mmm([r['read'] for r in rows], '.3f'):>20}"
                  f"{mmm([r['rss_mb'] for r in rows], '.0f'):>14}{ratio:>17}")
    kinds = {label: results[(sizes[-1], label)][0]["kind"] for label in codes}
    print(f"\nat {sizes[-1]:,} the subscribers came as: "
          + ", ".join(f"{label} {kind}" for label, kind in kinds.items()))


if __name__ == "__main__":
    main()
