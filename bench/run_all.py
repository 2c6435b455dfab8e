"""`just bench`: every benchmark at its default (CPU-sized) settings, one after another.

Each script prints its own table of ratios measured side by side in one run. The GPU-sized
runs and their committed results are described in bench/README.md and docs/performance.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = (
    ["fidelity.py", "--device", "cpu", "--tokens", "24", "--variants", "off,sampled,full"],
    ["static_cache.py", "--device", "cpu", "--tokens", "24", "--variants", "dynamic-off,static-off,static-sampled"],
    ["cli_startup.py"],
    ["range_cost.py"],
    ["ngram_guard.py", "--steps", "1000", "--repeats", "3", "--model-tokens", "24"],
    ["profiling_overhead.py", "--device", "cpu", "--tokens", "16", "--repeats", "1"],
    ["bench_analyze.py"],
    ["analyze_threads.py", "--size", "0.3M", "--repeats", "3"],
    ["bench_scale.py", "--sizes", "0.3M,1M", "--one-batch-max", "1M"],
    ["bench_scale_pages.py", "--page-counts", "500,5000", "--traced-pages", "5", "--tokens", "256"],
    ["bench_compare.py", "--sizes", "0.3M"],
    ["bench_emit.py"],
    ["bench_report.py"],
)


def main() -> int:
    failed = []
    for script, *arguments in SCRIPTS:
        print(f"\n=== {script} {' '.join(arguments)}", flush=True)
        if subprocess.run([sys.executable, str(BENCH / script), *arguments], check=False).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
