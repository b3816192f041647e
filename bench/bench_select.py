"""Benchmark the selector: 10,000 subscribers x 1,000 papers, next to a naive baseline.

    .venv/bin/python bench/bench_select.py [--subscribers 10000] [--papers 1000] [--naive 40]
                                           [--repeat 3] [--about]

Papers: the 81 seed papers plus every paper in the recorded feed fixtures, repeated with ids
changed (and, for copies without upvotes, seeded random upvotes so ``min_upvotes`` filters
have something to bite on). Subscribers: built with a fixed seed from REAL terms mined from
those titles (1-3-word phrases), the HF ``ai_keywords`` and wildcard stems; popular terms are
drawn more often (Zipf-like), as on a real lab list; topics use include/require/exclude, are
named after their first term (the config's default name) and some subscribers add category or
upvote filters.

Each method runs in its own child process, so its peak RSS is its own. The selector runs with
the shipped vocabulary (as in production), once more without it, and with ``--about`` once
with an ``about`` sentence on every topic (the semantic re-rank). The naive baseline (one
scan of each paper per term, same term language and ranking, no vocabulary) runs on the first
``--naive`` subscribers and is extrapolated to all of them; the table says so. Its picks, and
the index + sort alternative's, are compared with the selector's without the vocabulary:
"agree" must say yes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest.feeds import load_papers
from digest.models import Paper, Selection, Subscriber, Topic  # noqa: E402
from digest.selection import plan
from digest.selection._rank import NO_MATCH, category_matches
from digest.selection._terms import bits, compile_term, normalize, scan
from digest.selection._vocabulary import Vocabulary
from digest.selection._widen import ACRONYM_REPEATS
from digest.text import fold

# Real papers and recorded feeds, from the checkout (tests/fixtures: provenance in its README).
FIXTURES = ROOT / "tests" / "fixtures"
STOP = set("a an and are as at be by for from how in is it its of on or the to via with we "
           "our new not no do does your you can all more less up using use".split())


# --------------------------------------------------------------------------- inputs


def real_papers() -> list[Paper]:
    raw = json.loads((FIXTURES / "seed_papers.json").read_text(encoding="utf-8"))
    papers = [Paper(id=f"seed-{i:02d}", title=p["title"], abstract=p["abstract"])
              for i, p in enumerate(raw)]
    for path in sorted((FIXTURES / "recorded").iterdir()):
        if path.suffix in (".json", ".xml"):
            try:
                papers.extend(load_papers(path))
            except Exception:  # the recorded error payloads are meant to fail
                continue
    return papers


def bench_papers(n: int) -> tuple[Paper, ...]:
    base = real_papers()
    rng = random.Random(1)
    out = []
    for k in range(n):
        p = base[k % len(base)]
        copy = k // len(base)
        votes = p.upvotes if p.upvotes is not None else rng.randrange(0, 120)
        out.append(replace(p, id=f"{p.id}~{copy}" if copy else p.id, upvotes=votes))
    return tuple(out)


def real_terms(papers: list[Paper]) -> list[str]:
    """Phrases a person would subscribe to, mined from real titles and HF keywords."""
    terms: dict[str, None] = {}
    for item in json.loads((FIXTURES / "recorded" / "hf_daily_papers.json").read_text()):
        for kw in item["paper"].get("ai_keywords") or []:
            terms[kw] = None
    for p in papers:
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9-]+", p.title)]
        for size in (1, 2, 3):
            for i in range(len(words) - size + 1):
                gram = words[i:i + size]
                if gram[0].lower() in STOP or gram[-1].lower() in STOP or len(gram[-1]) < 3:
                    continue
                terms[" ".join(gram)] = None
        for w in words:
            if len(w) > 7 and "-" not in w:
                terms[w[:6].lower() + "*"] = None
    return list(terms)


def bench_subscribers(n: int, terms: list[str]) -> list[Subscriber]:
    rng = random.Random(7)
    weights = [1 / (1 + i) ** 0.8 for i in range(len(terms))]
    shuffled = terms[:]
    rng.shuffle(shuffled)

    def pick() -> str:
        return rng.choices(shuffled, weights)[0]

    subs = []
    for i in range(n):
        topics = []
        for _t in range(rng.choice((1, 1, 2, 2, 3, 4))):
            include = tuple(dict.fromkeys(pick() for _ in range(rng.choice((1, 1, 2, 3)))))
            require = (pick(),) if rng.random() < 0.15 else ()
            exclude = (pick(),) if rng.random() < 0.3 else ()
            topics.append(Topic(name=include[0], include=include,
                                require=require, exclude=exclude))
        extra: dict[str, object] = {}
        if rng.random() < 0.05:
            extra["categories"] = (rng.choice(("cs", "cs.LG", "cs.CV", "stat.*")),)
        if rng.random() < 0.05:
            extra["min_upvotes"] = rng.randrange(1, 60)
        subs.append(Subscriber(email=f"user{i}@lab.example", name=None, timezone="UTC",
                               schedule="0 7 * * *", max_papers=rng.randrange(5, 16),
                               topics=tuple(topics), **extra))  # type: ignore[arg-type]
    return subs


# --------------------------------------------------------------------------- naive baseline


def naive_plan(papers: tuple[Paper, ...], subscribers: list[Subscriber]
               ) -> list[tuple[list[str], list[str]]]:
    """One regex search per (term, paper): the obvious implementation, same rules."""
    texts = [(normalize(p.title), normalize(p.abstract)) for p in papers]
    out = []
    for s in subscribers:
        scored = []
        for i, p in enumerate(papers):
            if not _naive_meta(p, s.categories, s.authors, s.min_upvotes):
                continue
            title, abstract = texts[i]
            hits: dict[tuple[tuple[str, ...], bool], tuple[bool, int]] = {}
            matched = False
            for topic in s.topics:
                if not _naive_meta(p, topic.categories, topic.authors, topic.min_upvotes):
                    continue
                found = {}
                for raw in topic.include + topic.require + topic.exclude:
                    term = compile_term(raw)
                    in_title = bool(scan(term, title))
                    count = scan(term, abstract)
                    if term.mode == "acronym" and len(term.words) == 1:
                        count = min(count, ACRONYM_REPEATS)
                    found[raw] = (term.key, in_title, count)
                def ok(raw: str) -> bool:
                    return found[raw][1] or found[raw][2] > 0
                if topic.include and not any(ok(t) for t in topic.include):
                    continue
                if not all(ok(t) for t in topic.require) or any(ok(t) for t in topic.exclude):
                    continue
                own = {found[r][0]: found[r][1:] for r in topic.include + topic.require if ok(r)}
                if not topic.passing_mentions and list(own.values()) == [(False, 1)]:
                    continue  # one mention of one term in the abstract: in passing
                matched = True
                for raw in topic.include + topic.require:
                    key, in_title, count = found[raw]
                    if (in_title or count) and key not in hits:
                        hits[key] = (in_title, count)
            if matched:
                t = sum(1 for a, _ in hits.values() if a)
                score = min(t, 999) * 1e6 + min(len(hits), 999) * 1e3 + min(
                    sum(c for _, c in hits.values()), 999)
                scored.append((-score, -(p.upvotes or 0), p.id))
        scored.sort()
        ranked = [pid for _s, _u, pid in scored]
        out.append((ranked[:s.max_papers], ranked[s.max_papers:]))
    return out


def index_sort_plan(papers: tuple[Paper, ...], subscribers: list[Subscriber]
                    ) -> list[tuple[list[str], list[str]]]:
    """The plain alternative to the selector's tiers: the same inverted index (one lookup per
    term, cached), then per subscriber every matched paper scored and the list sorted."""
    from digest.selection._terms import PaperIndex

    index = PaperIndex(papers)
    hits_of: dict[str, Any] = {}

    def hits(raw: str) -> Any:
        found = hits_of.get(raw)
        if found is None:
            found = hits_of[raw] = index.hits(compile_term(raw))
        return found

    out = []
    for s in subscribers:
        per_paper: dict[int, dict[tuple[tuple[str, ...], bool], tuple[bool, int]]] = {}
        for topic in s.topics:
            include = [hits(t) for t in topic.include]
            mask = 0
            for h in include:
                mask |= h.anywhere
            if not topic.include:
                mask = (1 << len(papers)) - 1
            for t in topic.require:
                mask &= hits(t).anywhere
            for t in topic.exclude:
                mask &= ~hits(t).anywhere
            for i in bits(mask):
                p = papers[i]
                if not (_naive_meta(p, s.categories, s.authors, s.min_upvotes)
                        and _naive_meta(p, topic.categories, topic.authors, topic.min_upvotes)):
                    continue
                own: dict[Any, tuple[bool, int]] = {}
                for r in topic.include + topic.require:
                    h = hits(r).papers.get(i)
                    if h is not None:
                        own.setdefault(compile_term(r).key, h)
                if not topic.passing_mentions and list(own.values()) == [(False, 1)]:
                    continue  # one mention of one term in the abstract: in passing
                found = per_paper.setdefault(i, {})
                for raw in topic.include + topic.require:
                    h = hits(raw)
                    where = h.papers.get(i)
                    term = compile_term(raw)
                    if where is not None and term.mode == "acronym" and len(term.words) == 1:
                        where = (where[0], min(where[1], ACRONYM_REPEATS))
                    if where is not None and term.key not in found:
                        found[term.key] = where
        scored = []
        for i, found in per_paper.items():
            t = sum(1 for a, _ in found.values() if a)
            score = min(t, 999) * 1e6 + min(len(found), 999) * 1e3 + min(
                sum(c for _, c in found.values()), 999)
            scored.append((-score, -(papers[i].upvotes or 0), papers[i].id))
        scored.sort()
        ranked = [pid for _s, _u, pid in scored]
        out.append((ranked[:s.max_papers], ranked[s.max_papers:]))
    return out


def _naive_meta(p: Paper, categories: tuple[str, ...], authors: tuple[str, ...],
                min_upvotes: int | None) -> bool:
    if categories and not any(category_matches(w, c) for w in categories for c in p.categories):
        return False
    if authors and not any(fold(w) in fold(a) for w in authors for a in p.authors):
        return False
    return min_upvotes is None or (p.upvotes or 0) >= min_upvotes


# --------------------------------------------------------------------------- measuring


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def child(method: str, n_subs: int, n_papers: int, n_naive: int, repeat: int
          ) -> dict[str, Any]:
    papers = bench_papers(n_papers)
    terms = real_terms(list(papers[:200]))
    subs = bench_subscribers(n_subs, terms)
    before = _rss_kb()
    if method in ("plain", "about"):
        if method == "about":  # every topic with an `about` sentence: the semantic re-rank
            subs = [replace(s, topics=tuple(replace(t, about=f"I work on {t.name} and "
                                                    f"{t.include[-1]}.") for t in s.topics))
                    for s in subs]
        vocabulary = Vocabulary([]) if method == "plain" else None
        seconds = cpu_seconds = float("inf")
        for _ in range(repeat):
            start, cpu = time.perf_counter(), time.process_time()
            plan(papers, subs, {}, vocabulary=vocabulary)
            seconds = min(seconds, time.perf_counter() - start)
            cpu_seconds = min(cpu_seconds, time.process_time() - cpu)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"seconds": seconds, "cpu": cpu_seconds, "peak_kb": peak,
                "delta_kb": max(peak - before, 0), "result": [], "terms": len(terms),
                "papers": len(papers)}
    if method == "selector":
        from digest.selection import Selector

        # Best of `repeat` runs (as timeit does): the 2 CPUs are shared, a slower run measures
        # the neighbours. Peak RSS is the first run's (later ones reuse its freed memory).
        seconds = cpu_seconds = float("inf")
        plan_peak = 0
        for _ in range(repeat):
            selections: tuple[Selection, ...] = ()  # the last run's go first
            start, cpu = time.perf_counter(), time.process_time()
            selections = plan(papers, subs, {})
            seconds = min(seconds, time.perf_counter() - start)
            cpu_seconds = min(cpu_seconds, time.process_time() - cpu)
            plan_peak = plan_peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        extra: dict[str, Any] = {
            "picks": sum(len(s.picks) for s in selections),
            "cut": sum(s.more for s in selections),  # counted, not built
            "skipped": sum(1 for s in selections if s.skipped_reason == NO_MATCH)}
        del selections
        start, cpu = time.perf_counter(), time.process_time()
        selections = plan(papers, subs, {}, build_cuts=True)
        extra["built_cpu"] = time.process_time() - cpu
        extra["built_wall"] = time.perf_counter() - start
        extra["built_peak_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        extra["built_delta_kb"] = max(extra["built_peak_kb"] - before, 0)
        assert sum(len(s.cut) for s in selections) == extra["cut"]
        del selections
        # The baselines know the term language, not the field's vocabulary: compare them
        # with the selector without it.
        selections = plan(papers, subs, {}, build_cuts=True, vocabulary=Vocabulary([]))
        result = [([p.paper.id for p in s.picks], [p.paper.id for p in s.cut])
                  for s in selections[:n_naive]]
        full = [([p.paper.id for p in s.picks], [p.paper.id for p in s.cut]) for s in selections]
        del selections
        # The plain alternative: the same index, then score and sort every match.
        gc.disable()
        start, cpu = time.perf_counter(), time.process_time()
        plain = index_sort_plan(papers, subs)
        extra["sort_cpu"] = time.process_time() - cpu
        extra["sort_wall"] = time.perf_counter() - start
        gc.enable()
        extra["sort_agrees"] = plain == full
        del plain, full
        # The index alone, measured after the plan so its garbage cannot inflate plan's peak,
        # with the collector paused as plan() pauses it.
        gc.disable()
        start, cpu = time.perf_counter(), time.process_time()
        Selector(papers)
        extra["index"] = time.process_time() - cpu
        extra["index_wall"] = time.perf_counter() - start
        # The bench repeats 250 distinct texts; a real feed does not, and the index folds
        # (cleans LaTeX in) each distinct text once: measure that case too.
        distinct = [replace(p, abstract=f"{p.abstract} (copy {k})") for k, p in enumerate(papers)]
        start, cpu = time.perf_counter(), time.process_time()
        Selector(distinct)
        extra["index_distinct"] = time.process_time() - cpu
        extra["index_distinct_wall"] = time.perf_counter() - start
        gc.enable()
        del distinct
        peak = plan_peak
    else:
        start, cpu = time.perf_counter(), time.process_time()
        result = naive_plan(papers, subs[:n_naive])
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        extra = {}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "cpu": cpu_seconds, "peak_kb": peak,
            "delta_kb": max(peak - before, 0), "result": result, "terms": len(terms),
            "papers": len(papers), **extra}


def run_child(method: str, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, "--subscribers", str(args.subscribers),
         "--papers", str(args.papers), "--naive", str(args.naive),
         "--repeat", str(args.repeat)],
        check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--papers", type=int, default=1_000)
    ap.add_argument("--naive", type=int, default=40, help="subscribers the naive baseline runs")
    ap.add_argument("--repeat", type=int, default=3, help="plan runs; the best is shown")
    ap.add_argument("--about", action="store_true",
                    help="also time a plan with `about` on every topic (the semantic layer)")
    ap.add_argument("--child", choices=("selector", "plain", "about", "naive"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.subscribers, args.papers, args.naive,
                               args.repeat)))
        return
    fast = run_child("selector", args)
    naive = run_child("naive", args)
    pairs = args.subscribers * args.papers
    plain = run_child("plain", args)
    about = run_child("about", args) if args.about else None
    agree = fast["result"] == naive["result"]
    print(f"{args.subscribers:,} subscribers x {fast['papers']:,} papers "
          f"({fast['terms']:,} distinct real terms to draw from), "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    scale = args.subscribers / args.naive
    rows = [
        ("selector.plan (index + all subscribers)", fast["seconds"], fast["cpu"],
         fast["peak_kb"], fast["delta_kb"], "cuts lazy: counted, not built (a send)"),
        ("  of which: build the index (fold+tokenize)", fast["index_wall"], fast["index"],
         None, None, "measured once more, alone"),
        ("  index when no text repeats (a real feed)", fast["index_distinct_wall"],
         fast["index_distinct"], None, None, "every abstract distinct: folded 1,000 times"),
        ("selector.plan(build_cuts=True)", fast["built_wall"], fast["built_cpu"],
         fast["built_peak_kb"], fast["built_delta_kb"],
         f"every cut built ({fast['cut']:,} cut picks; digest plan)"),
        ("index + sort (no tiers), ids only", fast["sort_wall"], fast["sort_cpu"], None, None,
         "same index; every match scored, sorted; "
         + ("agrees with build_cuts" if fast["sort_agrees"] else "DISAGREES")),
        ("selector.plan without the vocabulary", plain["seconds"], plain["cpu"],
         plain["peak_kb"], plain["delta_kb"], "word forms only (what the baselines know)"),
        *([("selector.plan, `about` on every topic", about["seconds"], about["cpu"],
            about["peak_kb"], about["delta_kb"], "BM25 + embeddings re-rank; papers embedded once")]
          if about else []),
        ("naive: one scan per (term, paper)", float(naive["seconds"]) * scale,
         float(naive["cpu"]) * scale, naive["peak_kb"], naive["delta_kb"],
         f"ran {args.naive:,} subscribers ({float(naive['seconds']):.1f} s), extrapolated "
         f"x{scale:.0f}"),
    ]
    head = (f"{'method':<44} | {'wall s':>8} | {'cpu s':>7} | {'pairs/s (cpu)':>13} | "
            f"{'peak RSS':>8} | {'+RSS':>7} | note")
    print(head)
    print("-" * len(head))
    for name, wall, cpu, peak, delta, note in rows:
        rate = f"{pairs / float(cpu):,.0f}" if name[0] in "sni" else ""
        mem = f"{int(peak) / 1024:.0f} MB" if peak is not None else ""
        dmem = f"{int(delta) / 1024:.0f} MB" if delta is not None else ""
        print(f"{name:<44} | {float(wall):>8.2f} | {float(cpu):>7.2f} | {rate:>13} | {mem:>8} | "
              f"{dmem:>7} | {note}")
    naive_cpu = float(naive["cpu"]) * scale
    print(f"\nspeed-up vs naive (cpu): x{naive_cpu / float(fast['cpu']):.0f}   "
          f"picks: {fast['picks']:,}  cut: {fast['cut']:,}  subscribers with no match: "
          f"{fast['skipped']:,}\nnaive and selector agree on the first {args.naive:,} "
          f"subscribers' picks and cuts: {'yes' if agree else 'NO'}\n"
          f"(wall > cpu means other processes shared the 2 CPUs: load average "
          f"{os.getloadavg()[0]:.1f})")
    if not agree or not fast["sort_agrees"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
