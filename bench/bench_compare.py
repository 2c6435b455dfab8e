"""dsocr compare against HTA's TraceDiff on the same two traces, at several sizes, in one run.

Run A is the real event mix of a capture (default: the committed H200 capture) replicated to
the size asked (as bench_analyze.py does). Run B is A with one change whose size is known: every
instance of A's costliest kernel takes ``--factor`` times as long. Each tool, in its own process:

- dsocr compare: ``compare_runs`` on the two run directories (both analyzed in memory, as
  ``dsocr compare A B --json`` does; the process wall includes start-up and imports);
- HTA 0.5 TraceDiff: ``compare_traces`` on the Chrome JSON that ``dsocr export-trace`` writes for
  each run (each tool reads its own input format), loading both traces included.

TraceDiff compares profiler iterations, which it finds as ``ProfilerStep#N`` annotations; dsocr's
traces mark images and steps with their own ranges, so the harness adds one ``ProfilerStep#0``
over each whole exported trace, and TraceDiff compares everything. Both tools must find the
injected change: the kernel's total grows by (factor - 1) x its total in A. Printed side by side:
each tool's wall time, peak memory, and the delta each reports for that kernel.

    python bench/bench_compare.py --hta-python /tmp/hta/bin/python --sizes 0.3M,1M --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_analyze import (  # noqa: E402
    MIB,
    _fmt,
    parse_size,
    print_markdown,
    replicate,
    replicated_run_parser,
    run_child,
)
from dsocr.analyze.chrome import export_trace  # noqa: E402

from dsocr import rundir, schema  # noqa: E402
from dsocr.vocab import NS_PER_US, US_PER_MS  # noqa: E402

DEFAULT_SIZES = "0.3M,1M"
DEFAULT_FACTOR = 1.5
#: The kernel category in dsocr's trace and in the Chrome JSON.
KERNEL_CAT = "kernel"

COMPARE_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    start = time.perf_counter()
    from dsocr.analyze.compare import compare_runs
    imported = time.perf_counter()
    result = compare_runs(Path(sys.argv[1]), Path(sys.argv[2]))
    done = time.perf_counter()
    kernel = sys.argv[3]
    rows = [row for row in result["top"] if row["kind"] == "kernel" and row["name"] == kernel]
    # compare's top is per image (decode: per traced step): back to totals over the run.
    total = lambda row, side: (row["ms_" + side] or 0.0) * (row["per_count_" + side] or 0.0)
    print(json.dumps({"import_s": imported - start, "compare_s": done - imported,
                      "kernel_delta_ms": sum(total(row, "b") - total(row, "a") for row in rows),
                      "kernel_stages": sorted(row["stage"] for row in rows),
                      "verdicts": {stage: entry["figures"]["gpu_busy_ms"]["verdict"]
                                   for stage, entry in result["trace"].items()}}))
    """
)

HTA_CHILD = textwrap.dedent(
    """
    import json, logging, sys, time
    logging.disable(logging.WARNING)
    start = time.perf_counter()
    from hta.trace_diff import TraceDiff
    imported = time.perf_counter()
    frame = TraceDiff.compare_traces(sys.argv[1], sys.argv[2], control_iteration=0, test_iteration=0)
    done = time.perf_counter()
    kernel = sys.argv[3]
    row = frame.loc[kernel] if kernel in frame.index else None
    print(json.dumps({"import_s": imported - start, "load_and_compare_s": done - imported,
                      "rows": int(len(frame)),
                      "kernel_delta_us": None if row is None else float(row["diff_duration"]),
                      "kernel_counts": None if row is None else [float(row.iloc[0]), float(row.iloc[1])]}))
    """
)


def costliest_kernel(run_dir: Path) -> tuple[str, float]:
    """The kernel name with the largest summed duration in the run, and that sum in ms."""
    files = [str(path) for path in rundir.trace_files(run_dir)]
    table = pa.concat_tables(rundir.read_parquet(Path(f), ["cat", "name", "dur_ns"]) for f in files)
    kernels = table.filter(pc.equal(table["cat"], KERNEL_CAT))
    kernels = kernels.set_column(1, "name", kernels["name"].cast(pa.string()))
    totals = kernels.group_by("name").aggregate([("dur_ns", "sum")]).sort_by([("dur_ns_sum", "descending")])
    return totals["name"][0].as_py(), totals["dur_ns_sum"][0].as_py() / NS_PER_US / US_PER_MS


