"""Findings: what limits the run, with the numbers that show it, ordered by the time at stake.

Each detector is a function of measured figures that returns findings or nothing. A finding says
what to try; it never claims the effect of a change it has not measured. Where the change is a
capture option, ``try`` is the `dsocr sweep` command that measures it on the run's own pages. ``time_at_stake_ms``
is the measured time the finding is about (idle GPU time, excess over warm steps, copy kernel
time...), summed over the run: an upper bound of what addressing it could save, not a forecast.
"""

from __future__ import annotations

import dataclasses
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.cold import cold_image_rows, cold_impact_of
from dsocr.analyze.ordered import Slices
from dsocr.analyze.reference import ok_predictions
from dsocr.analyze.roofline import Roofline
from dsocr.analyze.sketch import ExactSum, QuantileSketch
from dsocr.analyze.step_figures import AFTER_WINDOW_STEPS, STEP_OUTLIER_FACTOR, StepFigures

from dsocr.options import DEFAULT_NGRAM_WINDOW, VENDOR_NO_REPEAT_NGRAM, CacheKind, CompileMode, SdpaBackend
from dsocr.records import RunRecord
from dsocr.sweep_plan import sweep_command
from dsocr.vocab import KernelKind, RunKind, Stage

SEVERITY_HIGH, SEVERITY_MEDIUM, SEVERITY_LOW = "high", "medium", "low"
#: Share of the run's clock time (run_clock_ms) above which a finding is high, or medium, severity.
HIGH_SHARE, MEDIUM_SHARE = 0.25, 0.05
#: Decode counts as host-bound when the GPU is idle this share of its wall time or more.
HOST_IDLE_SHARE = 0.5
#: Reported when this share of a stage's kernels ran shorter than their launch call.
LAUNCH_SHARE = 0.5
#: Reported when copy/cast kernels take this share of a stage's GPU time.
COPY_SHARE = 0.10
#: Reported when one operator takes this share of a stage's CPU time.
OPERATOR_SHARE = 0.20
#: An image is an outlier above this multiple of the median (steps: STEP_OUTLIER_FACTOR, analyze/step_figures.py).
IMAGE_OUTLIER_FACTOR = 1.5
MIN_IMAGES_FOR_OUTLIERS = 3
#: Reported when traced steps are this much slower than untraced ones (relative).
OVERHEAD_SHARE = 0.05
#: Reported when a stage's GPU busy time is this multiple of its roofline floor or more.
ROOFLINE_FACTOR = 2.0
PERCENT = 100
SOURCE_TIMINGS = "analysis/timings.parquet (trace ranges and attributed GPU activities)"
SOURCE_CLOCK = "analysis/timings.parquet clock_ms (reference clock, every decode step)"
SOURCE_EVERY_STEP = (
    "predictions.decode_step_ms (reference clock, every step; trace decode-step ranges for images"
    " without it), traced steps from the trace"
)


@dataclass(frozen=True)
class FindingInputs:
    """Everything the detectors read: analyze's own tables and figures, nothing recomputed."""

    #: The prediction rows (their scalar columns, in analyze; ``Slices.of(table)`` for a table in memory).
    predictions: Slices
    #: analysis/timings.parquet's rows (``Slices.of(table)`` for a table in memory).
    timings: Slices
    top: list[dict[str, Any]]
    #: The run's roofline (None: not computed).
    roofline: Roofline | None
    #: The run-level figures over decode steps, as analyze adds them a group of images at a time.
    step_figures: StepFigures | None = None
    #: Or, where ``step_figures`` is None, every step of every image by the reference clock and
    #: the traced steps (both STEPS tables), from which they are computed.
    reference_steps: pa.Table | None = None
    traced_steps: pa.Table | None = None
    #: summary.json ``images`` (latency rows, in prediction order), for the cold steps; None: from the predictions.
    images: Slices | None = None
    launch: Mapping[str, Mapping[str, Any]] | None = None
    copies: Mapping[str, Mapping[str, Any]] | None = None
    #: The run (directory and run.json), for the `dsocr sweep` command a finding proposes.
    run_dir: Path | None = None
    run: RunRecord | None = None
    #: Decode replayed compiled CUDA graphs over a static cache (run.json ``static_cache.compiled``).
    compiled_decode: bool = False


