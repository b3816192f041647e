"""How well selection picks what researchers want: precision and recall on a labelled set.

    .venv/bin/python bench/bench_relevance.py [--data DIR] [--no-about] [--only KEY ...]
                                              [--baseline GITREF]

The set (``../shared/data/relevance_dev/``, its README says how it was made): 12 first-try
subscriber profiles (``subscribers.yaml``) over a 734-paper pool (``pool.json``), every paper
labelled per profile R (wanted), B (borderline) or neither (``labels.json``, with a one-line
"I work on ..." description per profile). For each profile, what ``plan`` picks (at most its
``max_papers``) is scored:

- P(R), P(R+B): the share of picks labelled R, or R or B;
- top-8 P(R+B): the same over the first 8 picks (what an email shows first);
- recall R: the share of the R papers that were picked.

Each profile runs twice: as written, and with its description as every topic's ``about``
(the semantic re-rank). Overall rows pool the picks of all profiles (micro average).
``--baseline REF`` first runs this same script on the code of a git ref (``git archive`` into
a temporary folder; a ref without ``about`` gets only the first run), so one command prints
the before and after tables. The labels are for measuring only: nothing in digest/ is tuned
to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest.config import load_config  # noqa: E402
from digest.feeds import load_papers  # noqa: E402
from digest.models import Selection, Subscriber  # noqa: E402
from digest.selection import plan  # noqa: E402

DATA = Path(os.environ.get("DIGEST_DATA", ROOT.parent / "shared" / "data"))


def with_about(subscriber: Subscriber, about: str) -> Subscriber:
    return replace(subscriber, topics=tuple(replace(t, about=about) for t in subscriber.topics))


def score(selection: Selection, labels: dict[str, list[str]]) -> dict[str, float]:
    relevant, borderline = set(labels["R"]), set(labels["B"])
    picked = [p.paper.id for p in selection.picks]
    # the "you may also like" extras count as picks: the subscriber gets them too
    extra = [p.paper.id for p in getattr(selection, "also", ())]
    got = picked + [e for e in extra if e not in picked]
    r = sum(1 for i in got if i in relevant)
    rb = sum(1 for i in got if i in relevant or i in borderline)
    top = picked[:8]
    return {"picked": len(got), "R": r, "RB": rb, "top": len(top),
            "topRB": sum(1 for i in top if i in relevant or i in borderline),
            "relevant": len(relevant), "extra": len(extra)}


def row(name: str, s: dict[str, float]) -> str:
    def pct(a: float, b: float) -> str:
        return f"{100 * a / b:5.0f}%" if b else "    -"
    return (f"{name:<12} | {int(s['picked']):>6} | {pct(s['R'], s['picked'])} | "
            f"{pct(s['RB'], s['picked'])} | {pct(s['topRB'], s['top'])} | "
            f"{pct(s['R'], s['relevant'])} | {int(s['extra']):>5}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA / "relevance_dev")
    ap.add_argument("--no-about", action="store_true", help="skip the run with `about`")
    ap.add_argument("--only", nargs="*", help="profile keys to run")
    ap.add_argument("--baseline", metavar="GITREF", help="also run the code of this git ref")
    args = ap.parse_args()
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            (Path(tmp) / "bench").mkdir(exist_ok=True)
            (Path(tmp) / "bench" / "bench_relevance.py").write_bytes(Path(__file__).read_bytes())
            rest = [a for a in sys.argv[1:] if a not in ("--baseline", args.baseline)]
            print(f"# before: {args.baseline}\n", flush=True)
            subprocess.run([sys.executable, str(Path(tmp) / "bench" / "bench_relevance.py"),
                            *rest], check=True, env={**os.environ, "PYTHONPATH": tmp,
                                                     "DIGEST_DATA": str(DATA)})
            print("# after: this checkout\n", flush=True)
    config = load_config(args.data / "subscribers.yaml")
    papers = load_papers(args.data / "pool.json")
    labels = json.loads((args.data / "labels.json").read_text(encoding="utf-8"))
    subscribers = [s for s in config.subscribers
                   if not args.only or s.email.split("@")[0] in args.only]
    runs = [("as written", subscribers)]
    has_about = "about" in {f.name for f in dataclasses.fields(subscribers[0].topics[0])}
    if not args.no_about and has_about:
        runs.append(("with about", [with_about(s, labels[s.email.split("@")[0]]["desc"])
                                    for s in subscribers]))
    print(f"{len(papers)} papers, {len(subscribers)} profiles ({args.data})\n")
    head = (f"{'profile':<12} | {'picked':>6} | {'P(R)':>6} | {'P(R+B)':>6} | {'top-8':>6} | "
            f"{'rec R':>6} | {'extra':>5}")
    for name, subs in runs:
        start = time.perf_counter()
        selections = plan(papers, subs, {}, build_cuts=False)
        seconds = time.perf_counter() - start
        print(f"## {name} ({seconds:.1f} s)\n")
        print(head)
        print("-" * len(head))
        total: dict[str, float] = {}
        for selection in selections:
            key = selection.subscriber.email.split("@")[0]
            s = score(selection, labels[key])
            for k, v in s.items():
                total[k] = total.get(k, 0) + v
            print(row(key, s))
        print("-" * len(head))
        print(row("overall", total))
        print()


if __name__ == "__main__":
    main()
