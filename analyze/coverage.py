"""summary.json ``coverage``: what the trace could not see or attribute, counted, never dropped."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow.compute as pc
from dsocr.analyze.findings import decode_coverage
from dsocr.analyze.inputs import AnalysisInputs

from dsocr.vocab import NS_PER_MS, ImageStatus


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
    #: Flush chunks whose ranges launched no GPU work at all while other chunks did: a profiler
    #: session that recorded the CPU side only (GPU traces only; docs/performance.md).
    chunks_without_device_work: int = 0
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


def coverage_figures(inputs: AnalysisInputs) -> Coverage:
    """The counts of summary.json ``coverage`` (GPU counts stay 0 on a trace without device time)."""
    trace = inputs.trace
    images = images_ok = 0
    for table in inputs.predictions.columns("status"):
        images += table.num_rows
        images_ok += int(pc.sum(pc.equal(table["status"], ImageStatus.ok)).as_py() or 0)
    steps_traced, steps_total = decode_coverage(inputs.timings)
    figures = Coverage(
        trace_events=trace.events,
        trace_files=trace.files,
        flush_chunks=trace.flush_chunks,
        flush_gaps=trace.flush_chunks - trace.images_with_trace,
        images_with_trace=trace.images_with_trace,
        trace_images_every=inputs.run.config.traced_every if inputs.run.config is not None else 1,
        images_ok=images_ok,
        images_failed=images - images_ok,
        ranges=trace.ranges,
        ranges_cut_by_flush=trace.ranges_cut_by_flush,
        duplicate_ranges=trace.duplicate_ranges,
        steps_traced=steps_traced,
        steps_total=steps_total,
        steps_not_traced=max(steps_total - steps_traced, 0),
    )
    if not trace.device_time:
        return figures
    return replace(
        figures,
        gpu_ops=trace.gpu_ops,
        gpu_ops_outside_ranges=trace.gpu_ops_outside_ranges,
        gpu_ops_outside_ranges_ms=float(trace.gpu_ops_outside_ranges_ns) / NS_PER_MS,
        gpu_ops_without_launch=trace.gpu_ops_without_launch,
        duplicate_launch_ids=trace.duplicate_launch_ids,
        kernels_start_before_launch=trace.kernels_start_before_launch,
        gpu_ops_shared_launch=trace.gpu_ops_shared_launch,
        ranges_without_device_work=trace.ranges_without_device_work,
        chunks_without_device_work=trace.chunks_without_device_work,
    )
