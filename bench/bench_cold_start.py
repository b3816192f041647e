"""Cold start of the CLI: ``digest --help`` as a fresh process, beside the interpreter alone and
beside importing every command module (what ``--help`` cost before commands loaded lazily).

    python bench/bench_cold_start.py [--repeat 15]

Prints min/median/max wall seconds per row; all rows run in the same session, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROWS = {
    "python -c pass (the interpreter alone)": ["-c", "pass"],
    "digest --help (lazy commands)": ["-m", "digest", "--help"],
    "digest validate --help (one command module)": ["-m", "digest", "validate", "--help"],
    "import every command module (the old --help)": [
        "-c", "import digest.cli, importlib; from digest.cli.commands import COMMANDS; "
              "[importlib.import_module(m) for m, _ in COMMANDS.values()]"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in ROWS}
    for _ in range(args.repeat):
        for name, argv in ROWS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    print(f"{'row':<48} | {'min s':>6} | {'median s':>8} | {'max s':>6}")
    print("-" * 78)
    for name, values in times.items():
        print(f"{name:<48} | {min(values):>6.3f} | {statistics.median(values):>8.3f} | "
              f"{max(values):>6.3f}")


if __name__ == "__main__":
    main()
