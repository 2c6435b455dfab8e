"""summary.json as one typed object, built from a list of metrics.

Each field of :class:`Summary` is one part of summary.json, and names the metric that computes
it: a function ``(AnalysisInputs) -> part`` over Arrow tables. To add a part, add one field:

    roofline: Roofline = field(metadata=metric(roofline_figures))

``summarize`` calls every metric in field order; ``to_json`` (``--json``, summary.json) and the
terminal report (analyze/report.py) both render the same object. Document the part in
docs/run-format.md.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.cold import ColdImpact, cold_impact
from dsocr.analyze.coverage import Coverage, coverage_figures
from dsocr.analyze.findings import Finding
from dsocr.analyze.inputs import AnalysisInputs
from dsocr.analyze.insights import finding_list, roofline_figures
from dsocr.analyze.per_rank import Ranks, rank_figures
from dsocr.analyze.reference import ok_predictions
from dsocr.analyze.roofline import Roofline
from dsocr.analyze.stats import describe

from dsocr import rundir, schema
from dsocr.vocab import STAGES, ProfileMode, RunKind, Stage

Metric = Callable[[AnalysisInputs], Any]
_METRIC = "metric"
_OMIT_NONE = "omit_none"


def metric(compute: Metric) -> dict[str, Metric]:
    """Field metadata of a Summary part: ``field(metadata=metric(compute))``."""
    return {_METRIC: compute}


#: Field metadata: the key is left out of the JSON when its value is None.
OMIT_NONE = {_OMIT_NONE: True}


@dataclass(frozen=True)
class Spread:
    """Median and p90 across images (None when no image has the figure)."""

    median: float | None
    p90: float | None


def _spread(values: list[Any]) -> Spread:
    return Spread(**describe(values))


@dataclass(frozen=True)
class TraceState:
    present: bool
    #: Why there is no trace (None when there is one).
    missing_reason: str | None
    device_time: bool
    timing_clocks: list[str]
    profile_modes: list[str]


@dataclass(frozen=True)
class StageCheck:
    """The measured stage against the capture's reference clock."""

    #: The measured column compared: one name, several when images differ, None without a check.
    measure: str | list[str] | None
    rel_diff: Spread
    max_abs_rel_diff: float | None


@dataclass(frozen=True)
class StageFigures:
    images: int
    cpu_ms: Spread
    gpu_busy_ms: Spread
    gpu_span_ms: Spread
    gpu_range_ms: Spread
    kernel_count: Spread
    memcpy_count: Spread
    memset_count: Spread
    reference_ms: Spread
    check: StageCheck
    #: decode only: 1 − busy/span.
    gpu_idle_share: Spread | None = field(default=None, metadata=OMIT_NONE)
    #: decode only: decode-step ranges found in the trace.
    steps_traced: int | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Latency:
    """Per-image latency figures, as median and p90 across images."""

    ttft_ms: Spread
    tpot_mean_ms: Spread
    tpot_p50_ms: Spread
    tpot_p90_ms: Spread
    tpot_p99_ms: Spread
    tpot_max_ms: Spread
    decode_tokens_per_s: Spread


@dataclass(frozen=True)
class TopEntry:
    """One row of analysis/kernels.parquet (schema KERNELS)."""

    stage: str
    kind: str
    name: str
    calls: int
    total_ms: float
    mean_us: float
    share: float


def trace_state(inputs: AnalysisInputs) -> TraceState:
    predictions = inputs.predictions
    modes = sorted({mode for mode in predictions["profile_mode"].to_pylist() if mode})
    if inputs.has_trace:
        missing = None
    elif inputs.run.kind is RunKind.import_:
        missing = "imported outputs carry no trace"
    elif modes == [ProfileMode.off]:
        missing = "profiling was off (--profile off)"
    else:
        missing = f"no trace files under {rundir.TRACE_DIR}/"
    return TraceState(
        present=inputs.has_trace,
        missing_reason=missing,
        device_time=inputs.trace.device_time,
        timing_clocks=sorted({c for c in ok_predictions(predictions)["timing_clock"].to_pylist() if c}),
        profile_modes=modes,
    )


def _column(table: pa.Table, name: str) -> list[Any]:
    return table[name].to_pylist()


