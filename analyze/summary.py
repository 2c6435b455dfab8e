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
from dsocr.analyze.clock import STAGE_FIGURE
from dsocr.analyze.cold import ColdImpact, cold_image_rows, cold_impact_of
from dsocr.analyze.coverage import Coverage, coverage_figures
from dsocr.analyze.findings import Finding
from dsocr.analyze.inputs import AnalysisInputs
from dsocr.analyze.insights import finding_list, roofline_figures
from dsocr.analyze.per_rank import Ranks, rank_figures
from dsocr.analyze.reference import ok_predictions
from dsocr.analyze.roofline import Roofline
from dsocr.analyze.stats import describe
from dsocr.analyze.table_rows import TableRows

from dsocr import rundir, schema
from dsocr.json_stream import RowStream
from dsocr.vocab import TIME_STAGES, ProfileMode, RunKind, Stage

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
    """The traced figure against the capture's reference clock over the same traced part."""

    #: The traced column compared: one name, several when images differ, None without a check.
    measure: str | list[str] | None
    rel_diff: Spread
    max_abs_rel_diff: float | None


@dataclass(frozen=True)
class TracedFigures:
    """What the trace saw of a stage, per image for vision and prefill_text (traced whole) and
    per traced decode step for decode (``steps_traced`` of ``steps_total``): never a sum over
    some steps passed off as the stage."""

    #: "image" (the whole stage was traced) or "traced step" (decode).
    per: str
    images: int
    cpu_ms: Spread
    gpu_busy_ms: Spread
    gpu_span_ms: Spread
    gpu_range_ms: Spread
    kernel_count: Spread
    memcpy_count: Spread
    memset_count: Spread
    check: StageCheck
    #: decode only: 1 − busy/span over the traced steps.
    gpu_idle_share: Spread | None = field(default=None, metadata=OMIT_NONE)
    #: decode only: decode steps in the trace, and decode steps of the traced images.
    steps_traced: int | None = field(default=None, metadata=OMIT_NONE)
    steps_total: int | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class StageFigures:
    """One stage of the image on the reference clock (every decode step, every profile mode),
    and what the trace saw of it (None without a trace, and for other/image)."""

    images: int
    #: Median/p90 across images of the whole stage, ms.
    clock_ms: Spread
    #: Sum over the run's images, ms; ``share`` of the run's image time.
    total_ms: float | None
    share: float | None
    trace: TracedFigures | None


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
    #: Over what the trace holds (decode: its traced steps only).
    total_ms_traced: float
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


def _per_step(values: list[Any], steps: list[Any]) -> list[float | None]:
    return [value / count if value is not None and count else None for value, count in zip(values, steps, strict=True)]


def _traced(timings: pa.Table, stage: str) -> TracedFigures | None:
    """The trace's figures of one stage (None when no image of it was traced)."""
    rows = timings.filter(pc.equal(timings["stage"], stage))
    measured = rows.filter(pc.is_valid(rows["cpu_ms_traced"]))
    if measured.num_rows == 0:
        return None
    diffs = [value for value in _column(rows, "reference_rel_diff") if value is not None]
    measures = sorted({value for value in _column(rows, "check_measure") if value is not None})
    check = StageCheck(
        measure=measures[0] if len(measures) == 1 else measures or None,
        rel_diff=_spread(diffs),
        max_abs_rel_diff=max((abs(value) for value in diffs), default=None),
    )
    names = ("cpu_ms", "gpu_busy_ms", "gpu_span_ms", "gpu_range_ms", "kernel_count", "memcpy_count", "memset_count")
    values = {name: _column(measured, f"{name}_traced") for name in names}
    decode: dict[str, Any] = {}
    per = "image"
    if stage == Stage.decode:
        per = "traced step"
        steps = _column(measured, "steps_traced")
        busy, span = values["gpu_busy_ms"], values["gpu_span_ms"]
        decode["gpu_idle_share"] = _spread([1 - b / s for b, s in zip(busy, span, strict=True) if b is not None and s])
        decode["steps_traced"] = sum(value or 0 for value in steps)
        decode["steps_total"] = sum(value or 0 for value in _column(measured, "steps_total"))
        values = {name: _per_step(column, steps) for name, column in values.items()}
    return TracedFigures(
        per=per,
        images=measured.num_rows,
        **{name: _spread(column) for name, column in values.items()},
        check=check,
        **decode,
    )


