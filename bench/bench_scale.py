"""dsocr analyze at scale: wall and CPU time, peak memory and events/s from 3 M to 100 M events.

The real event mix of a capture (default: the committed H200 capture, tests/data/gpu-run,
95 k events per image) is replicated to each size with bench_analyze's ``replicate`` (copy i
becomes image i, its times and ids shifted). Each size is analyzed in its own process
(``analyze_run``, everything ``dsocr analyze`` computes and writes; peak memory is the
process's ru_maxrss, CPU time its ru_utime + ru_stime), as analyze reads it: a batch of whole
images at a time (``runner.BATCH_BYTES``). Up to ``--one-batch-max`` events the same run is
also analyzed as one batch (the whole trace in memory, as analyze read it before batches),
side by side. Printed against the smallest size: peak memory (target: within 1.5x, and under
1.5 GiB), seconds per event (target: within 1.3x of linear) and events per second (target:
at least 2 M/s)::

    nice python bench/bench_scale.py --sizes 3M,30M,100M --json bench/results/cpu-scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench_analyze import DEFAULT_SOURCE, MIB, ROOT, parse_size, replicate, run_child

from dsocr import rundir

#: Targets of issue 26 on the 2-core box.
RSS_FLAT_RATIO = 1.5
RSS_LIMIT_MIB = 1536
LINEAR_RATIO = 1.3
MIN_EVENTS_PER_S = 2_000_000
#: A batch larger than any run: the whole trace in memory at once.
ONE_BATCH = 2**62

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from dsocr.no_pandas import hide_pandas
    hide_pandas()  # as `dsocr analyze` does
    from dsocr.analyze import runner
    from dsocr.analyze.runner import analyze_run
    start = time.perf_counter()
    batch_bytes = int(sys.argv[2]) if sys.argv[2] != "default" else None
    analysis = analyze_run(Path(sys.argv[1]), batch_bytes=batch_bytes)
    print(json.dumps({"analyze_s": time.perf_counter() - start,
                      "events": analysis.summary.coverage.trace_events, "code": runner.__file__}))
    """
)


def measure(run_dir: Path, batch_bytes: int | None, pythonpath: Path | None = None) -> dict[str, Any]:
    """One analyze process on ``run_dir``: its figures (``pythonpath``: import dsocr from there, run
    from there too: a child's working folder comes first on its path, and this repository's holds
    a dsocr/ of its own)."""
    command = [sys.executable, "-c", CHILD, str(run_dir), "default" if batch_bytes is None else str(batch_bytes)]
    where, env = (pythonpath, {"PYTHONPATH": str(pythonpath)}) if pythonpath else (ROOT, None)
    child, wall, rss, cpu = run_child(command, where, env)
    return {
        "wall_s": wall,
        "analyze_s": child["analyze_s"],
        "cpu_s": cpu,
        "peak_rss_mib": rss,
        "events_analyzed": child["events"],
        "events_per_s": child["events"] / child["analyze_s"],
        # On a shared box wall time moves with the load; CPU time much less.
        "events_per_cpu_s": child["events"] / cpu,
        # Which analyze ran (the module's file).
        "code": child["code"],
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    base = rows[0]["batched"]
    base_per_event = base["analyze_s"] / rows[0]["events"]
    print(
        "| events | Parquet MiB | analyze s | process wall s | CPU s | peak RSS MiB | RSS / smallest |"
        " s per event / smallest | M events/s | M events per CPU s | one batch: s, CPU s, peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        batched = row["batched"]
        one = row.get("one_batch")
        one_text = f"{one['analyze_s']:.1f}, {one['cpu_s']:.1f}, {one['peak_rss_mib']:.0f}" if one else "-"
        print(
            f"| {row['events']:,} | {row['parquet_mib']:.0f} | {batched['analyze_s']:.1f} | {batched['wall_s']:.1f}"
            f" | {batched['cpu_s']:.1f} | {batched['peak_rss_mib']:.0f}"
            f" | {batched['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
            f" | {batched['analyze_s'] / row['events'] / base_per_event:.2f}"
            f" | {batched['events_per_s'] / 1e6:.2f} | {batched['events_per_cpu_s'] / 1e6:.2f}"
            f" | {one_text} |"
        )


def verdicts(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """Issue 26's targets, each true or false on these rows."""
    base = rows[0]["batched"]
    rss = [row["batched"]["peak_rss_mib"] for row in rows]
    per_event = [row["batched"]["analyze_s"] / row["events"] for row in rows]
    return {
        f"peak RSS within {RSS_FLAT_RATIO}x of the smallest size": max(rss) / base["peak_rss_mib"] <= RSS_FLAT_RATIO,
        f"peak RSS under {RSS_LIMIT_MIB} MiB": max(rss) < RSS_LIMIT_MIB,
        f"seconds per event within {LINEAR_RATIO}x of the smallest size": max(per_event) / per_event[0] <= LINEAR_RATIO,
        f"at least {MIN_EVENTS_PER_S / 1e6:.0f} M events/s": min(row["batched"]["events_per_s"] for row in rows)
        >= MIN_EVENTS_PER_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3M,30M,100M", help="Comma-separated event counts (default 3M,30M,100M).")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="Run whose event mix is replicated.")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dsocr-bench-scale")
    parser.add_argument(
        "--one-batch-max", default="30M", help="Largest size also analyzed as one batch (0: none; default 30M)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the generated runs under --work.")
    parser.add_argument("--json", type=Path, help="Also write every figure here.")
    args = parser.parse_args()
    one_batch_max = parse_size(args.one_batch_max)
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for size in (parse_size(text) for text in args.sizes.split(",")):
        run_dir = args.work / f"run-{size}"
        events = replicate(args.source, run_dir, size)
        row: dict[str, Any] = {
            "target": size,
            "events": events,
            "images": len({path.name.split("-")[0] for path in rundir.trace_files(run_dir)}),
            "parquet_mib": sum(path.stat().st_size for path in rundir.trace_files(run_dir)) / MIB,
            "batched": measure(run_dir, None),
        }
        if size <= one_batch_max:
            row["one_batch"] = measure(run_dir, ONE_BATCH)
        rows.append(row)
        print(f"measured {events:,} events", file=sys.stderr, flush=True)
        if not args.keep:
            shutil.rmtree(run_dir)
    print_table(rows)
    results = verdicts(rows)
    for target, met in results.items():
        print(f"{'met' if met else 'NOT met'}: {target}")
    if args.json:
        machine = {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()}
        payload = {"machine": machine, "rows": rows, "targets": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
