"""``analyze_run``: read a run directory, compute every analysis, write ``analysis/``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from dsocr.analyze.attribution import GpuWork, attribute_gpu_ops, lane_ids, operator_rows, place
from dsocr.analyze.cold import ColdOperatorTotals
from dsocr.analyze.cpu_self import self_time_ns, whole_call_trees
from dsocr.analyze.inputs import AnalysisInputs
from dsocr.analyze.insights import run_peak, run_roofline_table
from dsocr.analyze.kernels import CpuOperatorTotals, kernels_table, name_codes, operator_part, top_gpu
from dsocr.analyze.latency import latency_table
from dsocr.analyze.load import TraceTables, load_trace
from dsocr.analyze.profiler_flops import StageFlops, add_stage_flops
from dsocr.analyze.ranges import Ranges, clean_ranges
from dsocr.analyze.reference import ok_predictions, timings_table
from dsocr.analyze.stages import MEASURED, measure_stages
from dsocr.analyze.steps import StepTables, step_tables, steps_file_table
from dsocr.analyze.summary import Summary, summarize, to_json
from dsocr.analyze.threads import WorkerPool, ordered_map, worker_pool

from dsocr import rundir
from dsocr.options import DEFAULT_TOP
from dsocr.vocab import NS_PER_MS, AnalysisFile


@dataclass(frozen=True)
class Analysis:
    """What ``analyze_run`` computed and where it wrote it."""

    summary: Summary
    timings: pa.Table
    kernels: pa.Table
    output_dir: Path


def _stage_cpu_ns(measured: pa.Table) -> dict[str, float]:
    """CPU wall time per stage over every image (a few rows per image: no Arrow group_by)."""
    totals_ms: dict[str, float] = {}
    for stage, cpu_ms in zip(measured["stage"].to_pylist(), measured["cpu_ms"].to_pylist(), strict=True):
        totals_ms[stage] = totals_ms.get(stage, 0.0) + (cpu_ms or 0.0)
    return {stage: total * NS_PER_MS for stage, total in totals_ms.items()}


def _operator_codes(work: pa.Table, cpu_ops: pa.Table, codes: np.ndarray) -> np.ndarray:
    """Per GPU activity, the name code of the cpu_op that launched it (-1: none in the trace)."""
    rows = operator_rows(work, cpu_ops)
    if codes.size == 0:  # no cpu_op in the trace (e.g. CUDA activity only): nothing to name
        return np.full(rows.size, -1, dtype=np.int64)
    return np.where(rows >= 0, codes[np.maximum(rows, 0)], -1)


@dataclass(frozen=True)
class _PlacedOps:
    """One slice of cpu_ops (a flush chunk or whole call trees of one), placed in ranges, with
    its shares of the operator totals."""

    ops: pa.Table
    operators: dict[str, tuple[np.ndarray, np.ndarray]]
    cold: list[tuple[np.ndarray, list[int]]]


def _place_cpu_ops(
    piece: tuple[int, pa.RecordBatch], *, ranges: Ranges, codes: np.ndarray, names: int, cold: ColdOperatorTotals
) -> _PlacedOps:
    """Place one slice (``piece``: its first row in cpu_ops, its rows), compute its operators'
    self times and their per-stage and cold/warm sums (here, on the worker thread)."""
    offset, batch = piece
    ops = pa.Table.from_batches([batch])
    lanes = lane_ids(ops, ranges)
    ops = place(ops, ops["ts_ns"].to_numpy(), lanes, ranges)
    on_lane = lanes >= 0
    self_ns = np.zeros(lanes.size, dtype=np.int64)
    self_ns[on_lane] = self_time_ns(lanes[on_lane], ops["ts_ns"].to_numpy()[on_lane], ops["dur_ns"].to_numpy()[on_lane])
    codes = codes[offset : offset + ops.num_rows]
    return _PlacedOps(ops, operator_part(ops, codes, self_ns, names), cold.part(ops, codes, self_ns))


def _with_offsets(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    offset = 0
    for batch in batches:
        yield offset, batch
        offset += batch.num_rows


@dataclass(frozen=True)
class _ImageTables:
    """Per-image tables from the ranges and GPU work alone (no CPU operator): what the caller
    needs besides the operator totals."""

    measured: pa.Table
    timings: pa.Table
    decode_steps: StepTables
    latency: pa.Table


def _image_tables(
    predictions: pa.Table, ranges: Ranges, gpu: GpuWork | None, measured: pa.Table, *, has_trace: bool
) -> _ImageTables:
    """Timings, decode steps and latency per image, beside the measured stages they come from."""
    return _ImageTables(
        measured=measured,
        timings=timings_table(predictions, measured, ranges.table, has_trace=has_trace),
        decode_steps=step_tables(ranges.table, gpu.table if gpu is not None else None, predictions),
        latency=latency_table(predictions, ranges.table),
    )


@dataclass(frozen=True)
class _GpuSide:
    """What needs no CPU operator's self time: attributed GPU work (None without device time),
    its top kernels and operators, and the per-image tables."""

    gpu: GpuWork | None
    gpu_tables: list[pa.Table]
    images: _ImageTables


def _gpu_side(
    trace: TraceTables, ranges: Ranges, predictions: pa.Table, codes: np.ndarray, names: list[str], *, top: int
) -> _GpuSide:
    """The GPU side of a loaded trace (runs on a worker while the CPU operators are placed)."""
    gpu = attribute_gpu_ops(trace.gpu_ops, trace.launches, ranges) if trace.has_device_time else None
    measured = measure_stages(
        ranges.table, gpu.table if gpu is not None else trace.gpu_ops, has_device_time=trace.has_device_time
    )
    gpu_tables = (
        [] if gpu is None else top_gpu(gpu.table, _operator_codes(gpu.table, trace.cpu_ops, codes), names, top=top)
    )
    return _GpuSide(gpu, gpu_tables, _image_tables(predictions, ranges, gpu, measured, has_trace=True))


def _analyze_trace(
    trace: TraceTables,
    pool: WorkerPool,
    *,
    top: int,
    predictions: pa.Table,
    profiler_flops: dict[str, StageFlops],
) -> tuple[Ranges, GpuWork | None, _ImageTables, pa.Table, ColdOperatorTotals]:
    """Ranges, attributed GPU work, the per-image tables, the top-k tables of a loaded trace, and
    CPU operator time of cold against warm decode steps (and, into ``profiler_flops``, the
    profiler's FLOP counts per stage).

    The GPU side and the placing of cpu_ops (a chunk at a time) run on ``pool`` side by side;
    the totals fold the placed chunks here, in order.
    """
    ranges = clean_ranges(trace.ranges, trace.chunks)
    # Name codes once for all cpu_ops (the chunks share one dictionary), sliced per chunk below.
    op_codes, op_names = name_codes(trace.cpu_ops["name"])
    gpu_side = pool.submit(_gpu_side, trace, ranges, predictions, op_codes, op_names, top=top)
    # Only --with-flops traces carry counts; the others skip the per-chunk FLOP bookkeeping.
    carries_flops = trace.cpu_ops["flops"].null_count < trace.cpu_ops.num_rows
    totals = CpuOperatorTotals(op_names)
    cold_totals = ColdOperatorTotals(ok_predictions(predictions), op_names)
    # A flush chunk (or a slice of one that holds whole call trees) at a time: memory stays bounded.
    pieces = _with_offsets(whole_call_trees(trace.cpu_ops, pool.workers))
    place_piece = partial(_place_cpu_ops, ranges=ranges, codes=op_codes, names=len(op_names), cold=cold_totals)
    for placed in ordered_map(pool, place_piece, pieces):
        totals.merge(placed.operators)
        cold_totals.merge(placed.cold)
        if carries_flops:
            add_stage_flops(profiler_flops, placed.ops)
    side = gpu_side.result()
    tables = side.gpu_tables + totals.tables(_stage_cpu_ns(side.images.measured), top=top)
    return ranges, side.gpu, side.images, kernels_table(tables), cold_totals


def analyze_run(
    run_dir: Path,
    *,
    top: int = DEFAULT_TOP,
    write: bool = True,
    peak_tflops: float | None = None,
    peak_gbps: float | None = None,
    jobs: int | None = None,
) -> Analysis:
    """Analyze ``run_dir`` from its Parquet files alone and (by default) write ``analysis/``.

    ``peak_tflops`` / ``peak_gbps`` replace the device's peaks from the table (roofline).
    ``jobs``: threads reading and splitting the trace (default: ``threads.worker_count()``).

    Raises RunDirError / SchemaMismatchError for a directory that is not a readable dsocr run.
    """
    run = rundir.read_run_json(run_dir)
    if write:  # Before any work: analysis/ linking out of the run is refused, not followed.
        rundir.analysis_dir(run_dir)
    # First: a bad --peak-tflops/--peak-gbps is an error before any trace is read.
    peak = run_peak(run, peak_tflops=peak_tflops, peak_gbps=peak_gbps)
    predictions = rundir.read_predictions(run_dir, run)
    has_trace = bool(rundir.trace_files(run_dir))
    cold_operators: list[dict[str, Any]] = []
    profiler_flops: dict[str, StageFlops] = {}
    with worker_pool(jobs) as pool:
        trace = load_trace(run_dir, pool)
        if has_trace:
            ranges, gpu, images, kernels, cold_totals = _analyze_trace(
                trace, pool, top=top, predictions=predictions, profiler_flops=profiler_flops
            )
            cold_operators = cold_totals.top()
        else:
            ranges, gpu, kernels = clean_ranges(trace.ranges, trace.chunks), None, kernels_table([])
            images = _image_tables(predictions, ranges, None, MEASURED.empty_table(), has_trace=False)
    timings, decode_steps = images.timings, images.decode_steps
    inputs = AnalysisInputs(
        run_dir=run_dir,
        run=run,
        predictions=predictions,
        trace=trace,
        has_trace=has_trace,
        ranges=ranges,
        gpu=gpu,
        timings=timings,
        latency=images.latency,
        kernels=kernels,
        cold_operators=cold_operators,
        steps=decode_steps,
        peak=peak,
        roofline=run_roofline_table(run, peak, predictions, timings, decode_steps),
        profiler_flops=profiler_flops,
    )
    summary = summarize(inputs)
    # Per traced decode step, for the report's busy/idle plot: the traced steps computed above.
    steps = steps_file_table(decode_steps.traced)
    output_dir = run_dir / rundir.ANALYSIS_DIR
    if write:
        rundir.write_table_atomic(inputs.timings, rundir.analysis_path(run_dir, AnalysisFile.timings))
        rundir.write_table_atomic(kernels, rundir.analysis_path(run_dir, AnalysisFile.kernels))
        rundir.write_table_atomic(inputs.roofline, rundir.analysis_path(run_dir, AnalysisFile.roofline))
        rundir.write_table_atomic(steps, rundir.analysis_path(run_dir, AnalysisFile.steps))
        rundir.write_json_atomic(rundir.analysis_path(run_dir, AnalysisFile.summary), to_json(summary))
    return Analysis(summary=summary, timings=inputs.timings, kernels=kernels, output_dir=output_dir)