def stage_figures(inputs: AnalysisInputs) -> dict[str, StageFigures]:
    """Per stage that adds up to the image (vision, prefill_text, decode, other) and the image:
    clock figures across images, run totals and shares, and the trace's figures."""
    images = inputs.latency
    image_total = sum(value for value in _column(images, "image_ms") if value is not None) or None
    result = {}
    for stage, name in STAGE_FIGURE.items():
        values = [value for value in _column(images, name) if value is not None]
        total = sum(values) if values else None
        result[stage] = StageFigures(
            images=len(values),
            clock_ms=_spread(values),
            total_ms=total,
            share=total / image_total if total is not None and image_total else None,
            trace=_traced(inputs.timings, stage) if stage in TIME_STAGES else None,
        )
    return result


def latency_figures(inputs: AnalysisInputs) -> Latency:
    return Latency(**{item.name: _spread(_column(inputs.latency, item.name)) for item in fields(Latency)})


def image_rows(inputs: AnalysisInputs) -> TableRows:
    """One object per image: the columns of the latency table (analyze.latency.LATENCY), made as
    they are read (summary.json is written as they are made: no object per image is held)."""
    return TableRows(inputs.latency)


def top_entries(inputs: AnalysisInputs) -> list[TopEntry]:
    return [TopEntry(**row) for row in inputs.kernels.to_pylist()]


def cold_figures(inputs: AnalysisInputs) -> ColdImpact | None:
    """Cold decode steps across the run (None when capture recorded no cold flags)."""
    return cold_impact_of(inputs.steps.cold, cold_image_rows(inputs.latency), inputs.cold_operators)


@dataclass(frozen=True)
class Summary:
    """analysis/summary.json; each field is computed by the metric named in it, in this order."""

    schema_version: int = field(metadata=metric(lambda inputs: schema.ANALYSIS_SCHEMA_VERSION))
    run_dir: str = field(metadata=metric(lambda inputs: str(inputs.run_dir)))
    trace: TraceState = field(metadata=metric(trace_state))
    stages: dict[str, StageFigures] = field(metadata=metric(stage_figures))
    latency: Latency = field(metadata=metric(latency_figures))
    coverage: Coverage = field(metadata=metric(coverage_figures))
    images: TableRows = field(metadata=metric(image_rows))
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


#: Values that are their own JSON form (exact types: an enum subclassing str or int is not).
_JSON_SCALARS = frozenset({str, int, float, bool})


def to_json(value: Any, *, streamed: bool = False) -> Any:
    """A summary (or any part of it) as JSON-able values: dataclasses become objects (a part
    with its own ``to_dict()`` is rendered by it). ``streamed``: its lists per image become
    ``RowStream``s, made item by item while ``rundir.write_json_atomic`` writes them (else lists)."""

    def convert(item: Any) -> Any:
        return to_json(item, streamed=streamed)

    if value is None or type(value) in _JSON_SCALARS:  # most values: checked first, cheaply
        return value
    if callable(getattr(value, "to_dict", None)):
        return convert(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: convert(getattr(value, item.name))
            for item in fields(value)
            if not (item.metadata.get(_OMIT_NONE) and getattr(value, item.name) is None)
        }
    if isinstance(value, dict):
        return {str(key): convert(item) for key, item in value.items()}
    if streamed and isinstance(value, TableRows):
        return RowStream(len(value), lambda: (convert(item) for item in value))
    if isinstance(value, list | tuple | TableRows):
        return [convert(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
