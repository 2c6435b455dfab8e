"""dsocr analyze on a run of many pages of many tokens: peak memory, wall and CPU time, events/s.

bench_scale.py replicates the committed capture's short pages (16 tokens); here each page has
``--tokens`` decode steps on the reference clock (predictions) and about ``--events-per-page``
trace events, as a sampled page of the H200 runs (bench/results/h200-capture-overhead-512.json:
364 events per token, about 186 k events for 512 tokens), so that the decode-step rows scale with
the run as the trace does: 10,000 pages of 512 tokens are 5.1 M reference steps.

A page is built once from image 0 of the committed H200 capture (tests/data/gpu-run, ``--profile
full``, 15 traced decode steps): its events, then windows of its decode steps 2.. copied after
its last step, as sampled mode's windows (steps renumbered to sit across the page's tokens, the
decode range and the session end moved after them), until the page holds about
``--events-per-page`` events. Its reference clock: the 15 measured step times repeated with a
deterministic jitter to ``--tokens - 1`` steps (the first page's steps cold, as a process's first
pass over each length). Page i is that page with image index i, times and correlation ids
shifted. The run is written under ``--work`` (default the system temp folder), analyzed once in
its own process (``analyze_run``: peak RSS = ru_maxrss, CPU = ru_utime + ru_stime), and removed
unless ``--keep``::

    nice -n 10 python bench/bench_scale_pages.py --pages 1000 --json /tmp/estimate.json
    nice -n 10 python bench/bench_scale_pages.py --pages 10000 --json bench/results/cpu-scale-10k.json

``--page-counts 1000,10000,40000 --traced-pages 10`` builds one run per count with the same 10
pages traced (so the trace, one batch, is the same in each) and the others on the reference clock
alone: only the page count grows, and the last line is the peak RSS at the largest count over the
smallest (issue 26: peak memory independent of the number of images). Each child's peak RSS is
measured from a small launcher (bench_analyze.run_child): this process holds the run it built.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from bench_analyze import DEFAULT_SOURCE, GAP_NS, MIB
from bench_scale import measure

from dsocr import rundir, schema

#: A sampled 512-token page on the H200: 364 events per token (h200-capture-overhead-512.json).
SAMPLED_EVENTS_PER_PAGE = 186_000
DEFAULT_TOKENS = 512
#: Decode steps per copied window (sampled mode traces windows of a few steps).
WINDOW_STEPS = 11
JITTER = 0.02
SEED = 26


def _range_rows(trace: pa.Table, stage: str) -> np.ndarray:
    return pc.equal(trace["range_stage"], stage).fill_null(False).to_numpy(zero_copy_only=False)


def build_page(source: Path, tokens: int, events_per_page: int) -> tuple[pa.Table, list[int]]:
    """One page's trace (image 0 of ``source`` and windows of its decode steps) and its traced steps."""
    files = [path for path in rundir.trace_files(source) if path.name.startswith("image0000000-")]
    trace = ds.dataset([str(path) for path in files], format="parquet", schema=schema.TRACE).to_table()
    steps = trace.filter(pc.equal(trace["range_stage"], "decode_step").fill_null(False))
    traced = sorted(set(steps["range_step"].to_pylist()))
    step_start = {s: pc.min(steps.filter(pc.equal(steps["range_step"], s))["ts_ns"]).as_py() for s in traced}
    window_start = step_start[2]  # step 1 is the first, slow one: windows repeat steady steps
    window_end = step_start.get(2 + WINDOW_STEPS)
    if window_end is None:
        raise SystemExit(f"{source}: image 0 has fewer than {2 + WINDOW_STEPS} traced decode steps")
    in_window = pc.and_(pc.greater_equal(trace["ts_ns"], window_start), pc.less(trace["ts_ns"], window_end))
    window = trace.filter(in_window)
    last_end = pc.max(pc.add(steps["ts_ns"], steps["dur_ns"])).as_py()
    copies = max(0, math.ceil((events_per_page - trace.num_rows) / window.num_rows))
    id_stride = max(pc.max(trace["correlation"]).as_py() or 0, pc.max(trace["external_id"]).as_py() or 0) + 1
    length = window_end - window_start + GAP_NS // 1000  # a millisecond between copies
    # Windows spread over the page's tokens, after the measured steps: step numbers
    # first_step .. first_step + WINDOW_STEPS - 1, as sampled mode's --window-every windows.
    every = max(WINDOW_STEPS, (tokens - 1 - max(traced)) // max(copies, 1))
    parts = []
    moved_after = last_end  # events from here on (the session end) move after the copies
    later = trace.filter(pc.greater(trace["ts_ns"], moved_after))
    parts.append(trace.filter(pc.less_equal(trace["ts_ns"], moved_after)))
    for copy in range(copies):
        shift = (last_end - window_start) + GAP_NS // 1000 + copy * length
        first_step = max(traced) + 1 + copy * every
        part = window
        part = part.set_column(part.schema.get_field_index("ts_ns"), "ts_ns", pc.add(part["ts_ns"], shift))
        for column in ("correlation", "external_id"):
            part = part.set_column(
                part.schema.get_field_index(column), column, pc.add(part[column], (copy + 1) * id_stride)
            )
        renumbered = pc.add(part["range_step"], first_step - 2).cast(pa.int32())
        part = part.set_column(part.schema.get_field_index("range_step"), "range_step", renumbered)
        parts.append(part)
        traced += list(range(first_step, first_step + WINDOW_STEPS))
    inserted = copies * length + GAP_NS // 1000
    later = later.set_column(later.schema.get_field_index("ts_ns"), "ts_ns", pc.add(later["ts_ns"], inserted))
    parts.append(later)
    page = pa.concat_tables([part.cast(trace.schema) for part in parts])
    # The decode range (CPU and GPU annotation) now ends after the copied windows.
    decode = _range_rows(page, "decode")
    durations = page["dur_ns"].to_numpy().copy()
    durations[decode] += inserted
    page = page.set_column(page.schema.get_field_index("dur_ns"), "dur_ns", pa.array(durations, pa.int64()))
    if max(traced) >= tokens:
        raise SystemExit(f"--tokens {tokens} is too few for the copied windows (step {max(traced)})")
    return page.cast(schema.TRACE), sorted(traced)


def _write_pages(args: tuple[Path, Path, int, int, int, int, int]) -> None:
    """Write the traced pages among ``first`` .. ``last`` - 1 of the run (a worker process)."""
    page_path, out, first, last, extent, id_stride, trace_every = args
    page = pq.read_table(page_path)
    for index in range(first, last):
        if index % trace_every:
            continue  # as --trace-images: no trace, the reference clock only
        part = page.set_column(0, "image_index", pa.array(np.full(page.num_rows, index, np.int32)))
        part = part.set_column(part.schema.get_field_index("ts_ns"), "ts_ns", pc.add(part["ts_ns"], index * extent))
        for column in ("correlation", "external_id"):
            shifted = pc.add(part[column], index * id_stride)
            part = part.set_column(part.schema.get_field_index(column), column, shifted)
        path = out / rundir.TRACE_DIR / "rank=0" / f"image{index:07d}-chunk0000.parquet"
        rundir.write_parquet(part.cast(schema.TRACE), path)


def _predictions(source: Path, pages: int, tokens: int, traced: list[int], events: int, trace_every: int) -> pa.Table:
    """Prediction rows of ``pages`` pages of ``tokens`` tokens from image 0's row."""
    row = next(r for r in rundir.read_predictions(source).to_pylist() if r["image_index"] == 0)
    rng = np.random.default_rng(SEED)
    measured = np.array(row["decode_step_ms"][1:])  # steady steps; step 1 keeps its own time
    steps = tokens - 1
    first_len = row["decode_step_seq_len"][0]
    seq_len = list(range(first_len, first_len + steps))
    traced_flags = [step in set(traced) for step in range(1, steps + 1)]
    columns: dict[str, list[Any]] = {name: [] for name in schema.PREDICTIONS.names}
    for index in range(pages):
        step_ms = np.resize(measured, steps) * (1 + JITTER * rng.standard_normal(steps))
        step_ms[0] = row["decode_step_ms"][0]
        values = {
            **row,
            "image_index": index,
            "image_path": f"/pages/{index:05d}.png",
            "generated_tokens": tokens,
            "max_new_tokens_requested": tokens,
            "max_new_tokens_resolved": tokens,
            "decode_step_ms": step_ms.tolist(),
            "decode_ms": float(step_ms.sum()),
            "decode_step_seq_len": seq_len,
            "decode_step_cold": [index == 0] * steps,  # a process's first pass over each length
            "decode_step_traced": traced_flags if index % trace_every == 0 else [False] * steps,
            "profile_mode": "sampled",
            "trace_events": events if index % trace_every == 0 else 0,
        }
        for name in columns:
            columns[name].append(values.get(name))
    return pa.table(columns, schema=schema.PREDICTIONS)


def build_run(
    source: Path, out: Path, pages: int, tokens: int, events_per_page: int, workers: int, trace_every: int = 1
) -> dict[str, Any]:
    """Write the run; return what it holds."""
    shutil.rmtree(out, ignore_errors=True)
    (out / rundir.TRACE_DIR / "rank=0").mkdir(parents=True)
    page, traced = build_page(source, tokens, events_per_page)
    page_path = out / "page-template.parquet"
    pq.write_table(page, page_path)
    extent = pc.max(pc.add(page["ts_ns"], page["dur_ns"])).as_py() - pc.min(page["ts_ns"]).as_py() + GAP_NS
    id_stride = max(pc.max(page["correlation"]).as_py() or 0, pc.max(page["external_id"]).as_py() or 0) + 1
    bounds = np.linspace(0, pages, workers * 8 + 1).astype(int)
    jobs = [(page_path, out, int(a), int(b), extent, id_stride, trace_every) for a, b in itertools.pairwise(bounds)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_pages, jobs))
    page_path.unlink()
    run = json.loads((source / rundir.RUN_JSON).read_text())
    run["config"] = {**(run.get("config") or {}), "trace_images": trace_every}
    rundir.write_json_atomic(out / rundir.RUN_JSON, {**run, "replicated_from": str(source), "pages": pages})
    predictions = _predictions(source, pages, tokens, traced, page.num_rows, trace_every)
    rundir.write_predictions(predictions, out)
    files = rundir.trace_files(out)
    return {
        "pages": pages,
        "trace_every": trace_every,
        "traced_pages": len(files),
        "tokens_per_page": tokens,
        "reference_steps": pages * (tokens - 1),
        "traced_steps_per_page": len(traced),
        "events_per_page": page.num_rows,
        "events": page.num_rows * len(files),
        "trace_parquet_mib": sum(path.stat().st_size for path in files) / MIB,
        "predictions_mib": (out / rundir.PREDICTIONS_FILE).stat().st_size / MIB,
    }