@dataclass(frozen=True)
class Finding:
    """One entry of summary.json ``findings``."""

    id: str
    #: high, medium or low: by the share of the run's clock time (every image's wall time) at stake.
    severity: str
    #: The measured time the finding is about, summed over the run (an upper bound of a saving).
    time_at_stake_ms: float
    message: str
    #: The figures it rests on, ``source`` (where they come from) and ``share_of_run``.
    evidence: dict[str, Any]
    #: The `dsocr sweep` command that measures the proposed change on the run's pages (JSON ``try``);
    #: None when the change is not a capture option or the run was not captured by dsocr.
    try_command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """summary.json's object: ``try`` is a Python keyword, so the field is named apart."""
        return {
            "id": self.id,
            "severity": self.severity,
            "time_at_stake_ms": self.time_at_stake_ms,
            "message": self.message,
            "try": self.try_command,
            "evidence": self.evidence,
        }


def _finding(
    fid: str, stake_ms: float, message: str, evidence: dict[str, Any], try_command: str | None = None
) -> dict[str, Any]:
    return {
        "id": fid,
        "severity": None,
        "time_at_stake_ms": float(stake_ms),
        "message": message,
        "evidence": evidence,
        "try_command": try_command,
    }


#: What a finding says of a change its ``try`` command measures, and of one nothing here measures.
MEASURED_BY_TRY = "the `try` command (dsocr sweep) measures it on this run's pages"
NOT_MEASURED = "not measured here"


def _try(inputs: FindingInputs, option: str, values: list[str], suffix: str) -> str | None:
    """The sweep of ``option`` over ``values`` (the run's own value first) on the run's pages."""
    run = inputs.run
    if run is None or inputs.run_dir is None or run.kind is not RunKind.capture or run.config is None:
        return None
    config = dataclasses.asdict(run.config)
    return sweep_command(
        inputs.run_dir, images=run.image_paths or (), config=config, vary={option: values}, out_suffix=suffix
    )


def _faster_decode_try(inputs: FindingInputs) -> str | None:
    """Static cache (compiled where transformers compiles) against the run's own decode path."""
    config = inputs.run.config if inputs.run is not None else None
    if config is None:
        return None
    if config.cache in (None, CacheKind.dynamic):  # null: a run from before --cache, dynamic
        return _try(inputs, "cache", [CacheKind.dynamic.value, CacheKind.static.value], "cache")
    if config.compile == CompileMode.off:
        return _try(inputs, "compile", [CompileMode.off.value, CompileMode.auto.value], "compile")
    return None  # already a static cache, compiled as transformers compiles it


def _backends_try(inputs: FindingInputs) -> str | None:
    """Every SDPA backend, the run's own first (those the device lacks are reported as such)."""
    config = inputs.run.config if inputs.run is not None else None
    if config is None:
        return None
    own = config.sdpa_backend or SdpaBackend.auto.value
    return _try(inputs, "sdpa-backend", [own, *(b.value for b in SdpaBackend if b.value != own)], "sdpa")


def _measured(try_command: str | None) -> str:
    return MEASURED_BY_TRY if try_command else NOT_MEASURED


def _stage(timings: Slices, stage: str, *columns: str) -> Iterator[pa.Table]:
    """The traced rows of a stage (``columns`` of them), a slice at a time."""
    for table in timings.columns("stage", "cpu_ms_traced", *columns):
        yield table.filter(pc.and_(pc.equal(table["stage"], stage), pc.is_valid(table["cpu_ms_traced"])))


def _clock_rows(timings: Slices) -> Iterator[pa.Table]:
    """The rows the reference clock timed (every image, every profile mode), a slice at a time."""
    for table in timings.columns("stage", "image_index", "clock_ms", "steps_total"):
        yield table.filter(pc.is_valid(table["clock_ms"]))


