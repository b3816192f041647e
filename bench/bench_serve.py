"""Benchmark ``digest serve``: the token index, and requests over real HTTP.

    .venv/bin/python bench/bench_serve.py [--requests 200] [--repeats 5]

Rows: building the token index for 10,000 addresses (what a start or a config edit costs) and
resolving one token; then, against uvicorn on 127.0.0.1 in a thread with a real SQLite ledger
filled by a real send (tests/web_site.py), sequential httpx requests: the one-click POST
(a suppression write each time, idempotent), the preferences page, one archived edition, its
"N more matched" page and the Atom feed. Each row: min/median/max over ``--repeats`` rounds. Last, what the archive
stores per message (the sent bytes and their zlib size). Client and server share the machine,
so request times include both ends.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from web_site import HOST, NOW, SECRET, make_site, running  # noqa: E402

from digest.compose import TokenIndex, make_token  # noqa: E402
from digest.ledger import Ledger  # noqa: E402


def rounds(fn: Callable[[], None], repeats: int, per: int) -> tuple[float, float, float]:
    """min/median/max seconds per call over ``repeats`` rounds of ``per`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per):
            fn()
        times.append((time.perf_counter() - start) / per)
    return min(times), statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows: list[tuple[str, str, tuple[float, float, float]]] = []

    emails = [f"user{i}@example.org" for i in range(10_000)]
    rows.append(("token index, 10,000 addresses", "ms",
                 rounds(lambda: TokenIndex(SECRET, emails).__len__(), args.repeats, 1)))
    index = TokenIndex(SECRET, emails)
    token = make_token("user5000@example.org", SECRET)
    rows.append(("resolve one token", "µs", rounds(lambda: index.resolve(token).__len__(),
                                                   args.repeats, 10_000)))

    with tempfile.TemporaryDirectory() as folder:
        config = make_site(Path(folder))
        with running(config) as site, httpx.Client(headers={"Host": HOST}) as http:
            links = site.links("bob")

            def get(url: str) -> Callable[[], None]:
                def call() -> None:
                    assert http.get(url).status_code == 200
                return call

            def one_click() -> None:
                got = http.post(site.local(links.unsubscribe),
                                data={"List-Unsubscribe": "One-Click"})
                assert got.status_code == 200

            for label, fn in (("POST one-click unsubscribe", one_click),
                              ("GET preferences page", get(site.local(links.preferences))),
                              ("GET archived edition", get(site.local(links.edition(
                                  NOW.date())))),
                              ("GET 'N more matched' (52)", get(site.local(links.more(
                                  NOW.date())))),
                              ("GET Atom feed", get(site.local(links.feed)))):
                fn()  # warm
                rows.append((label, "ms", rounds(fn, args.repeats, args.requests)))
            with Ledger(Path(folder) / "digest.db") as ledger:
                raw = ledger.archived_message("bob@example.org", NOW.date()) or b""

    scale = {"ms": 1e3, "µs": 1e6}
    print(f"{'what':34} {'unit':>4} {'min':>9} {'median':>9} {'max':>9}")
    for label, unit, (lo, mid, hi) in rows:
        f = scale[unit]
        print(f"{label:34} {unit:>4} {lo * f:9.3f} {mid * f:9.3f} {hi * f:9.3f}")
    print(f"archive per message: {len(raw):,} bytes sent, {len(zlib.compress(raw, 1)):,} stored "
          "(zlib level 1, as the ledger keeps it)")


if __name__ == "__main__":
    main()