def slow_down(source: Path, out: Path, kernel: str, factor: float) -> None:
    """Copy ``source`` to ``out`` with every ``kernel`` instance ``factor`` times as long."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns(rundir.ANALYSIS_DIR))
    for path in rundir.trace_files(out):
        table = pq.read_table(path)
        hit = pc.and_(pc.equal(table["cat"], KERNEL_CAT), pc.equal(table["name"].cast(pa.string()), kernel))
        scaled = pc.cast(pc.round(pc.multiply(table["dur_ns"], factor)), pa.int64())
        table = table.set_column(
            table.schema.get_field_index("dur_ns"), "dur_ns", pc.if_else(hit, scaled, table["dur_ns"])
        )
        rundir.write_table_atomic(table.cast(schema.TRACE), path)


def export_with_one_iteration(run_dir: Path, out_dir: Path) -> float:
    """Chrome JSON of the whole run with one ProfilerStep#0 over it (TraceDiff's unit); MiB written."""
    shutil.rmtree(out_dir, ignore_errors=True)
    plain, _ = export_trace(run_dir, output=out_dir / "plain.json")
    files = [str(path) for path in rundir.trace_files(run_dir)]
    table = pa.concat_tables(rundir.read_parquet(Path(f), ["ts_ns", "dur_ns", "pid", "tid"]) for f in files)
    base_ns = json.loads(plain.open().readline().split(',"traceEvents"')[0] + "}")["baseTimeNanoseconds"]
    end_us = (pc.max(pc.add(table["ts_ns"], table["dur_ns"])).as_py() - base_ns) / NS_PER_US + 1
    pid, tid = table["pid"][0].as_py(), table["tid"][0].as_py()
    step = {"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#0", "pid": pid, "tid": tid,
            "ts": -1.0, "dur": end_us + 1, "args": {}}  # fmt: skip
    target = out_dir / "rank-0.json"
    with plain.open("rb") as source, target.open("wb") as sink:
        sink.write(source.readline())  # the header, up to "traceEvents":[
        sink.write((json.dumps(step) + ",\n").encode())
        shutil.copyfileobj(source, sink)
    plain.unlink()
    return target.stat().st_size / MIB


def measure(size: int, args: argparse.Namespace) -> dict[str, Any]:
    run_a, run_b = args.work / f"a-{size}", args.work / f"b-{size}"
    events = replicate(args.source, run_a, size)
    kernel, total_ms = costliest_kernel(run_a)
    slow_down(run_a, run_b, kernel, args.factor)
    expected_ms = (args.factor - 1) * total_ms
    command = [sys.executable, "-c", COMPARE_CHILD, str(run_a), str(run_b), kernel]
    runs = [run_child(command, ROOT) for _ in range(args.repeats)]
    row: dict[str, Any] = {
        "target": size,
        "events_per_run": events,
        "kernel": kernel,
        "injected_delta_ms": expected_ms,
        "compare_wall_s": statistics.median(wall for _, wall, _, _ in runs),
        "compare_s": statistics.median(child["compare_s"] for child, _, _, _ in runs),
        "compare_cpu_s": statistics.median(cpu for _, _, _, cpu in runs),
        "compare_rss_mib": max(rss for _, _, rss, _ in runs),
        "compare_runs": [{"wall_s": wall, "compare_s": child["compare_s"]} for child, wall, _, _ in runs],
        "compare_kernel_delta_ms": runs[0][0]["kernel_delta_ms"],
        "compare_kernel_stages": runs[0][0]["kernel_stages"],
        "compare_gpu_busy_verdicts": runs[0][0]["verdicts"],
    }
    if args.hta_python:
        dir_a, dir_b = args.work / f"hta-a-{size}", args.work / f"hta-b-{size}"
        row["json_mib_per_run"] = export_with_one_iteration(run_a, dir_a)
        export_with_one_iteration(run_b, dir_b)
        hta, wall, rss, cpu = run_child([str(args.hta_python), "-c", HTA_CHILD, str(dir_a), str(dir_b), kernel], ROOT)
        delta_us = hta["kernel_delta_us"]
        row |= {
            "hta_wall_s": wall,
            "hta_load_and_compare_s": hta["load_and_compare_s"],
            "hta_cpu_s": cpu,
            "hta_rss_mib": rss,
            "hta_rows": hta["rows"],
            "hta_kernel_delta_ms": None if delta_us is None else delta_us / US_PER_MS,
            "time_ratio": wall / row["compare_wall_s"],
            "memory_ratio": rss / row["compare_rss_mib"],
        }
        if not args.keep:
            shutil.rmtree(dir_a)
            shutil.rmtree(dir_b)
    if not args.keep:
        shutil.rmtree(run_a)
        shutil.rmtree(run_b)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    header = [
        "events per run", "compare s (process / compare_runs)", "compare peak MiB", "TraceDiff s (process)",
        "TraceDiff peak MiB", "time ratio", "memory ratio", "injected ms", "compare's delta ms", "TraceDiff's delta ms",
    ]  # fmt: skip
    print_markdown(
        header,
        [
            [
                f"{row['events_per_run']:,}",
                f"{_fmt(row['compare_wall_s'], 2)} / {_fmt(row['compare_s'], 2)}",
                _fmt(row["compare_rss_mib"], 0),
                _fmt(row.get("hta_wall_s")),
                _fmt(row.get("hta_rss_mib"), 0),
                f"{_fmt(row.get('time_ratio'))}x",
                f"{_fmt(row.get('memory_ratio'))}x",
                _fmt(row["injected_delta_ms"], 2),
                _fmt(row["compare_kernel_delta_ms"], 2),
                _fmt(row.get("hta_kernel_delta_ms"), 2),
            ]
            for row in rows
        ],
    )


def main() -> None:
    parser = replicated_run_parser(
        __doc__.split("\n\n")[0], sizes=DEFAULT_SIZES, work="dsocr-bench-compare", tool="compare"
    )
    parser.add_argument("--factor", type=float, default=DEFAULT_FACTOR, help="Slow-down of B's costliest kernel.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [measure(parse_size(size), args) for size in args.sizes.split(",")]
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