#: decode_coverage per timings read (one pass each, however many findings scale by it).
_DECODE_COVERAGE: weakref.WeakKeyDictionary[Slices, tuple[int, int]] = weakref.WeakKeyDictionary()


def decode_coverage(timings: Slices) -> tuple[int, int]:
    """(decode steps traced, decode steps of the traced images): what a trace figure of decode covers."""
    if timings not in _DECODE_COVERAGE:
        _DECODE_COVERAGE[timings] = _decode_coverage(timings)
    return _DECODE_COVERAGE[timings]


def _decode_coverage(timings: Slices) -> tuple[int, int]:
    traced = total = 0
    for rows in _stage(timings, Stage.decode, "steps_traced", "steps_total"):
        traced += int(_sum(rows, "steps_traced"))
        total += int(_sum(rows, "steps_total"))
    return traced, total


def _scale_to_run(timings: Slices, stage: str) -> tuple[float, str | None]:
    """The factor from a traced figure of ``stage`` to an estimate of the whole stage, and the
    note that says so: decode traced on N of M steps scales by M/N; the other stages are traced whole."""
    if stage != Stage.decode:
        return 1.0, None
    traced, total = decode_coverage(timings)
    if not traced or not total or traced == total:
        return 1.0, None
    return total / traced, f"estimated from {traced} of {total} decode steps"


def _scaled(finding: dict[str, Any], timings: Slices, stage: str) -> dict[str, Any]:
    """``finding`` with its time at stake scaled from the traced steps to the whole stage."""
    factor, note = _scale_to_run(timings, stage)
    if note is not None:
        finding["time_at_stake_ms"] *= factor
        finding["evidence"]["time_at_stake"] = note
        finding["message"] += (
            f" The trace holds some decode steps: the figures above are theirs; over every step about"
            f" {finding['time_at_stake_ms']:.0f} ms ({note})."
        )
    return finding


def _sum(table: pa.Table, name: str) -> float:
    return float(pc.sum(table[name]).as_py() or 0.0)


def _pct(share: float) -> str:
    return f"{share * PERCENT:.0f}%"


def short_name(name: str) -> str:
    """A kernel or operator name without its template arguments (the functor kept for copies)."""
    base = re.sub(r"^void ", "", name.split("<", 1)[0]).strip() or name
    if "direct_copy" in name:
        return f"{base} (direct_copy)"
    return base


def host_bound_decode(inputs: FindingInputs) -> list[dict[str, Any]]:
    names = ("cpu_ms_traced", "gpu_busy_ms_traced", "steps_traced", "kernel_count_traced", "steps_total")
    exact = {name: ExactSum() for name in names}  # correctly rounded: the same for any slicing
    for rows in _stage(inputs.timings, Stage.decode, *names):
        rows = rows.filter(pc.is_valid(rows["gpu_busy_ms_traced"]))
        for name in names:
            exact[name].add(rows[name].cast(pa.float64()).fill_null(0.0).to_numpy())
    sums = {name: total.value for name, total in exact.items()}
    wall, busy = sums["cpu_ms_traced"], sums["gpu_busy_ms_traced"]
    steps = int(sums["steps_traced"])
    if not wall or not steps or 1 - busy / wall < HOST_IDLE_SHARE:
        return []
    kernels = sums["kernel_count_traced"]
    idle = 1 - busy / wall
    gap_us = (wall - busy) / kernels * 1000 if kernels else None
    evidence = {
        "gpu_idle_share": idle,
        "wall_ms_per_step": wall / steps,
        "gpu_busy_ms_per_step": busy / steps,
        "kernels_per_step": kernels / steps,
        "idle_us_per_kernel": gap_us,
        "steps_traced": steps,
        "steps_total": int(sums["steps_total"]),
        "source": SOURCE_TIMINGS,
    }
    measured = (
        f"decode is host-bound: the GPU is idle {_pct(idle)} of decode ({busy / steps:.2f} ms busy of"
        f" {wall / steps:.2f} ms per step, {kernels / steps:.0f} kernels per step)."
    )
    if inputs.compiled_decode:  # the usual advice is what this run already does
        evidence["compiled_decode"] = True
        message = (
            f"{measured} Decode already replays compiled CUDA graphs over a static cache: the host time left"
            " is the work outside the graphs (the decode CPU operators) and generate's per-token loop. Try"
            f" a serving engine that batches decode; its effect: {NOT_MEASURED}."
        )
        return [_finding("host_bound_decode", wall - busy, message, evidence)]
    proposed = _faster_decode_try(inputs)
    message = (
        f"{measured} Try CUDA graphs with a static KV cache (cache_implementation='static' with"
        " torch.compile mode='reduce-overhead') or a serving engine that batches decode; the static cache:"
        f" {_measured(proposed)}; batching: {NOT_MEASURED}."
    )
    finding = _finding("host_bound_decode", wall - busy, message, evidence, proposed)
    return [_scaled(finding, inputs.timings, Stage.decode)]


