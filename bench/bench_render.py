"""Rendering speed: 1,000 personalized digests, naive (Jinja + MJML compile per email) vs the
compile-once fast path, side by side; bytes per email; MIME build time.

    .venv/bin/python bench/bench_render.py [--emails 1000] [--repeat 5]

Digests are built by the real stages (seed papers, selector, summarizer) for subscribers with
random topics, names and 1-10 papers. Both paths are checked to give identical emails.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from digest.compose import build_digest, summarize_all
from digest.models import Digest, Settings, Subscriber, Topic
from digest.render import Renderer
from digest.render._renderer import context
from digest.selection import plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sample_digests import varied_papers  # noqa: E402  (shared with the renderer tests)

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
TERMS = ["quantization", "language model", "diffusion", "reinforcement learning", "agent",
         "vision", "benchmark", "attention", "graph", "speech", "retrieval", "reasoning",
         "mixture of experts", "segmentation", "zero-shot", "distillation"]


def digests(count: int, seed: int = 1) -> list[Digest]:
    rnd = random.Random(seed)
    papers = varied_papers(rnd)
    subs = [Subscriber(
        email=f"user{i}@example.org", name=rnd.choice([None, "Ada", "Grace Hopper", "Zoë"]),
        timezone="UTC", schedule="0 7 * * *", max_papers=rnd.randint(1, 10),
        topics=tuple(Topic(name=t.title(), include=(t,)) for t in rnd.sample(TERMS, 3)))
        for i in range(count)]
    summaries = summarize_all(papers, 350)
    settings = Settings(sender="Paper Digest <digest@example.org>")
    out = []
    for i, sel in enumerate(plan(papers, subs, {})):
        d = build_digest(sel, summaries, NOW.date(), NOW, settings)
        if i % 4 == 0:
            d = dataclasses.replace(d, unsubscribe_url=f"https://example.org/u/{i}")
        out.append(d)
    return [d for d in out if d.items]


def timed(run: Callable[[], object]) -> float:
    """One timed run with the garbage collector paused (as ``timeit`` does): the lists of
    results kept alive here would otherwise make collection pauses dominate."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def best_pair(repeat: int, a: Callable[[], object], b: Callable[[], object]) -> tuple[float, float]:
    """Best time of each, runs interleaved (a b a b ...) so load from other processes hits
    both sides alike."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(timed(a))
        tb.append(timed(b))
    return min(ta), min(tb)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--emails", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    ds = digests(args.emails)
    n = len(ds)
    ctxs = [context(d) for d in ds]

    naive, fast = Renderer(fast=False), Renderer()
    # correctness first: the fast path must give the very same emails
    mismatches = sum(naive.render(d) != fast.render(d) for d in ds)
    cold = Renderer()
    cold_time = timed(lambda: [cold.render(d) for d in ds])  # includes every MJML compile

    rows: list[tuple[str, float, float]] = []
    rows.append(("HTML only (Jinja MJML + compile)", *best_pair(
        args.repeat, lambda: [naive.html(c) for c in ctxs], lambda: [fast.html(c) for c in ctxs])))
    t_naive, t_fast = best_pair(args.repeat, lambda: [naive.render(d) for d in ds],
                                lambda: [fast.render(d) for d in ds])
    rows.append(("full render (subject+HTML+text)", t_naive, t_fast))

    print(f"{n} personalized digests ({statistics.mean(len(d.items) for d in ds):.1f} papers "
          f"on average, {min(len(d.items) for d in ds)}-{max(len(d.items) for d in ds)}); "
          f"best of {args.repeat}")
    print()
    print(f"{'':36} {'naive':>14} {'compile-once':>14} {'speed-up':>9}")
    for label, a, b in rows:
        print(f"{label:36} {n / a:>9,.0f} em/s {n / b:>9,.0f} em/s {a / b:>8.2f}x")
    print(f"{'  ms per email':36} {a * 1e3 / n:>12.3f} ms {b * 1e3 / n:>11.3f} ms")
    print(f"{'first pass, cold cache':36} {'':>14} {n / cold_time:>9,.0f} em/s")
    print()
    used = len({item.pick.paper.id for d in ds for item in d.items})
    print(f"MJML compiles: naive {n}, compile-once {cold.cache.compiles} "
          f"({len(cold.cache.frames)} frames x 2, {len(cold.cache.units)} card shapes; "
          f"{used} distinct papers in these emails)")
    cards = sum(len(d.items) for d in ds)
    memo = getattr(cold.fast_env, "_memo_store", {})
    print(f"card partial: {len(memo)} Jinja renders for {cards} cards "
          f"(the rest replayed from the card memo)")
    print(f"identical output: {n - mismatches}/{n}")
    html_bytes = [len(fast.render(d).html.encode()) for d in ds]
    text_bytes = [len(fast.render(d).text.encode()) for d in ds]
    print(f"bytes per email: HTML mean {statistics.mean(html_bytes):,.0f} "
          f"(max {max(html_bytes):,}), text mean {statistics.mean(text_bytes):,.0f}")

    try:
        from digest.delivery import build_message
    except ImportError:
        print("MIME: digest.mailer not available")
        return
    settings = Settings(sender="Paper Digest <digest@example.org>")
    rendered = [fast.render(d) for d in ds]
    pairs = list(zip(rendered, ds))
    t_mime = min(timed(lambda: [build_message(r, d, settings, now=NOW) for r, d in pairs])
                 for _ in range(args.repeat))
    eml = [len(build_message(r, d, settings, now=NOW).data) for r, d in pairs]
    print(f"MIME build (digest.mailer.build_message): {t_mime * 1e3 / n:.3f} ms per email, "
          f".eml mean {statistics.mean(eml):,.0f} bytes")
    print(f"render + MIME, compile-once: {n / (t_fast + t_mime):,.0f} emails/s")


if __name__ == "__main__":
    main()
