"""dsocr analyze against Holistic Trace Analysis on the same trace, at several sizes, in one run.

For each size the real event mix of a capture (default: the committed H200 capture,
tests/data/gpu-run) is replicated into a run of that many events: copy i becomes image i,
its times shifted past copy i-1 and its correlation and External ids shifted by i times the
source's largest id. Then, each tool in its own process (peak memory is that process's
ru_maxrss, CPU time its ru_utime + ru_stime, both measured by a small launcher: ``run_child``):

- dsocr analyze: ``analyze_run`` on the Parquet, everything ``dsocr analyze`` computes and
  writes (the process wall time includes Python start-up and imports; the ``analyze_run``
  time is printed beside it);
- HTA: ``TraceAnalysis`` load of the JSON that ``dsocr export-trace`` writes from the same
  Parquet (each tool reads its own input format), then ``get_gpu_kernel_breakdown``; only up
  to ``--hta-max-events`` (HTA 0.5 needs about 1.5 GB per million events of this mix).

What each side computes (like for like, and where it is not). The headline ratio gives HTA
the least work: its load and one analysis, the kernel breakdown, against analyze's whole
run: per-stage kernel attribution by correlation, GPU busy/span/idle per image and step, the
CUDA-event check, CPU operator self time, top kernels and operators per stage, the roofline,
the findings and four Parquet/JSON outputs. analyze does strictly more. ``--hta-matched``
also times the HTA analyses that answer what analyze's outputs answer, in the same HTA
process after the breakdown: kernels per user annotation (analyze's per-stage attribution),
the temporal breakdown (GPU busy and idle) and the CUDA launch statistics (analyze's
launch-bound kernels); the matched ratio counts them too. Both ratios are printed.

HTA is not a dsocr dependency: install it into a separate virtual environment and pass its
interpreter (it pulls jupyterlab, pandas and plotly)::

    python -m venv /tmp/hta-venv && /tmp/hta-venv/bin/pip install holistictraceanalysis==0.5.0
    python bench/bench_analyze.py --hta-python /tmp/hta-venv/bin/python                 # 0.3M
    python bench/bench_analyze.py --sizes 1M,3M --hta-matched --hta-python /tmp/hta-venv/bin/python
    python bench/bench_analyze.py --cross-check --hta-python /tmp/hta-venv/bin/python    # per range

``--kineto-run RUN`` gives HTA what it is given when used on its own: torch's
``export_chrome_trace`` JSON of the same trace, which ``dsocr capture --keep-kineto`` keeps
(one image in one chunk, so one file per rank), and analyze that run's Parquet. The
replicated runs' JSON is dsocr's export-trace output, which carries fewer args per event.

``--cross-check`` compares HTA's kernel totals per gpu_user_annotation with analyze's kernel
totals per stage on the source run itself (docs/analysis.md explains the differences).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bytecode import compile_imported  # noqa: E402
from dsocr.analyze.attribution import attribute_gpu_ops  # noqa: E402
from dsocr.analyze.chrome import export_trace  # noqa: E402
from dsocr.analyze.load import load_trace  # noqa: E402
from dsocr.analyze.ranges import clean_ranges  # noqa: E402
from dsocr.analyze.stages import stage_masks  # noqa: E402

from dsocr import rundir, schema  # noqa: E402

DEFAULT_SOURCE = ROOT / "tests" / "data" / "gpu-run"
DEFAULT_SIZES = "0.3M"
DEFAULT_HTA_MAX = 3_500_000
KIB = 1024
MIB = 1024 * 1024
GAP_NS = 1_000_000_000  # between replicated images
SUFFIXES = {"k": 1_000, "m": 1_000_000}

# Imported modules whose source has no cached bytecode: each was compiled in this process (an
# image that ships no .pyc files and sets PYTHONDONTWRITEBYTECODE, as the H200's does, or an
# editable install there), which adds tenths of a second to either tool's start-up.
UNCOMPILED = textwrap.dedent(
    """
    def modules_without_bytecode():
        import os
        specs = [getattr(module, "__spec__", None) for module in list(sys.modules.values())]
        return sum(1 for spec in specs if spec is not None and spec.cached and spec.origin
                   and spec.origin.endswith(".py") and not os.path.exists(spec.cached))
    """
)

ANALYZE_CHILD = UNCOMPILED + textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    start = time.perf_counter()
    from dsocr.no_pandas import hide_pandas
    hide_pandas()  # as `dsocr analyze` does
    from dsocr.analyze.runner import analyze_run
    imported = time.perf_counter()
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "default" else None
    analysis = analyze_run(Path(sys.argv[1]), jobs=jobs)
    done = time.perf_counter()
    stages = analysis.summary.stages
    print(json.dumps({"import_s": imported - start, "analyze_s": done - imported,
                      "modules_without_bytecode": modules_without_bytecode(),
                      "kernels": {s: stages[s].kernel_count.median for s in stages}}))
    """
)