def _step_figures(inputs: FindingInputs) -> StepFigures:
    """The run's step figures: analyze's, or computed here from the tables the inputs hold."""
    if inputs.step_figures is not None:
        return inputs.step_figures
    figures = StepFigures()
    reference, traced = inputs.reference_steps, inputs.traced_steps
    if reference is not None and traced is not None and (reference.num_rows or traced.num_rows):
        figures.add_steps(reference, traced)
    predictions = inputs.predictions.read()
    ok = ok_predictions(predictions) if "status" in predictions.column_names else predictions
    columns = [
        name for name in ("image_index", "rank", "decode_step_ms", "decode_step_cold") if name in ok.column_names
    ]
    figures.cold.add_rows(ok.select(columns).to_pylist())
    return figures


def _image_rows(inputs: FindingInputs) -> Iterable[dict[str, Any]]:
    """Per image (in prediction order): ``image_index``, ``rank``, ``steps``, ``tpot_mean_ms``."""
    if inputs.images is not None:
        return cold_image_rows(inputs.images)
    ok = ok_predictions(inputs.predictions.read())
    columns = [name for name in ("image_index", "rank", "decode_step_ms") if name in ok.column_names]
    return [
        {"image_index": row["image_index"], "rank": row.get("rank") or 0, "steps": len(row["decode_step_ms"]),
         "tpot_mean_ms": sum(row["decode_step_ms"]) / len(row["decode_step_ms"])}
        for row in ok.select(columns).to_pylist()
        if row.get("decode_step_ms") and None not in row["decode_step_ms"]
    ]  # fmt: skip


def cold_steps(inputs: FindingInputs) -> list[dict[str, Any]]:
    # No cold flags (capture recorded none, or the predictions lack the column): no figures below.
    cold = _step_figures(inputs).cold
    # The run's cold figures as summary.json ``cold`` has them: one formula for both.
    impact, cold_ms = cold_impact_of(cold, _image_rows(inputs), top_operators=[]), cold.all_cold_ms()
    if impact is None or not cold_ms or not impact.warm_steps or not impact.cold_added_ms:
        return []  # no flags, no warm steps to compare with, or cold steps no slower by their medians
    excess, upper, warm = impact.cold_added_ms, impact.cold_added_upper_ms, impact.warm_step_p50_ms
    evidence = {
        "cold_steps": len(cold_ms),
        "warm_steps": impact.warm_steps,
        "cold_p50_ms": float(np.median(cold_ms)),
        "warm_p50_ms": warm,
        "excess_ms": excess,
        "excess_upper_ms": upper,
        "source": "predictions.decode_step_cold and decode_step_ms (reference clock)",
    }
    proposed = _backends_try(inputs)
    message = (
        f"{len(cold_ms)} cold decode steps (a sequence length the attention backend had not seen) took"
        f" {excess:.0f} ms more than warm ones (p50 {np.median(cold_ms):.1f} ms against {warm:.1f} ms;"
        f" {upper:.0f} ms counting each cold step's own excess, which also charges steps slowed by"
        " something else). Try another SDPA backend (torch.backends.cuda.enable_cudnn_sdp(False)) or"
        f" warming up the lengths; another backend: {_measured(proposed)}; warming up: {NOT_MEASURED}."
    )
    return [_finding("cold_steps", excess, message, evidence, proposed)]


