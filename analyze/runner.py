"""``analyze_run``: read a run directory, compute every analysis, write ``analysis/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.attribution import GpuWork, attribute_gpu_ops, lane_ids, operator_rows, place
from dsocr.analyze.cold import ColdOperatorTotals, cold_impact
from dsocr.analyze.cpu_self import self_time_ns
from dsocr.analyze.kernels import DEFAULT_TOP, CpuOperatorTotals, kernels_table, name_codes, top_gpu
from dsocr.analyze.keys import image_key, step_key
from dsocr.analyze.latency import latency_table
from dsocr.analyze.load import TraceTables, load_trace
from dsocr.analyze.per_rank import rank_figures
from dsocr.analyze.ranges import Ranges, clean_ranges
from dsocr.analyze.reference import ok_predictions, timings_table
from dsocr.analyze.stages import MEASURED, measure_stages
from dsocr.analyze.summary import Coverage, summarize

from dsocr import rundir
from dsocr.records import RunRecord
from dsocr.vocab import NS_PER_MS, AnalysisFile, ImageStatus, ProfileMode, RangeStage, RunKind, Stage


@dataclass(frozen=True)
class Analysis:
    """What ``analyze_run`` computed and where it wrote it."""

    summary: dict[str, Any]
    timings: pa.Table
    kernels: pa.Table
    output_dir: Path


def _missing_reason(run: RunRecord, predictions: pa.Table) -> str:
    if run.kind is RunKind.import_:
        return "imported outputs carry no trace"
    modes = {mode for mode in predictions["profile_mode"].to_pylist() if mode}
    if modes == {ProfileMode.off}:
        return "profiling was off (--profile off)"
    return f"no trace files under {rundir.TRACE_DIR}/"


def _ranges_without_work(ranges: pa.Table, work: pa.Table) -> int:
    """Vision, prefill and decode-step ranges that launched nothing on the GPU."""
    missing = 0
    for stage, flag in ((RangeStage.vision, "in_vision"), (RangeStage.prefill, "in_prefill")):
        stage_ranges = ranges.filter(pc.equal(ranges["stage"], stage))
        with_work = np.unique(image_key(work.filter(work[flag])))
        missing += int(np.count_nonzero(~np.isin(image_key(stage_ranges), with_work)))
    steps = ranges.filter(pc.equal(ranges["stage"], RangeStage.decode_step))
    stepped = work.filter(pc.is_valid(work["step"]))
    all_keys = np.concatenate([image_key(steps), image_key(stepped)])
    all_steps = np.concatenate([steps["step"].to_numpy(), stepped["step"].to_numpy()])
    keyed = step_key(all_keys, all_steps)
    missing += int(np.count_nonzero(~np.isin(keyed[: steps.num_rows], keyed[steps.num_rows :])))
    return missing


def _coverage(
    trace: TraceTables, ranges: Ranges, gpu: GpuWork | None, timings: pa.Table, predictions: pa.Table
) -> Coverage:
    decode = timings.filter(pc.and_(pc.equal(timings["stage"], Stage.decode), pc.is_valid(timings["cpu_ms"])))
    images_with_trace = trace.chunks.group_by(["rank", "image_index"]).aggregate([]).num_rows
    statuses = predictions["status"].to_pylist()
    figures: dict[str, Any] = {
        "trace_events": trace.events,
        "trace_files": trace.files,
        "flush_chunks": trace.chunks.num_rows,
        "flush_gaps": trace.chunks.num_rows - images_with_trace,
        "images_with_trace": images_with_trace,
        "images_ok": statuses.count(ImageStatus.ok),
        "images_failed": len(statuses) - statuses.count(ImageStatus.ok),
        "ranges": ranges.table.num_rows,
        "ranges_cut_by_flush": ranges.cut_by_flush,
        "duplicate_ranges": ranges.duplicates,
        "steps_traced": int(pc.sum(decode["steps_traced"]).as_py() or 0),
        "steps_total": int(pc.sum(decode["steps_total"]).as_py() or 0),
    }
    if gpu is not None and trace.has_device_time:
        work = gpu.table
        outside = pc.and_(pc.invert(work["in_prefill"]), pc.is_null(work["step"]))
        figures |= {
            "gpu_ops": work.num_rows,
            "gpu_ops_outside_ranges": int(pc.sum(outside).as_py() or 0),
            "gpu_ops_outside_ranges_ms": float(pc.sum(work.filter(outside)["dur_ns"]).as_py() or 0) / NS_PER_MS,
            "gpu_ops_without_launch": gpu.without_launch,
            "duplicate_launch_ids": gpu.duplicate_launch_ids,
            "kernels_start_before_launch": gpu.start_before_launch,
            "ranges_without_device_work": _ranges_without_work(ranges.table, work),
        }
    return Coverage(**figures)


def _stage_cpu_ns(measured: pa.Table) -> dict[str, float]:
    totals = measured.group_by("stage").aggregate([("cpu_ms", "sum")]).to_pylist()
    return {row["stage"]: (row["cpu_ms_sum"] or 0.0) * NS_PER_MS for row in totals}


def _operator_codes(work: pa.Table, cpu_ops: pa.Table) -> tuple[np.ndarray, list[str]]:
    """Per GPU activity, the name code of the cpu_op that launched it (-1: none in the trace)."""
    codes, names = name_codes(cpu_ops["name"])
    rows = operator_rows(work, cpu_ops)
    return np.where(rows >= 0, codes[np.maximum(rows, 0)], -1), names


def _analyze_trace(
    trace: TraceTables, *, top: int, ok: pa.Table
) -> tuple[Ranges, GpuWork | None, pa.Table, pa.Table, ColdOperatorTotals]:
    """Ranges, attributed GPU work, measured stages, the top-k tables of a loaded trace, and CPU
    operator time of cold against warm decode steps."""
    ranges = clean_ranges(trace.ranges, trace.chunks)
    gpu = attribute_gpu_ops(trace.gpu_ops, trace.launches, ranges) if trace.has_device_time else None
    measured = measure_stages(
        ranges.table, gpu.table if gpu is not None else trace.gpu_ops, has_device_time=trace.has_device_time
    )
    totals = CpuOperatorTotals(name_codes(trace.cpu_ops["name"])[1])
    cold_totals = ColdOperatorTotals(ok, totals.names)
    # One flush chunk at a time: operators nest within a chunk, and memory stays bounded.
    for batch in trace.cpu_ops.to_batches():
        ops = pa.Table.from_batches([batch])
        lanes = lane_ids(ops, ranges)
        ops = place(ops, ops["ts_ns"].to_numpy(), lanes, ranges)
        on_lane = lanes >= 0
        self_ns = np.zeros(lanes.size, dtype=np.int64)
        self_ns[on_lane] = self_time_ns(
            lanes[on_lane], ops["ts_ns"].to_numpy()[on_lane], ops["dur_ns"].to_numpy()[on_lane]
        )
        totals.add(ops, self_ns)
        cold_totals.add(ops, name_codes(ops["name"])[0], self_ns)
    tables = totals.tables(_stage_cpu_ns(measured), top=top)
    if gpu is not None:
        codes, names = _operator_codes(gpu.table, trace.cpu_ops)
        tables = top_gpu(gpu.table, codes, names, top=top) + tables
    return ranges, gpu, measured, kernels_table(tables), cold_totals


def analyze_run(run_dir: Path, *, top: int = DEFAULT_TOP, write: bool = True) -> Analysis:
    """Analyze ``run_dir`` from its Parquet files alone and (by default) write ``analysis/``.

    Raises RunDirError / SchemaMismatchError for a directory that is not a readable dsocr run.
    """
    run = rundir.read_run_json(run_dir)
    predictions = rundir.read_predictions(run_dir)
    has_trace = bool(rundir.trace_files(run_dir))
    trace = load_trace(run_dir)
    ok = ok_predictions(predictions)
    cold_operators: list[dict] = []
    if has_trace:
        ranges, gpu, measured, kernels, cold_totals = _analyze_trace(trace, top=top, ok=ok)
        cold_operators = cold_totals.top()
    else:
        ranges, gpu, measured, kernels = (
            clean_ranges(trace.ranges, trace.chunks),
            None,
            MEASURED.empty_table(),
            (kernels_table([])),
        )
    timings = timings_table(predictions, measured, ranges.table, has_trace=has_trace)
    latency = latency_table(predictions, ranges.table)
    trace_state = {
        "present": has_trace,
        "missing_reason": None if has_trace else _missing_reason(run, predictions),
        "device_time": trace.has_device_time,
        "timing_clocks": sorted({c for c in ok_predictions(predictions)["timing_clock"].to_pylist() if c}),
        "profile_modes": sorted({m for m in predictions["profile_mode"].to_pylist() if m}),
    }
    coverage = _coverage(trace, ranges, gpu, timings, predictions)
    summary = summarize(
        run_dir=str(run_dir),
        trace_state=trace_state,
        timings=timings,
        latency=latency,
        coverage=coverage,
        top_kernels=kernels,
    )
    summary["ranks"] = rank_figures(timings, run)
    impact = cold_impact(ok.to_pylist(), cold_operators)
    summary["cold"] = None if impact is None else impact.to_dict()
    output_dir = run_dir / rundir.ANALYSIS_DIR
    if write:
        rundir.write_table_atomic(timings, rundir.analysis_path(run_dir, AnalysisFile.timings))
        rundir.write_table_atomic(kernels, rundir.analysis_path(run_dir, AnalysisFile.kernels))
        rundir.write_json_atomic(rundir.analysis_path(run_dir, AnalysisFile.summary), summary)
    return Analysis(summary=summary, timings=timings, kernels=kernels, output_dir=output_dir)