def measure_pages(args: argparse.Namespace, pages: int, trace_every: int) -> dict[str, Any]:
    """Build a run of ``pages`` pages, analyze it (with ``--baseline`` first), remove it; its figures."""
    run_dir = args.work / f"run-{pages}x{args.tokens}"
    load_before_build = os.getloadavg()
    start = time.perf_counter()
    row = build_run(args.source, run_dir, pages, args.tokens, args.events_per_page, args.build_workers, trace_every)
    row["build_s"] = time.perf_counter() - start
    row["load_average_before_build"] = load_before_build
    print(f"built {row['events']:,} events in {row['build_s']:.0f} s", file=sys.stderr, flush=True)
    row["load_average_before"] = os.getloadavg()
    try:
        if args.baseline:
            row["baseline"] = {"pythonpath": str(args.baseline), "load_average_before": os.getloadavg()}
            row["baseline"] |= measure(run_dir, None, pythonpath=args.baseline)
            shutil.rmtree(run_dir / rundir.ANALYSIS_DIR)
            row["load_average_before"] = os.getloadavg()
        row["analyze"] = measure(run_dir, None)
        row["analysis_mib"] = {
            path.name: path.stat().st_size / MIB for path in sorted((run_dir / rundir.ANALYSIS_DIR).iterdir())
        }
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    row["load_average_after"] = os.getloadavg()
    analyze = row["analyze"]
    print(
        f"{row['pages']:,} pages x {row['tokens_per_page']} tokens, {row['events']:,} events"
        f" ({row['trace_parquet_mib']:,.0f} MiB): analyze {analyze['analyze_s']:.1f} s, CPU {analyze['cpu_s']:.1f} s,"
        f" peak RSS {analyze['peak_rss_mib']:,.0f} MiB, {analyze['events_per_s'] / 1e6:.2f} M events/s"
    )
    if "baseline" in row:
        baseline = row["baseline"]
        rss_ratio, cpu_ratio = analyze["peak_rss_mib"] / baseline["peak_rss_mib"], analyze["cpu_s"] / baseline["cpu_s"]
        print(
            f"baseline {args.baseline}: analyze {baseline['analyze_s']:.1f} s, CPU {baseline['cpu_s']:.1f} s,"
            f" peak RSS {baseline['peak_rss_mib']:,.0f} MiB; this tree's: peak RSS {rss_ratio:.2f}x,"
            f" CPU {cpu_ratio:.2f}x"
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument(
        "--page-counts",
        help="Comma-separated page counts, each its own run with --traced-pages of them traced (the same"
        " trace in every run, so only the page count grows): peak RSS per count and largest/smallest.",
    )
    parser.add_argument("--traced-pages", type=int, default=10, help="Traced pages per run of --page-counts.")
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    parser.add_argument("--events-per-page", type=int, default=SAMPLED_EVENTS_PER_PAGE)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dsocr-bench-scale-pages")
    parser.add_argument("--build-workers", type=int, default=2)
    parser.add_argument(
        "--trace-every", type=int, default=1, help="Trace every Nth page only, as capture --trace-images N (default 1)."
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="A folder holding another dsocr package (dsocr/ with analyze/ inside) to analyze the same run with"
        " first, side by side (its peak RSS and time against this tree's).",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the generated run under --work.")
    parser.add_argument("--json", type=Path, help="Also write every figure here.")
    args = parser.parse_args()
    machine: dict[str, Any] = {"cpus": os.cpu_count()}
    if args.page_counts:
        counts = [int(count) for count in args.page_counts.split(",")]
        rows = [measure_pages(args, pages, max(1, pages // args.traced_pages)) for pages in counts]
        smallest, largest = rows[0]["analyze"]["peak_rss_mib"], rows[-1]["analyze"]["peak_rss_mib"]
        print(
            f"peak RSS at {counts[-1]:,} pages / at {counts[0]:,}: {largest / smallest:.2f}x"
            f" ({smallest:,.0f} -> {largest:,.0f} MiB; {args.traced_pages} traced pages in each run)"
        )
        payload: dict[str, Any] = {"machine": machine, "runs": rows, "peak_rss_ratio": largest / smallest}
    else:
        payload = {"machine": machine, "run": measure_pages(args, args.pages, args.trace_every)}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