def launch_bound_kernels(inputs: FindingInputs) -> list[dict[str, Any]]:
    found = []
    for stage, figures in (inputs.launch or {}).items():
        share = figures.get("share")
        if stage == "prefill" or share is None or share < LAUNCH_SHARE:
            continue
        # A static cache compiles decode only: vision's and prefill's launches stay as they are.
        proposed = _faster_decode_try(inputs) if stage == Stage.decode else None
        message = (
            f"{_pct(share)} of {stage} kernels ({figures['shorter_than_launch']} of {figures['kernels']}) ran"
            f" shorter than the runtime call that launched them: the host spent {figures['launch_ms']:.1f} ms"
            f" launching {figures['kernel_ms']:.1f} ms of GPU work. Fewer, larger kernels (fusion with"
            f" torch.compile, CUDA graphs) would amortise launches; {_measured(proposed)}."
        )
        evidence = {**figures, "source": "trace: kernel durations against their cuda_runtime launch calls"}
        finding = _finding(f"launch_bound_kernels.{stage}", figures["launch_ms"], message, evidence, proposed)
        found.append(_scaled(finding, inputs.timings, stage))
    return found


def copy_cast_kernels(inputs: FindingInputs) -> list[dict[str, Any]]:
    found = []
    for stage, figures in (inputs.copies or {}).items():
        share = figures.get("share")
        if stage == "prefill" or share is None or share < COPY_SHARE:
            continue
        top = [{"name": short_name(row["name"]), "ms": row["ms"]} for row in figures["top"]]
        names = ", ".join(row["name"] for row in top[:2])
        message = (
            f"{_pct(share)} of {stage} GPU time ({figures['copy_ms']:.1f} of {figures['gpu_ms']:.1f} ms) is"
            f" copy/cast kernels ({names}). Look for dtype round trips (inputs or buffers not in the model"
            " dtype) and non-contiguous tensors made contiguous; not measured here."
        )
        evidence = {**figures, "top": top, "source": "trace: GPU activities by name (copy, Memcpy, Memset)"}
        found.append(
            _scaled(
                _finding(f"copy_cast_kernels.{stage}", figures["copy_ms"], message, evidence), inputs.timings, stage
            )
        )
    return found


def dominant_cpu_operator(inputs: FindingInputs) -> list[dict[str, Any]]:
    found = []
    seen: set[str] = set()
    for row in inputs.top:
        if row["kind"] != KernelKind.cpu_operator or row["stage"] in seen or row["stage"] == "prefill":
            continue
        seen.add(row["stage"])
        if row["share"] < OPERATOR_SHARE:
            continue
        message = (
            f"{row['name']} takes {_pct(row['share'])} of {row['stage']} CPU self time"
            f" ({row['total_ms_traced']:.1f} ms,"
            f" {row['calls']} calls, {row['mean_us']:.0f} µs each). Profile what it does per call (shape"
            " changes, backend selection, synchronisation) before changing it."
        )
        evidence = {key: row[key] for key in ("stage", "name", "calls", "total_ms_traced", "mean_us", "share")}
        evidence["source"] = "analysis/kernels.parquet (cpu_operator: CPU self time)"
        finding = _finding(f"dominant_cpu_operator.{row['stage']}", row["total_ms_traced"], message, evidence)
        found.append(_scaled(finding, inputs.timings, row["stage"]))
    return found