#: HTA analyses that answer what analyze's outputs answer (``--hta-matched``), timed one by one.
HTA_MATCHED = ("get_gpu_kernels_with_user_annotations", "get_temporal_breakdown", "get_cuda_kernel_launch_stats")

HTA_CHILD = UNCOMPILED + textwrap.dedent(
    """
    import json, logging, sys, time
    logging.disable(logging.WARNING)
    start = time.perf_counter()
    from hta.trace_analysis import TraceAnalysis
    imported = time.perf_counter()
    analyzer = TraceAnalysis(trace_dir=sys.argv[1])
    loaded = time.perf_counter()
    kernel_types, kernels = analyzer.get_gpu_kernel_breakdown(visualize=False)
    done = time.perf_counter()
    result = {"import_s": imported - start, "load_s": loaded - imported, "breakdown_s": done - loaded,
              "kernel_rows": int(len(kernels)), "kernel_total_us": float(kernel_types["sum"].sum()),
              "cpu_to_breakdown_s": time.process_time()}
    if sys.argv[2] == "matched":
        calls = {
            "get_gpu_kernels_with_user_annotations": lambda: analyzer.get_gpu_kernels_with_user_annotations(rank=0),
            "get_temporal_breakdown": lambda: analyzer.get_temporal_breakdown(visualize=False),
            "get_cuda_kernel_launch_stats": lambda: analyzer.get_cuda_kernel_launch_stats(visualize=False),
        }
        result["matched_s"] = {}
        for name, call in calls.items():
            began = time.perf_counter()
            try:
                call()
                result["matched_s"][name] = time.perf_counter() - began
            except Exception as exc:  # HTA's own failure on this trace: recorded, not fatal
                result["matched_s"][name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    result["cpu_end_s"] = time.process_time()
    result["modules_without_bytecode"] = modules_without_bytecode()
    if sys.argv[2] == "cross":
        frame = analyzer.get_gpu_kernels_with_user_annotations(rank=0, expand_names=True, shortern_names=False)
        grouped = frame.groupby("s_user_annotation")["dur"].agg(["sum", "count"])
        result["per_annotation_us"] = {str(k): [float(v["sum"]), int(v["count"])] for k, v in grouped.iterrows()}
        result["total_us"] = float(frame["dur"].sum())
        result["kernel_count"] = int(len(frame))
    print(json.dumps(result))
    """
)


def parse_size(text: str) -> int:
    """``300k``, ``0.3M``, ``3M`` or a plain integer -> events."""
    text = text.strip().lower()
    if text and text[-1] in SUFFIXES:
        return int(float(text[:-1]) * SUFFIXES[text[-1]])
    return int(text)


