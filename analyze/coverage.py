"""summary.json ``coverage``: what the trace could not see or attribute, counted, never dropped."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.inputs import AnalysisInputs
from dsocr.analyze.keys import dense_codes, image_key, step_key

from dsocr.vocab import NS_PER_MS, ImageStatus, RangeStage, Stage


@dataclass(frozen=True)
class Coverage:
    """What the trace could not see or attribute, counted rather than dropped."""

    trace_events: int = 0
    trace_files: int = 0
    flush_chunks: int = 0
    #: Gaps between consecutive flush chunks of one image (the profiler restarting).
    flush_gaps: int = 0
    images_with_trace: int = 0
    #: N of capture's ``--trace-images N``: every Nth image traced (1: every image).
    trace_images_every: int = 1
    images_ok: int = 0
    images_failed: int = 0
    ranges: int = 0
    #: vision, prefill and decode-step ranges that launched no GPU work (GPU traces only).
    ranges_without_device_work: int = 0
    ranges_cut_by_flush: int = 0
    duplicate_ranges: int = 0
    steps_traced: int = 0
    steps_total: int = 0
    steps_not_traced: int = 0
    gpu_ops: int = 0
    #: GPU activities whose launch is in no dsocr range (e.g. inside profiler steps).
    gpu_ops_outside_ranges: int = 0
    gpu_ops_outside_ranges_ms: float = 0.0
    #: GPU activities whose correlation id matches no launch call in the same chunk.
    gpu_ops_without_launch: int = 0
    duplicate_launch_ids: int = 0
    #: GPU activities recorded as starting before their own launch (corrupt timestamps, left out).
    kernels_start_before_launch: int = 0
    #: GPU activities that share their launch call with others: the kernels of CUDA graph launches.
    gpu_ops_shared_launch: int = 0


def _ranges_without_work(ranges: pa.Table, work: pa.Table) -> int:
    """Vision, prefill and decode-step ranges that launched nothing on the GPU."""
    missing = 0
    # Numpy masks over the work's keys, not filtered copies of the whole work table.
    work_keys = image_key(work)
    for stage, flag in ((RangeStage.vision, "in_vision"), (RangeStage.prefill, "in_prefill")):
        stage_ranges = ranges.filter(pc.equal(ranges["stage"], stage))
        with_work = dense_codes(work_keys[work[flag].to_numpy(zero_copy_only=False)])[0]
        missing += int(np.count_nonzero(~np.isin(image_key(stage_ranges), with_work)))
    steps = ranges.filter(pc.equal(ranges["stage"], RangeStage.decode_step))
    stepped = work["step"].is_valid().to_numpy(zero_copy_only=False)
    all_keys = np.concatenate([image_key(steps), work_keys[stepped]])
    all_steps = np.concatenate([steps["step"].to_numpy(), work["step"].fill_null(0).to_numpy()[stepped]])
    keyed = step_key(all_keys, all_steps)
    missing += int(np.count_nonzero(~np.isin(keyed[: steps.num_rows], keyed[steps.num_rows :])))
    return missing


def coverage_figures(inputs: AnalysisInputs) -> Coverage:
    """The counts of summary.json ``coverage`` (GPU counts stay 0 on a trace without device time)."""
    trace, ranges, timings = inputs.trace, inputs.ranges, inputs.timings
    decode = timings.filter(pc.and_(pc.equal(timings["stage"], Stage.decode), pc.is_valid(timings["cpu_ms"])))
    images_with_trace = int(np.unique(image_key(trace.chunks)).size)
    statuses = inputs.predictions["status"].to_pylist()
    steps_traced = int(pc.sum(decode["steps_traced"]).as_py() or 0)
    steps_total = int(pc.sum(decode["steps_total"]).as_py() or 0)
    figures = Coverage(
        trace_events=trace.events,
        trace_files=trace.files,
        flush_chunks=trace.chunks.num_rows,
        flush_gaps=trace.chunks.num_rows - images_with_trace,
        images_with_trace=images_with_trace,
        trace_images_every=inputs.run.config.traced_every if inputs.run.config is not None else 1,
        images_ok=statuses.count(ImageStatus.ok),
        images_failed=len(statuses) - statuses.count(ImageStatus.ok),
        ranges=ranges.table.num_rows,
        ranges_cut_by_flush=ranges.cut_by_flush,
        duplicate_ranges=ranges.duplicates,
        steps_traced=steps_traced,
        steps_total=steps_total,
        steps_not_traced=max(steps_total - steps_traced, 0),
    )
    if inputs.gpu is None or not trace.has_device_time:
        return figures
    work = inputs.gpu.table
    outside = pc.and_(pc.invert(work["in_prefill"]), pc.is_null(work["step"]))
    return replace(
        figures,
        gpu_ops=work.num_rows,
        gpu_ops_outside_ranges=int(pc.sum(outside).as_py() or 0),
        gpu_ops_outside_ranges_ms=float(work["dur_ns"].to_numpy()[outside.to_numpy(zero_copy_only=False)].sum())
        / NS_PER_MS,
        gpu_ops_without_launch=inputs.gpu.without_launch,
        duplicate_launch_ids=inputs.gpu.duplicate_launch_ids,
        kernels_start_before_launch=inputs.gpu.start_before_launch,
        gpu_ops_shared_launch=inputs.gpu.shared_launch,
        ranges_without_device_work=_ranges_without_work(ranges.table, work),
    )