def outlier_steps(inputs: FindingInputs) -> list[dict[str, Any]]:
    outliers = _step_figures(inputs).outliers
    if outliers.steps == 0 or outliers.slow == 0:
        return []
    excess = outliers.excess_ms.value
    after_window_excess = outliers.after_window_excess_ms.value
    evidence = {
        "steps": outliers.slow,
        "of_steps": outliers.steps,
        "excess_ms": excess,
        "slowest_ms": outliers.slowest_ms,
        "median_step_ms": outliers.image_medians.median(),
        "step_numbers": sorted(set(outliers.numbers))[:20],
        "after_trace_window": outliers.after_window,
        "after_trace_window_excess_ms": after_window_excess,
        "source": SOURCE_EVERY_STEP,
    }
    message = (
        f"{outliers.slow} decode steps took over {STEP_OUTLIER_FACTOR:.0f}x their image's median step"
        f" ({excess:.0f} ms beyond the median in all; the slowest {outliers.slowest_ms:.1f} ms)."
    )
    if outliers.after_window:
        message += (
            f" {outliers.after_window} of them ({after_window_excess:.0f} ms) are untraced"
            f" steps within {AFTER_WINDOW_STEPS} steps after a traced window, while capture converts that"
            " window's trace in another process beside decode; a --profile off run shows whether they stay."
        )
    message += " Look at those steps in the trace (dsocr export-trace) for new shapes, allocations or synchronisation."
    return [_finding("outlier_steps", excess, message, evidence)]


def _image_walls(rows: pa.Table, stage: str) -> tuple[pa.Table, np.ndarray]:
    """A slice's clock rows of ``stage`` (decode: those with steps) and their wall times (decode:
    per step, as images generate different token counts)."""
    rows = rows.filter(pc.equal(rows["stage"], stage))
    if stage == Stage.decode:
        rows = rows.filter(pc.greater(rows["steps_total"].fill_null(0), 0))
    wall = rows["clock_ms"].to_numpy()
    return rows, wall / rows["steps_total"].to_numpy() if stage == Stage.decode else wall


_OUTLIER_STAGES = (Stage.vision, Stage.prefill_text, Stage.decode)


def outlier_images(inputs: FindingInputs) -> list[dict[str, Any]]:
    """Images slower than IMAGE_OUTLIER_FACTOR times the median image, per stage: the medians
    (exact up to the sketch's EXACT_VALUES images) in one pass over the timings rows, the slow
    images in another."""
    walls = {stage: QuantileSketch() for stage in _OUTLIER_STAGES}
    for table in _clock_rows(inputs.timings):
        for stage in _OUTLIER_STAGES:
            walls[stage].add(_image_walls(table, stage)[1])
    medians = {
        stage: sketch.median() or 0.0 for stage, sketch in walls.items() if sketch.count >= MIN_IMAGES_FOR_OUTLIERS
    }
    slow_rows: dict[str, list[pa.Table]] = {stage: [] for stage in medians}
    slow_walls: dict[str, list[np.ndarray]] = {stage: [] for stage in medians}
    if medians:
        for table in _clock_rows(inputs.timings):
            for stage, median in medians.items():
                rows, wall = _image_walls(table, stage)
                slow = wall > IMAGE_OUTLIER_FACTOR * median
                slow_rows[stage].append(rows.filter(pa.array(slow)))
                slow_walls[stage].append(wall[slow])
    found = []
    for stage, median in medians.items():
        slow_wall = np.concatenate(slow_walls[stage])
        if not slow_wall.size:
            continue
        slow_table = pa.concat_tables(slow_rows[stage])
        images = slow_table["image_index"].to_numpy().tolist()
        per = " per step" if stage == Stage.decode else ""
        excess = float((slow_wall - median).sum())
        message = (
            f"{len(images)} image(s) took over {IMAGE_OUTLIER_FACTOR}x the median {stage} time{per}"
            f" ({median:.1f} ms): images {images[:10]}. Check their sizes and token counts; the first image"
            " of a run also pays one-time set-up."
        )
        evidence = {"stage": stage, "median_ms": median, "images": images, "ms": slow_wall.tolist()}
        evidence["source"] = SOURCE_CLOCK
        if stage == Stage.decode:
            # The excess per step, over every step of those images.
            excess = float(((slow_wall - median) * slow_table["steps_total"].to_numpy()).sum())
        found.append(_finding(f"outlier_images.{stage}", excess, message, evidence))
    return found