#: Runs the command after its first argument and writes that command's own peak RSS (KiB), CPU
#: seconds and exit status to the file named by its first argument. Linux keeps a process's RSS
#: high-water mark across fork and exec (the forked copy starts at its parent's RSS): a child
#: started straight from a bench that built a run of gigabytes in memory reported the bench's
#: peak, not its own. Started from this small launcher, the child starts at the launcher's (~10 MiB).
LAUNCHER = textwrap.dedent(
    """
    import json, os, subprocess, sys
    process = subprocess.Popen(sys.argv[2:])
    _, status, usage = os.wait4(process.pid, 0)
    with open(sys.argv[1], "w") as out:
        json.dump({"status": status, "maxrss_kib": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, out)
    """
)


def run_child(
    command: list[str], cwd: Path, extra_env: dict[str, str] | None = None
) -> tuple[dict[str, Any], float, float, float]:
    """Run a child process; return (its JSON line, wall seconds, peak RSS MiB, CPU seconds),
    its peak RSS and CPU time measured by ``LAUNCHER``."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".json") as usage_file,
    ):
        launched = [sys.executable, "-c", LAUNCHER, usage_file.name, *command]
        subprocess.run(launched, stdout=out, stderr=err, cwd=cwd, env=env, check=False)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        usage = json.loads(Path(usage_file.name).read_text() or "{}")
    code = os.waitstatus_to_exitcode(usage["status"]) if "status" in usage else None
    if code != 0:
        raise SystemExit(f"{command[0]} failed ({code}):\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), wall, usage["maxrss_kib"] / KIB, usage["cpu_s"]


def replicate(source: Path, out: Path, events: int) -> int:
    """Write a run of about ``events`` events made of shifted copies of ``source``'s images."""
    files = [str(path) for path in rundir.trace_files(source)]
    trace = ds.dataset(files, format="parquet", schema=schema.TRACE).to_table()
    predictions = rundir.read_predictions(source)
    copies = max(1, math.ceil(events / trace.num_rows))
    extent = pc.max(pc.add(trace["ts_ns"], trace["dur_ns"])).as_py() - pc.min(trace["ts_ns"]).as_py()
    id_stride = max(pc.max(trace["correlation"]).as_py() or 0, pc.max(trace["external_id"]).as_py() or 0) + 1
    images = trace["image_index"].unique().to_pylist()
    shutil.rmtree(out, ignore_errors=True)
    run = json.loads((source / rundir.RUN_JSON).read_text())
    rundir.write_json_atomic(out / rundir.RUN_JSON, {**run, "replicated_from": str(source), "copies": copies})
    rows = []
    for copy in range(copies):
        shift = copy * (extent + GAP_NS)
        for position, image in enumerate(images):
            index = copy * len(images) + position
            part = trace.filter(pc.equal(trace["image_index"], image))
            part = part.set_column(0, "image_index", pa.array([index] * part.num_rows, pa.int32()))
            part = part.set_column(part.schema.get_field_index("ts_ns"), "ts_ns", pc.add(part["ts_ns"], shift))
            for column in ("correlation", "external_id"):
                shifted = pc.add(part[column], copy * id_stride)
                part = part.set_column(part.schema.get_field_index(column), column, shifted)
            for chunk in part["chunk"].unique().to_pylist():
                path = out / rundir.TRACE_DIR / "rank=0" / f"image{index:07d}-chunk{chunk:04d}.parquet"
                rundir.write_table_atomic(part.filter(pc.equal(part["chunk"], chunk)).cast(schema.TRACE), path)
        for row in predictions.to_pylist():
            rows.append({**row, "image_index": copy * len(images) + images.index(row["image_index"])})
    rundir.write_predictions(rundir.rows_to_table(rows, schema.PREDICTIONS), out)
    return copies * trace.num_rows


