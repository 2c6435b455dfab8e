"""Run-level figures (summary.json): medians and p90 across images, coverage, the check."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.stats import describe

from dsocr import schema
from dsocr.vocab import STAGES, Stage

STAGE_FIGURES = (
    "cpu_ms",
    "gpu_busy_ms",
    "gpu_span_ms",
    "gpu_range_ms",
    "kernel_count",
    "memcpy_count",
    "memset_count",
    "reference_ms",
)
LATENCY_FIGURES = (
    "ttft_ms",
    "tpot_mean_ms",
    "tpot_p50_ms",
    "tpot_p90_ms",
    "tpot_p99_ms",
    "tpot_max_ms",
    "decode_tokens_per_s",
)


@dataclass(frozen=True)
class Coverage:
    """What the trace could not see or attribute, counted rather than dropped."""

    trace_events: int = 0
    trace_files: int = 0
    flush_chunks: int = 0
    #: Gaps between consecutive flush chunks of one image (the profiler restarting).
    flush_gaps: int = 0
    images_with_trace: int = 0
    images_ok: int = 0
    images_failed: int = 0
    ranges: int = 0
    #: vision, prefill and decode-step ranges that launched no GPU work (GPU traces only).
    ranges_without_device_work: int = 0
    ranges_cut_by_flush: int = 0
    duplicate_ranges: int = 0
    steps_traced: int = 0
    steps_total: int = 0
    gpu_ops: int = 0
    #: GPU activities whose launch is in no dsocr range (e.g. inside profiler steps).
    gpu_ops_outside_ranges: int = 0
    gpu_ops_outside_ranges_ms: float = 0.0
    #: GPU activities whose correlation id matches no launch call in the same chunk.
    gpu_ops_without_launch: int = 0
    duplicate_launch_ids: int = 0
    #: GPU activities recorded as starting before their own launch (corrupt timestamps, left out).
    kernels_start_before_launch: int = 0

    @property
    def steps_not_traced(self) -> int:
        return max(self.steps_total - self.steps_traced, 0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps_not_traced": self.steps_not_traced}


def _column(table: pa.Table, name: str) -> list[Any]:
    return table[name].to_pylist()


def _stage_summary(timings: pa.Table, stage: str) -> dict[str, Any]:
    rows = timings.filter(pc.equal(timings["stage"], stage))
    measured = rows.filter(pc.is_valid(rows["cpu_ms"]))
    figures: dict[str, Any] = {"images": measured.num_rows}
    for name in STAGE_FIGURES:
        figures[name] = describe(_column(rows if name == "reference_ms" else measured, name))
    diffs = [value for value in _column(rows, "reference_rel_diff") if value is not None]
    measures = sorted({value for value in _column(rows, "check_measure") if value is not None})
    figures["check"] = {
        "measure": measures[0] if len(measures) == 1 else measures or None,
        "rel_diff": describe(diffs),
        "max_abs_rel_diff": max((abs(value) for value in diffs), default=None),
    }
    if stage == Stage.decode:
        busy, span = _column(measured, "gpu_busy_ms"), _column(measured, "gpu_span_ms")
        shares = [1 - b / s for b, s in zip(busy, span, strict=True) if b is not None and s]
        figures["gpu_idle_share"] = describe(shares)
        figures["steps_traced"] = sum(value or 0 for value in _column(measured, "steps_traced"))
    return figures


def summarize(
    *,
    run_dir: str,
    trace_state: dict[str, Any],
    timings: pa.Table,
    latency: pa.Table,
    coverage: Coverage,
    top_kernels: pa.Table,
) -> dict[str, Any]:
    """The summary.json payload."""
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "run_dir": run_dir,
        "trace": trace_state,
        "stages": {stage: _stage_summary(timings, stage) for stage in STAGES},
        "latency": {name: describe(_column(latency, name)) for name in LATENCY_FIGURES},
        "coverage": coverage.to_dict(),
        "images": latency.to_pylist(),
        "top": top_kernels.to_pylist(),
    }
