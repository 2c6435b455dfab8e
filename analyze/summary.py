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

import numpy as np
from dsocr.analyze.clock import STAGE_FIGURE
from dsocr.analyze.cold import ColdImpact, cold_image_rows, cold_impact_of
from dsocr.analyze.coverage import Coverage, coverage_figures
from dsocr.analyze.findings import Finding
from dsocr.analyze.inputs import AnalysisInputs
from dsocr.analyze.insights import finding_list, roofline_figures
from dsocr.analyze.ordered import Slices
from dsocr.analyze.per_rank import Ranks, rank_figures
from dsocr.analyze.reference import ok_predictions
from dsocr.analyze.roofline import Roofline
from dsocr.analyze.sketch import QuantileSketch
from dsocr.analyze.table_rows import SliceRows

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
    modes_seen: set[str] = set()
    clocks: set[str] = set()
    for table in inputs.predictions.columns("profile_mode", "status", "timing_clock"):
        modes_seen |= {mode for mode in table["profile_mode"].to_pylist() if mode}
        clocks |= {clock for clock in ok_predictions(table)["timing_clock"].to_pylist() if clock}
    modes = sorted(modes_seen)
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
        timing_clocks=sorted(clocks),
        profile_modes=modes,
    )


_TRACED_NAMES = ("cpu_ms", "gpu_busy_ms", "gpu_span_ms", "gpu_range_ms", "kernel_count", "memcpy_count", "memset_count")
_TRACED_COLUMNS = (
    "stage", "reference_rel_diff", "check_measure", "steps_traced", "steps_total",
    *(f"{name}_traced" for name in _TRACED_NAMES),
)  # fmt: skip


def _values(values: list[Any]) -> np.ndarray:
    """Python values (None: no value) as floats (NaN: none, which sketches skip)."""
    return np.array([np.nan if value is None else value for value in values], dtype=np.float64)


@dataclass
class _TracedFold:
    """One stage's traced figures, added a slice of timings rows at a time."""

    stage: str
    images: int = 0
    diffs: QuantileSketch = field(default_factory=QuantileSketch)
    max_abs_diff: float | None = None
    measures: set[str] = field(default_factory=set)
    spreads: dict[str, QuantileSketch] = field(default_factory=lambda: {n: QuantileSketch() for n in _TRACED_NAMES})
    idle_share: QuantileSketch = field(default_factory=QuantileSketch)
    steps_traced: int = 0
    steps_total: int = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Add this stage's rows (every row of the stage, measured or not)."""
        diffs = [row["reference_rel_diff"] for row in rows if row["reference_rel_diff"] is not None]
        self.diffs.add(_values(diffs))
        for value in diffs:
            self.max_abs_diff = abs(value) if self.max_abs_diff is None else max(self.max_abs_diff, abs(value))
        self.measures |= {row["check_measure"] for row in rows if row["check_measure"] is not None}
        measured = [row for row in rows if row["cpu_ms_traced"] is not None]
        self.images += len(measured)
        values = {name: [row[f"{name}_traced"] for row in measured] for name in _TRACED_NAMES}
        if self.stage == Stage.decode:
            steps = [row["steps_traced"] for row in measured]
            busy, span = values["gpu_busy_ms"], values["gpu_span_ms"]
            self.idle_share.add(_values([1 - b / s for b, s in zip(busy, span, strict=True) if b is not None and s]))
            self.steps_traced += sum(value or 0 for value in steps)
            self.steps_total += sum(row["steps_total"] or 0 for row in measured)
            values = {name: _per_step(column, steps) for name, column in values.items()}
        for name, column in values.items():
            self.spreads[name].add(_values(column))

    def figures(self) -> TracedFigures | None:
        if self.images == 0:
            return None
        measures = sorted(self.measures)
        check = StageCheck(
            measure=measures[0] if len(measures) == 1 else measures or None,
            rel_diff=Spread(**self.diffs.describe()),
            max_abs_rel_diff=self.max_abs_diff,
        )
        decode: dict[str, Any] = {}
        if self.stage == Stage.decode:
            decode = {
                "gpu_idle_share": Spread(**self.idle_share.describe()),
                "steps_traced": self.steps_traced,
                "steps_total": self.steps_total,
            }
        return TracedFigures(
            per="traced step" if self.stage == Stage.decode else "image",
            images=self.images,
            **{name: Spread(**sketch.describe()) for name, sketch in self.spreads.items()},
            check=check,
            **decode,
        )


def _per_step(values: list[Any], steps: list[Any]) -> list[float | None]:
    return [value / count if value is not None and count else None for value, count in zip(values, steps, strict=True)]


def traced_figures(timings: Slices) -> dict[str, TracedFigures | None]:
    """Per stage of TIME_STAGES, the trace's figures (None when no image of it was traced), in
    one pass over the timings rows."""
    folds = {stage: _TracedFold(stage) for stage in TIME_STAGES}
    for table in timings.columns(*_TRACED_COLUMNS):
        by_stage: dict[str, list[dict[str, Any]]] = {}
        for row in table.to_pylist():
            by_stage.setdefault(row["stage"], []).append(row)
        for stage, rows in by_stage.items():
            if stage in folds:
                folds[stage].add(rows)
    return {stage: fold.figures() for stage, fold in folds.items()}


@dataclass
class _ClockFold:
    """One clock figure across images: its count, its sum in image order, its spread."""

    count: int = 0
    total: float = 0
    spread: QuantileSketch = field(default_factory=QuantileSketch)

    def add(self, values: list[Any]) -> None:
        present = [value for value in values if value is not None]
        self.count += len(present)
        for value in present:  # in order, one at a time: the same float sum as one pass over the images
            self.total += value
        self.spread.add(_values(present))


#: The latency column of an image's whole time (what each stage's share is of).
_IMAGE_MS = "image_ms"


def stage_figures(inputs: AnalysisInputs) -> dict[str, StageFigures]:
    """Per stage that adds up to the image (vision, prefill_text, decode, other) and the image:
    clock figures across images, run totals and shares, and the trace's figures."""
    folds = {name: _ClockFold() for name in {*STAGE_FIGURE.values(), _IMAGE_MS}}
    for table in inputs.latency.columns(*folds):
        for name, fold in folds.items():
            fold.add(table[name].to_pylist())
    image_total = folds[_IMAGE_MS].total or None
    traced = traced_figures(inputs.timings)
    result = {}
    for stage, name in STAGE_FIGURE.items():
        fold = folds[name]
        total = fold.total if fold.count else None
        result[stage] = StageFigures(
            images=fold.count,
            clock_ms=Spread(**fold.spread.describe()),
            total_ms=total,
            share=total / image_total if total is not None and image_total else None,
            trace=traced[stage] if stage in TIME_STAGES else None,
        )
    return result


def latency_figures(inputs: AnalysisInputs) -> Latency:
    names = [item.name for item in fields(Latency)]
    spreads = {name: QuantileSketch() for name in names}
    for table in inputs.latency.columns(*names):
        for name in names:
            spreads[name].add(_values(table[name].to_pylist()))
    return Latency(**{name: Spread(**spreads[name].describe()) for name in names})


def image_rows(inputs: AnalysisInputs) -> SliceRows:
    """One object per image: the columns of the latency table (analyze.latency.LATENCY), made as
    they are read (summary.json is written as they are made: no object per image is held)."""
    return SliceRows(inputs.latency)


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
    images: SliceRows = field(metadata=metric(image_rows))
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
    if streamed and isinstance(value, SliceRows):
        return RowStream(len(value), lambda: (convert(item) for item in value))
    if isinstance(value, list | tuple | SliceRows):
        return [convert(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