def measure(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """A replicated run of about ``size`` events: analyze on its Parquet, HTA on its export-trace JSON."""
    run_dir = args.work / f"run-{size}"
    events = replicate(args.source, run_dir, size)
    row: dict[str, Any] = {"target": size, "events": events, "hta_input": "dsocr export-trace"}
    row |= measure_analyze(run_dir, args)
    if args.hta_python and events <= args.hta_max_events:
        row |= hta_on(args.work / f"hta-{size}", lambda path: export_trace(run_dir, output=path)[0], args)
    if not args.keep:
        shutil.rmtree(run_dir)
    return row


def measure_kineto_run(run_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """A run captured with ``--keep-kineto``: analyze on its Parquet against HTA on torch's own JSON
    of the same trace (what HTA is given when used on its own), then against HTA on dsocr's
    export-trace JSON of it (the input of the replicated sizes). One image in one chunk: HTA
    reads one trace file per rank."""
    kept = sorted((run_dir / rundir.TRACE_DIR / rundir.KINETO_DIR).glob("*.json"))
    if len(kept) != 1:
        raise SystemExit(
            f"--kineto-run {run_dir}: needs exactly one kept Kineto JSON (one image, --profile full,"
            f" --full-chunk-steps above its tokens, --keep-kineto), found {len(kept)}"
        )
    events = sum(pq.ParquetFile(path).metadata.num_rows for path in rundir.trace_files(run_dir))
    analyze = measure_analyze(run_dir, args)
    rows = []
    for hta_input in ("torch export_chrome_trace", "dsocr export-trace"):
        row: dict[str, Any] = {"target": events, "events": events, "hta_input": hta_input, **analyze}
        if args.hta_python:
            if hta_input.startswith("torch"):
                row |= hta_on(args.work / "hta-kineto", lambda path: Path(shutil.copy(kept[0], path)), args)
            else:
                row |= hta_on(args.work / "hta-kineto", lambda path: export_trace(run_dir, output=path)[0], args)
        rows.append(row)
    return rows


def hta_on(hta_dir: Path, write_input: Callable[[Path], Path], args: argparse.Namespace) -> dict[str, Any]:
    """HTA on the one trace ``write_input(path)`` writes into a fresh ``hta_dir``: the seconds that
    writing took (``export_s``), the JSON's size, then measure_hta's figures."""
    shutil.rmtree(hta_dir, ignore_errors=True)
    hta_dir.mkdir(parents=True)
    start = time.perf_counter()
    path = write_input(hta_dir / "rank-0.json")
    row: dict[str, Any] = {"export_s": time.perf_counter() - start, "json_mib": path.stat().st_size / MIB}
    row |= measure_hta(hta_dir, args)
    if not args.keep:
        shutil.rmtree(hta_dir)
    return row


def measure_analyze(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``analyze_run`` on ``run_dir``, ``--repeats`` times, each in its own process."""
    # analyze takes seconds and HTA minutes, so a load spike on a shared machine can swamp one
    # analyze run: it runs --repeats times and the median counts (every run is kept).
    runs = [run_child([sys.executable, "-c", ANALYZE_CHILD, str(run_dir)], ROOT) for _ in range(args.repeats)]
    return {
        "parquet_mib": sum(p.stat().st_size for p in rundir.trace_files(run_dir)) / MIB,
        "analyze_wall_s": statistics.median(wall for _, wall, _, _ in runs),
        "analyze_s": statistics.median(child["analyze_s"] for child, _, _, _ in runs),
        "analyze_cpu_s": statistics.median(cpu for _, _, _, cpu in runs),
        "analyze_rss_mib": max(rss for _, _, rss, _ in runs),
        "analyze_modules_without_bytecode": max(child["modules_without_bytecode"] for child, _, _, _ in runs),
        "analyze_runs": [
            {"wall_s": wall, "analyze_s": child["analyze_s"], "cpu_s": cpu} for child, wall, _, cpu in runs
        ],
    }


def measure_hta(hta_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """HTA's load and kernel breakdown of the trace in ``hta_dir`` (and the matched analyses), one process."""
    mode = "matched" if args.hta_matched else "plain"
    # The annotation join fails on HTA's own µs rounding of sub-µs kernels (see cross_check):
    # the matched run turns that rounding off, which also spares its load one pass.
    env = {"HTA_DISABLE_NS_ROUNDING": "1"} if args.hta_matched else None
    command = [str(args.hta_python), "-c", HTA_CHILD, str(hta_dir), mode]
    hta, hta_wall, hta_rss, hta_cpu = run_child(command, ROOT, env)
    row: dict[str, Any] = {"hta_ns_rounding": not args.hta_matched}
    extra = hta.get("matched_s", {})
    extra_s = sum(value for value in extra.values() if isinstance(value, float))
    # The headline HTA time ends with the breakdown: the matched analyses ran after it.
    row |= {"hta_wall_s": hta_wall - extra_s, "hta_load_s": hta["load_s"], "hta_breakdown_s": hta["breakdown_s"]}
    row["hta_cpu_s"] = hta_cpu - (hta["cpu_end_s"] - hta["cpu_to_breakdown_s"])
    if extra:
        row |= {"hta_matched_s": extra, "hta_matched_wall_s": hta_wall, "hta_matched_cpu_s": hta_cpu}
    row["hta_rss_mib"] = hta_rss
    row["hta_modules_without_bytecode"] = hta["modules_without_bytecode"]
    return row


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def print_markdown(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table of ``header`` and ``rows`` (cells already formatted) on stdout."""
    for cells in (header, ["---"] * len(header), *rows):
        print("| " + " | ".join(cells) + " |")


def add_ratios(row: dict[str, Any]) -> None:
    """HTA over analyze: wall time, CPU time, peak memory, and wall time with the matched analyses."""
    if "hta_wall_s" not in row:
        return
    row["time_ratio"] = row["hta_wall_s"] / row["analyze_wall_s"]
    row["cpu_ratio"] = row["hta_cpu_s"] / row["analyze_cpu_s"]
    row["memory_ratio"] = row["hta_rss_mib"] / row["analyze_rss_mib"]
    if "hta_matched_wall_s" in row:
        row["matched_time_ratio"] = row["hta_matched_wall_s"] / row["analyze_wall_s"]


def print_table(rows: list[dict[str, Any]]) -> None:
    header = [
        "events", "HTA input", "Parquet MiB", "analyze s (process / analyze_run)", "analyze CPU s",
        "analyze peak MiB", "JSON MiB", "HTA s (load + breakdown)", "HTA CPU s", "HTA peak MiB", "time ratio",
        "CPU ratio", "memory ratio", "HTA s with matched analyses", "matched time ratio",
        "modules compiled at start-up (analyze / HTA)",
    ]  # fmt: skip
    print_markdown(
        header,
        [
            [
                f"{row['events']:,}",
                row["hta_input"],
                _fmt(row["parquet_mib"]),
                f"{_fmt(row['analyze_wall_s'], 2)} / {_fmt(row['analyze_s'], 2)}",
                _fmt(row["analyze_cpu_s"], 2),
                _fmt(row["analyze_rss_mib"], 0),
                _fmt(row.get("json_mib"), 0),
                f"{_fmt(row.get('hta_wall_s'))} ({_fmt(row.get('hta_load_s'))} + {_fmt(row.get('hta_breakdown_s'))})",
                _fmt(row.get("hta_cpu_s")),
                _fmt(row.get("hta_rss_mib"), 0),
                f"{_fmt(row.get('time_ratio'))}x",
                f"{_fmt(row.get('cpu_ratio'))}x",
                f"{_fmt(row.get('memory_ratio'))}x",
                _fmt(row.get("hta_matched_wall_s")),
                f"{_fmt(row.get('matched_time_ratio'))}x",
                f"{row['analyze_modules_without_bytecode']} / {row.get('hta_modules_without_bytecode', '–')}",
            ]
            for row in rows
        ],
    )


def cross_check(args: argparse.Namespace) -> None:
    """HTA's kernel totals per gpu_user_annotation beside analyze's per stage, on the source run."""
    run_dir = args.work / "cross-check"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(args.source, run_dir, ignore=shutil.ignore_patterns(rundir.ANALYSIS_DIR))
    path, _ = export_trace(run_dir, output=run_dir / "hta" / "rank-0.json")
    rounded, *_ = run_child([str(args.hta_python), "-c", HTA_CHILD, str(path.parent), "plain"], ROOT)
    # HTA rounds each start up and each end down to whole µs by default, which turns sub-µs
    # kernels into negative intervals that its annotation join rejects: ask it not to round.
    hta, *_ = run_child(
        [str(args.hta_python), "-c", HTA_CHILD, str(path.parent), "cross"], ROOT, {"HTA_DISABLE_NS_ROUNDING": "1"}
    )
    # analyze's own per-stage kernel sums (all kernels, not only the top-k of kernels.parquet).
    totals = dict.fromkeys(("vision", "prefill_text", "decode"), 0.0)
    counts = dict.fromkeys(totals, 0)
    trace = load_trace(run_dir)
    work = attribute_gpu_ops(trace.gpu_ops, trace.launches, clean_ranges(trace.ranges, trace.chunks)).table
    durations = work["dur_ns"].to_numpy()
    for stage, mask in stage_masks(work).items():
        if stage in totals:
            totals[stage] = float(durations[mask].sum()) / 1e3
            counts[stage] = int(mask.sum())
    per_annotation = hta["per_annotation_us"]
    hta_stage = {"vision": [0.0, 0], "prefill_text": [0.0, 0], "decode": [0.0, 0], "other": [0.0, 0]}
    for name, (total, count) in per_annotation.items():
        stage = {"dsocr.vision": "vision", "dsocr.prefill": "prefill_text"}.get(name)
        stage = stage or ("decode" if name.startswith("dsocr.decode_step#") else "other")
        hta_stage[stage][0] += total
        hta_stage[stage][1] += count
    print("| stage (HTA annotation) | analyze kernels | analyze µs | HTA kernels | HTA µs | difference |")
    print("|---|---|---|---|---|---|")
    labels = {"vision": "dsocr.vision", "prefill_text": "dsocr.prefill (leaf)", "decode": "dsocr.decode_step#*"}
    for stage, label in labels.items():
        ours_us, theirs_us = totals[stage], hta_stage[stage][0]
        diff = (theirs_us - ours_us) / ours_us * 100 if ours_us else float("nan")
        print(f"| {stage} ({label}) | {counts[stage]:,} | {ours_us:,.1f} | {hta_stage[stage][1]:,} |"
              f" {theirs_us:,.1f} | {diff:+.2f}% |")  # fmt: skip
    print(f"| other annotations or none (HTA) | – | – | {hta_stage['other'][1]:,} | {hta_stage['other'][0]:,.1f} | |")
    all_ops = float(durations.sum()) / 1e3
    print(f"| all GPU activities | {work.num_rows:,} | {all_ops:,.1f} | {hta['kernel_count']:,} |"
          f" {hta['total_us']:,.1f} (rounded: {rounded['kernel_total_us']:,.1f}) |"
          f" {(hta['total_us'] - all_ops) / all_ops * 100:+.2f}% |")  # fmt: skip


def compile_bytecode(args: argparse.Namespace) -> None:
    """Bytecode for what analyze (as ``dsocr analyze`` runs it) and HTA import, from one run of each
    on a copy of ``--source`` (HTA on its export)."""
    small = args.work / "bytecode-run"
    shutil.rmtree(small, ignore_errors=True)
    shutil.copytree(args.source, small, ignore=shutil.ignore_patterns(rundir.ANALYSIS_DIR))
    analyze_code = (
        "from dsocr.no_pandas import hide_pandas; hide_pandas(); import dsocr.cli; from pathlib import Path; "
        f"from dsocr.analyze.runner import analyze_run; analyze_run(Path({str(small)!r}))"
    )
    counts = {"analyze": compile_imported(sys.executable, analyze_code)}
    if args.hta_python:
        hta_dir = args.work / "bytecode-hta"
        shutil.rmtree(hta_dir, ignore_errors=True)
        hta_dir.mkdir(parents=True)
        export_trace(small, output=hta_dir / "rank-0.json")
        hta_code = (
            "import logging; logging.disable(logging.WARNING); from hta.trace_analysis import TraceAnalysis; "
            f"TraceAnalysis(trace_dir={str(hta_dir)!r}).get_gpu_kernel_breakdown(visualize=False)"
        )
        counts["HTA"] = compile_imported(str(args.hta_python), hta_code)
    print(
        "bytecode written: " + ", ".join(f"{count} modules for {tool}" for tool, count in counts.items()),
        file=sys.stderr,
    )


def replicated_run_parser(description: str, *, sizes: str, work: str, tool: str) -> argparse.ArgumentParser:
    """The options of a bench that replicates ``--source`` to ``--sizes`` events and times ``tool``
    against HTA there: sizes, source, work folder, HTA's interpreter, repeats, keep, JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--sizes", default=sizes, help=f"Comma-separated event counts (300k, 0.3M, 3M; default {sizes})."
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="Run whose event mix is replicated.")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / work)
    parser.add_argument("--hta-python", type=Path, help="Interpreter with holistictraceanalysis installed.")
    parser.add_argument("--repeats", type=int, default=3, help=f"{tool} runs per size (the median counts).")
    parser.add_argument("--keep", action="store_true", help="Keep the generated runs and JSON under --work.")
    parser.add_argument("--json", type=Path, help="Also write every figure here.")
    return parser


def main() -> None:
    parser = replicated_run_parser(
        __doc__.split("\n\n")[0], sizes=DEFAULT_SIZES, work="dsocr-bench-analyze", tool="analyze"
    )
    parser.add_argument("--hta-max-events", type=int, default=DEFAULT_HTA_MAX, help="Largest size given to HTA.")
    parser.add_argument("--cross-check", action="store_true", help="Per-range kernel totals against HTA, then exit.")
    parser.add_argument(
        "--hta-matched", action="store_true", help="Also time the HTA analyses matching analyze's outputs."
    )
    parser.add_argument(
        "--compile-bytecode",
        action="store_true",
        help="First write bytecode for every module either tool imports (each runs once on --source), as a pip"
        " install would have: on an image without .pyc files both would otherwise compile them in every process.",
    )
    parser.add_argument(
        "--kineto-run",
        type=Path,
        help="A run captured with --keep-kineto (one image, one chunk): HTA reads torch's own JSON of its trace"
        " instead of a replicated run's export (--sizes is then ignored).",
    )
    args = parser.parse_args()
    if not (args.source / rundir.RUN_JSON).is_file():
        raise SystemExit(f"--source {args.source}: not a dsocr run directory")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.cross_check:
        if not args.hta_python:
            raise SystemExit("--cross-check needs --hta-python")
        cross_check(args)
        return
    if args.compile_bytecode:
        compile_bytecode(args)
    rows = []
    load_before = os.getloadavg()
    if args.kineto_run:
        rows += measure_kineto_run(args.kineto_run, args)
        for row in rows:
            add_ratios(row)
    for size in () if args.kineto_run else (parse_size(text) for text in args.sizes.split(",")):
        rows.append(measure(size, args))
        add_ratios(rows[-1])
        print(f"measured {rows[-1]['events']:,} events", file=sys.stderr)
    print_table(rows)
    if args.json:
        # The machine's state beside the figures: on a shared box, wall ratios move with its load.
        machine = {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()}
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
