"""analyze's thread count, side by side: ``analyze_run(jobs=N)`` for several N on one replicated run.

Each run is its own process; the thread counts alternate round by round, so a load spike on a
shared machine hits every count alike. Prints the medians of wall seconds (process and
``analyze_run``), CPU seconds and peak memory per count, and each count against the default
(``threads.worker_count()``, DEFAULT_MAX_WORKERS at most), which this bench is the evidence for::

    python bench/analyze_threads.py --size 1M --jobs 1,2,4,8,all --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_analyze import ANALYZE_CHILD, DEFAULT_SOURCE, ROOT, parse_size, print_markdown, replicate, run_child
from dsocr.analyze import threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1M", help="Events of the replicated run (300k, 1M, 3M).")
    parser.add_argument("--jobs", default="1,2,4,8,all", help="Thread counts; 'all': every usable core.")
    parser.add_argument("--repeats", type=int, default=5, help="Rounds; the median counts.")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="Run whose event mix is replicated.")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dsocr-bench-threads")
    parser.add_argument("--json", type=Path, help="Also write every figure here.")
    args = parser.parse_args()
    cores = threads.usable_cores()
    counts = sorted({cores if text == "all" else int(text) for text in args.jobs.split(",")})
    labels = ["default", *map(str, counts)]
    run_dir = args.work / "run"
    events = replicate(args.source, run_dir, parse_size(args.size))
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for _ in range(args.repeats):
        for label in labels:
            child, wall, rss, cpu = run_child([sys.executable, "-c", ANALYZE_CHILD, str(run_dir), label], ROOT)
            runs[label].append(
                {
                    "import_s": child["import_s"],
                    "analyze_s": child["analyze_s"],
                    "wall_s": wall,
                    "rss_mib": rss,
                    "cpu_s": cpu,
                }
            )
    shutil.rmtree(args.work)
    rows = []
    for label in labels:
        row = {"jobs": label, "threads": threads.worker_count() if label == "default" else int(label)}
        for key in ("wall_s", "analyze_s", "cpu_s", "rss_mib"):
            row[key] = statistics.median(run[key] for run in runs[label])
        row["runs"] = runs[label]
        rows.append(row)
    default = rows[0]
    print(f"{events:,} events, {cores} usable cores, default {default['threads']} threads, {args.repeats} rounds")
    print_markdown(
        ["jobs", "threads", "process s", "analyze_run s", "vs default", "CPU s", "peak MiB"],
        [
            [
                str(row["jobs"]),
                str(row["threads"]),
                f"{row['wall_s']:.2f}",
                f"{row['analyze_s']:.3f}",
                f"{row['analyze_s'] / default['analyze_s']:.2f}x",
                f"{row['cpu_s']:.2f}",
                f"{row['rss_mib']:.0f}",
            ]
            for row in rows
        ],
    )
    if args.json:
        machine = {"cpus": os.cpu_count(), "usable_cores": cores, "load_average_after": os.getloadavg()}
        args.json.write_text(json.dumps({"machine": machine, "events": events, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