def profiler_overhead(inputs: FindingInputs) -> list[dict[str, Any]]:
    overhead = _step_figures(inputs).overhead
    traced_count, untraced_count = overhead.traced.count, overhead.untraced.count
    if not traced_count or not untraced_count:
        return []  # every step traced, or none: nothing to compare
    traced_p50, untraced_p50 = overhead.traced.median() or 0.0, overhead.untraced.median() or 0.0
    share = traced_p50 / untraced_p50 - 1
    if share < OVERHEAD_SHARE:
        return []
    stake = (traced_p50 - untraced_p50) * traced_count
    message = (
        f"traced decode steps took {traced_p50:.2f} ms (p50) against {untraced_p50:.2f} ms untraced"
        f" (+{_pct(share)}): figures from traced steps include the profiler's cost. Use the reference"
        " clock of a --profile off run for latency; the trace for where time goes."
    )
    evidence = {
        "traced_p50_ms": traced_p50,
        "untraced_p50_ms": untraced_p50,
        "traced_steps": traced_count,
        "untraced_steps": untraced_count,
        "source": "predictions.decode_step_ms (reference clock), split by the trace's decode-step ranges",
    }
    return [_finding("profiler_overhead", stake, message, evidence)]


def roofline_distance(inputs: FindingInputs) -> list[dict[str, Any]]:
    found = []
    for stage in (Stage.vision, Stage.prefill_text, Stage.decode):
        figures = inputs.roofline.stage(stage) if inputs.roofline is not None else None
        if figures is None:
            continue
        floor, busy, wall = figures.roofline_ms, figures.gpu_busy_ms, figures.wall_ms
        if floor is None or not busy or not wall or busy < ROOFLINE_FACTOR * floor:
            continue
        mfu, mbu = figures.mfu, figures.mbu
        message = (
            f"{stage} is {busy / floor:.1f}x its roofline floor on GPU busy time ({busy:.1f} ms against"
            f" {floor:.2f} ms at the device's peaks; {wall / floor:.0f}x on wall time); MFU {_pct(mfu or 0)},"
            f" MBU {_pct(mbu or 0)}, bound: {figures.bound or 'unknown'}. The floor counts matrix"
            " products only (docs/analysis.md), so part of the gap is work the model leaves out."
        )
        evidence = {
            key: getattr(figures, key)
            for key in ("flops", "bytes", "roofline_ms", "gpu_busy_ms", "wall_ms", "mfu", "mbu", "mfu_wall", "bound")
        }
        evidence["source"] = "roofline (model config FLOPs and bytes; device peaks table)"
        # At stake: GPU busy time beyond the floor (the idle rest is the host-bound finding's);
        # decode's roofline is per token, so over the run it is every decode step's.
        stake = busy - floor
        if stage == Stage.decode:
            traced, total = decode_coverage(inputs.timings)
            stake *= total
            evidence["time_at_stake"] = f"per token x {total} decode steps (figures from {traced} traced steps)"
        found.append(_finding(f"roofline_distance.{stage}", stake, message, evidence))
    return found


#: Images a repetition_loop finding lists in its message (all are in its evidence).
LOOP_IMAGES_SHOWN = 10


