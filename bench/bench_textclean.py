"""Benchmark LaTeX cleaning on hostile text: ours (a memo per field and a work cap) next to the
plain alternative (every span through pylatexenc, as before the cap).

    .venv/bin/python bench/bench_textclean.py [--repeat 3]

Inputs: the seed papers' abstracts (the normal case: nothing hits the cap), 200 KB of ``$a$ ``
(50,000 equal spans), ``\\textbf{x}`` x 20,000 and x 10,000 (a linear cost doubles with the
size), and 20,000 distinct math spans (past the cap: the plain strip). Prints one table of
seconds (min / median / max over ``--repeat`` runs of ours; the plain alternative once, it
takes seconds). Numbers from a shared 2-core box are noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest.text import _clean  # noqa: E402
from digest.text import clean_text  # noqa: E402


def plain(text: str) -> str:
    """Every span through pylatexenc: the cost the cap removes (output otherwise the same)."""
    saved = _clean._spans_to_text
    _clean._spans_to_text = lambda t: _clean._LATEX_SPAN.sub(  # type: ignore[assignment]
        lambda m: _clean._span_to_text(m.group(0)), t)
    try:
        return clean_text(text)
    finally:
        _clean._spans_to_text = saved  # type: ignore[assignment]


def timed(fn: object, text: str) -> float:
    start = time.perf_counter()
    fn(text)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    seed = json.loads((ROOT / "tests" / "fixtures" / "seed_papers.json").read_text("utf-8"))
    abstracts = " ".join(p["abstract"] for p in seed)
    cases = {
        f"seed abstracts ({len(seed)}, one field)": abstracts,
        "$a$ x 50,000 (200 KB)": "$a$ " * 50_000,
        r"\textbf{x} x 10,000": r"\textbf{x}" * 10_000,
        r"\textbf{x} x 20,000": r"\textbf{x}" * 20_000,
        "20,000 distinct $a_{i}$": " ".join(f"$a_{{{i}}}$" for i in range(20_000)),
    }
    print(f"{'input':<36} {'ours min':>9} {'median':>8} {'max':>8} {'plain':>8} {'ratio':>7}")
    for label, text in cases.items():
        assert clean_text(text) == plain(text) or "distinct" in label
        runs = [timed(clean_text, text) for _ in range(args.repeat)]
        base = timed(plain, text)
        print(f"{label:<36} {min(runs):>9.3f} {statistics.median(runs):>8.3f} "
              f"{max(runs):>8.3f} {base:>8.3f} {base / max(min(runs), 1e-9):>6.0f}x")


if __name__ == "__main__":
    main()
