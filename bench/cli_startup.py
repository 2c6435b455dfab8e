"""What `dsocr --help` costs: median wall seconds of the real console script, in fresh processes.

Every command line (and every emit worker process, which re-imports the CLI) pays this before
doing anything. The target on these machines is <= 0.25 s; tests/test_cli.py checks the cause
without timing (`import dsocr.cli` loads no stage, numpy, pyarrow or torch).

    python bench/cli_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.25
DEFAULT_REPEATS = 15


def _dsocr() -> list[str]:
    script = Path(sys.executable).parent / "dsocr"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dsocr.cli"]


def _seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    args = parser.parse_args()
    rows = []
    for label, arguments in (("dsocr --help", ["--help"]), ("dsocr --version", ["--version"])):
        command = [*_dsocr(), *arguments]
        _seconds(command)  # warm the file cache
        times = [_seconds(command) for _ in range(args.repeats)]
        rows.append((label, statistics.median(times), min(times)))
    bare = statistics.median(_seconds([sys.executable, "-c", "pass"]) for _ in range(args.repeats))
    print(f"{'command':<18}{'median s':>10}{'min s':>8}   (target <= {TARGET_S} s; bare python {bare:.3f} s)")
    for label, median, fastest in rows:
        print(f"{label:<18}{median:>10.3f}{fastest:>8.3f}")
    return 0 if rows[0][1] <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