def repetition_loop(inputs: FindingInputs) -> list[dict[str, Any]]:
    """Images whose output ends in a repetition loop (capture's dsocr.loops.find_loop): the
    tokens and the decode ms (reference clock) from each loop's start to the end of generation."""
    if "loop_start_step" not in inputs.predictions.schema.names:
        return []
    names = ["image_index", "rank", "image_path", "generated_tokens", "stop_reason", "loop_start_step",
             "loop_period_tokens", "loop_ms"]  # fmt: skip
    rows: list[dict[str, Any]] = []
    decode = ExactSum()
    for table in inputs.predictions.columns("status", "decode_ms", *names):
        ok = ok_predictions(table)
        decode.add(ok["decode_ms"].cast(pa.float64()).fill_null(0.0).to_numpy())
        rows += ok.filter(pc.is_valid(ok["loop_start_step"])).select(names).to_pylist()
    if not rows:
        return []
    decode_ms = decode.value
    tokens = sum((row["generated_tokens"] or 0) - row["loop_start_step"] for row in rows)
    loop_ms = sum(row["loop_ms"] or 0.0 for row in rows)
    images = [
        {
            "image_index": row["image_index"],
            "rank": row["rank"],
            "image_path": row["image_path"],
            "start_step": row["loop_start_step"],
            "period_tokens": row["loop_period_tokens"],
            "tokens": (row["generated_tokens"] or 0) - row["loop_start_step"],
            "ms": row["loop_ms"],
            "stop_reason": row["stop_reason"],
        }
        for row in rows
    ]
    shown = ", ".join(str(row["image_index"]) for row in rows[:LOOP_IMAGES_SHOWN])
    more = f" and {len(rows) - LOOP_IMAGES_SHOWN} more" if len(rows) > LOOP_IMAGES_SHOWN else ""
    share = f" ({_pct(loop_ms / decode_ms)} of all decode)" if decode_ms else ""
    message = (
        f"{len(rows)} image(s) end in a repetition loop (images {shown}{more}): {tokens} generated tokens"
        f" and {loop_ms:.0f} ms of decode{share} repeat a unit of"
        f" {min(row['loop_period_tokens'] for row in rows)}-{max(row['loop_period_tokens'] for row in rows)}"
        f" tokens from the loop's start to the end. Try the vendor's guard, --no-repeat-ngram"
        f" {VENDOR_NO_REPEAT_NGRAM} (--ngram-window {DEFAULT_NGRAM_WINDOW}), and compare outputs and decode"
        " time; its effect is not measured here."
    )
    evidence = {
        "images": images,
        "loop_tokens": tokens,
        "loop_ms": loop_ms,
        "decode_ms": decode_ms,
        "source": "predictions.loop_start_step, loop_period_tokens, loop_ms (capture's loop detector, reference clock)",
    }
    return [_finding("repetition_loop", loop_ms, message, evidence)]


DETECTORS: tuple[Callable[[FindingInputs], list[dict[str, Any]]], ...] = (
    host_bound_decode,
    cold_steps,
    launch_bound_kernels,
    copy_cast_kernels,
    dominant_cpu_operator,
    outlier_steps,
    outlier_images,
    profiler_overhead,
    roofline_distance,
    repetition_loop,
)


def findings(inputs: FindingInputs) -> list[dict[str, Any]]:
    """Every detector's findings, with a severity by the share of the run's time at stake, largest first."""
    result = [finding for detector in DETECTORS for finding in detector(inputs)]
    run_ms = run_clock_ms(inputs.predictions)
    for finding in result:
        share = finding["time_at_stake_ms"] / run_ms if run_ms else 0.0
        finding["evidence"]["share_of_run"] = share
        finding["severity"] = (
            SEVERITY_HIGH if share >= HIGH_SHARE else SEVERITY_MEDIUM if share >= MEDIUM_SHARE else SEVERITY_LOW
        )
    return sorted(result, key=lambda finding: (-finding["time_at_stake_ms"], finding["id"]))


def run_clock_ms(predictions: Slices) -> float:
    """The run's time on the reference clock, in every profile mode: the images' wall times
    (``image_ms``), or their TTFT + decode where a capture did not record it."""
    total = 0.0
    for table in predictions.columns("status", "image_ms", "prefill_ms", "decode_ms"):
        for row in ok_predictions(table).select(["image_ms", "prefill_ms", "decode_ms"]).to_pylist():
            if row["image_ms"] is not None:
                total += row["image_ms"]
            else:
                total += (row["prefill_ms"] or 0.0) + (row["decode_ms"] or 0.0)
    return total


def typed_findings(inputs: FindingInputs) -> list[Finding]:
    """``findings`` as Finding objects (summary.json ``findings``)."""
    return [Finding(**finding) for finding in findings(inputs)]