def _stage(timings: pa.Table, stage: str) -> StageFigures:
    rows = timings.filter(pc.equal(timings["stage"], stage))
    measured = rows.filter(pc.is_valid(rows["cpu_ms"]))
    diffs = [value for value in _column(rows, "reference_rel_diff") if value is not None]
    measures = sorted({value for value in _column(rows, "check_measure") if value is not None})
    check = StageCheck(
        measure=measures[0] if len(measures) == 1 else measures or None,
        rel_diff=_spread(diffs),
        max_abs_rel_diff=max((abs(value) for value in diffs), default=None),
    )
    decode: dict[str, Any] = {}
    if stage == Stage.decode:
        busy, span = _column(measured, "gpu_busy_ms"), _column(measured, "gpu_span_ms")
        decode["gpu_idle_share"] = _spread([1 - b / s for b, s in zip(busy, span, strict=True) if b is not None and s])
        decode["steps_traced"] = sum(value or 0 for value in _column(measured, "steps_traced"))
    return StageFigures(
        images=measured.num_rows,
        cpu_ms=_spread(_column(measured, "cpu_ms")),
        gpu_busy_ms=_spread(_column(measured, "gpu_busy_ms")),
        gpu_span_ms=_spread(_column(measured, "gpu_span_ms")),
        gpu_range_ms=_spread(_column(measured, "gpu_range_ms")),
        kernel_count=_spread(_column(measured, "kernel_count")),
        memcpy_count=_spread(_column(measured, "memcpy_count")),
        memset_count=_spread(_column(measured, "memset_count")),
        # The reference clock covers images without a trace too.
        reference_ms=_spread(_column(rows, "reference_ms")),
        check=check,
        **decode,
    )


def stage_figures(inputs: AnalysisInputs) -> dict[str, StageFigures]:
    """Per stage (display order): figures as median/p90 across images, and the clock check."""
    return {stage: _stage(inputs.timings, stage) for stage in STAGES}


def latency_figures(inputs: AnalysisInputs) -> Latency:
    return Latency(**{item.name: _spread(_column(inputs.latency, item.name)) for item in fields(Latency)})


def image_rows(inputs: AnalysisInputs) -> list[dict[str, Any]]:
    """One object per image: the columns of the latency table (analyze.latency.LATENCY)."""
    return inputs.latency.to_pylist()


def top_entries(inputs: AnalysisInputs) -> list[TopEntry]:
    return [TopEntry(**row) for row in inputs.kernels.to_pylist()]


def cold_figures(inputs: AnalysisInputs) -> ColdImpact | None:
    """Cold decode steps across the run (None when capture recorded no cold flags)."""
    return cold_impact(ok_predictions(inputs.predictions).to_pylist(), inputs.cold_operators)


@dataclass(frozen=True)
class Summary:
    """analysis/summary.json; each field is computed by the metric named in it, in this order."""

    schema_version: int = field(metadata=metric(lambda inputs: schema.SCHEMA_VERSION))
    run_dir: str = field(metadata=metric(lambda inputs: str(inputs.run_dir)))
    trace: TraceState = field(metadata=metric(trace_state))
    stages: dict[str, StageFigures] = field(metadata=metric(stage_figures))
    latency: Latency = field(metadata=metric(latency_figures))
    coverage: Coverage = field(metadata=metric(coverage_figures))
    images: list[dict[str, Any]] = field(metadata=metric(image_rows))
    top: list[TopEntry] = field(metadata=metric(top_entries))
    ranks: Ranks = field(metadata=metric(rank_figures))
    cold: ColdImpact | None = field(metadata=metric(cold_figures))
    roofline: Roofline = field(metadata=metric(roofline_figures))
    findings: list[Finding] = field(metadata=metric(finding_list))


#: (part name, metric) in summary.json order.
METRICS: tuple[tuple[str, Metric], ...] = tuple((item.name, item.metadata[_METRIC]) for item in fields(Summary))


def summarize(inputs: AnalysisInputs) -> Summary:
    """Every metric of METRICS over ``inputs``."""
    return Summary(**{name: compute(inputs) for name, compute in METRICS})


def to_json(value: Any) -> Any:
    """A summary (or any part of it) as JSON-able values: dataclasses become objects (a part
    with its own ``to_dict()`` is rendered by it)."""
    if callable(getattr(value, "to_dict", None)):
        return to_json(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: to_json(getattr(value, item.name))
            for item in fields(value)
            if not (item.metadata.get(_OMIT_NONE) and getattr(value, item.name) is None)
        }
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
