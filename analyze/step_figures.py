"""Run-level figures over decode steps, added a group of images at a time.

The decode-step rows of a run (one per step of every image by the reference clock, one per traced
step) grow with its pages times their tokens: 5 M rows for 10,000 pages of 512 tokens. analyze
computes them a group of whole images at a time (a batch of the trace, a chunk of untraced images,
a shard), writes what is per step to disk (analysis/steps.parquet, the roofline's step rows) and
keeps, across groups, only what the run-level figures need: counts, exact sums, quantile sketches
(analyze/sketch.py: exact up to EXACT_VALUES values, within RELATIVE_ACCURACY beyond), and the
cold steps' times (at most one cold step per sequence length and process: bounded by the
model's context length, not by the run). Every step belongs to one image and every image to one
group, so per-image figures (an image's median step) are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.keys import image_key
from dsocr.analyze.sketch import ExactSum, QuantileSketch
from dsocr.analyze.stats import MEDIAN, grouped_quantiles
from dsocr.analyze.steps import prefer_images, step_codes

#: A step is an outlier above this multiple of its image's median step.
STEP_OUTLIER_FACTOR = 3.0
#: Untraced steps this close after a traced one run while that window's trace is converted in
#: capture's converter process (on the 2-core CPU box, slow steps came 1 to 10 steps after).
AFTER_WINDOW_STEPS = 10
#: Slow steps whose numbers are kept (the first met), for the outlier finding's examples.
SLOW_STEP_NUMBERS = 1000
#: The ROOFLINE columns summed over decode steps (decode's figures per token).
SUMMED = ("flops", "bytes", "attention_flops", "wall_ms", "gpu_busy_ms", "kernel_count")
#: The ROOFLINE columns described across decode steps (median, p90).
DESCRIBED = ("flops", "bytes", "wall_ms", "gpu_busy_ms", "mfu", "mfu_wall", "mbu", "mbu_wall")


@dataclass
class DecodeStepRoofline:
    """The roofline's decode-step rows, summed and sketched."""

    rows: int = 0
    sums: dict[str, ExactSum] = field(default_factory=lambda: {name: ExactSum() for name in SUMMED})
    #: Per summed column: rows with a value (a sum of nothing but nulls is unknown).
    valid: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUMMED, 0))
    quantiles: dict[str, QuantileSketch] = field(default_factory=lambda: {name: QuantileSketch() for name in DESCRIBED})
    bounds: dict[str, int] = field(default_factory=dict)

    def add(self, steps: pa.Table) -> None:
        """Add decode-step rows of the ROOFLINE table."""
        self.rows += steps.num_rows
        for name in SUMMED:
            column = steps[name]
            self.valid[name] += len(column) - column.null_count
            self.sums[name].add(column.cast(pa.float64()).fill_null(0.0).to_numpy())
        for name in DESCRIBED:
            values = steps[name].cast(pa.float64()).drop_null().to_numpy()
            self.quantiles[name].add(values)
        for bound in steps["bound"].drop_null().to_pylist():
            self.bounds[bound] = self.bounds.get(bound, 0) + 1

    def total(self, name: str) -> float | None:
        """The sum of a SUMMED column over every step row (None when no row has a value)."""
        return self.sums[name].value if self.valid[name] else None

    def distribution(self) -> dict[str, Any]:
        """summary.json ``roofline.decode_step``."""
        figures: dict[str, Any] = {"steps": self.rows}
        for name in DESCRIBED:
            figures[name] = self.quantiles[name].describe()
        figures["bound"] = {name: self.bounds[name] for name in sorted(self.bounds)}
        return figures


@dataclass
class OutlierSteps:
    """Steps slower than STEP_OUTLIER_FACTOR times their image's median (every step: reference
    clock, traced steps for images it does not time)."""

    steps: int = 0
    slow: int = 0
    excess_ms: ExactSum = field(default_factory=ExactSum)
    slowest_ms: float | None = None
    #: The numbers of the first SLOW_STEP_NUMBERS slow steps met.
    numbers: list[int] = field(default_factory=list)
    after_window: int = 0
    after_window_excess_ms: ExactSum = field(default_factory=ExactSum)
    #: The images' median steps.
    image_medians: QuantileSketch = field(default_factory=QuantileSketch)

    def add(self, steps: pa.Table, traced: pa.Table) -> None:
        """Add whole images' steps (``traced``: the traced steps of the same images)."""
        if steps.num_rows == 0:
            return
        keys = image_key(steps)
        wall = steps["wall_ms"].to_numpy()
        unique, medians = grouped_quantiles(keys, wall, (MEDIAN,))
        self.steps += int(wall.size)
        self.image_medians.add(medians[:, 0])
        typical = medians[np.searchsorted(unique, keys), 0]
        slow = wall > STEP_OUTLIER_FACTOR * typical
        if not slow.any():
            return
        excess = wall[slow] - typical[slow]
        self.slow += int(slow.sum())
        self.excess_ms.add(excess)
        slowest = float(wall[slow].max())
        self.slowest_ms = slowest if self.slowest_ms is None else max(self.slowest_ms, slowest)
        room = SLOW_STEP_NUMBERS - len(self.numbers)
        self.numbers += [int(number) for number in steps["step"].to_numpy()[slow][:room]]
        after = _after_trace_window(steps, traced)[slow]
        self.after_window += int(after.sum())
        self.after_window_excess_ms.add(excess[after])


def _traced_codes(steps: pa.Table, traced: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """One code per (image, step) of ``steps`` and, on the same scale, the sorted codes of ``traced``."""
    images = np.unique(np.concatenate([image_key(steps), image_key(traced)]))
    codes = step_codes(images, image_key(steps), steps["step"].to_numpy())
    return codes, np.unique(step_codes(images, image_key(traced), traced["step"].to_numpy()))


def _after_trace_window(steps: pa.Table, traced: pa.Table) -> np.ndarray:
    """Per step: untraced, and within AFTER_WINDOW_STEPS after a traced step of its image."""
    if traced.num_rows == 0 or steps.num_rows == 0:
        return np.zeros(steps.num_rows, dtype=bool)
    codes, traced_codes = _traced_codes(steps, traced)
    follows = np.zeros(codes.size, dtype=bool)
    for distance in range(1, AFTER_WINDOW_STEPS + 1):
        follows |= np.isin(codes - distance, traced_codes)
    return follows & ~np.isin(codes, traced_codes)


@dataclass
class TracedAgainstUntraced:
    """The reference clock's steps, split by whether the trace holds them (the profiler's cost)."""

    traced: QuantileSketch = field(default_factory=QuantileSketch)
    untraced: QuantileSketch = field(default_factory=QuantileSketch)

    def add(self, reference: pa.Table, traced: pa.Table) -> None:
        """``reference``: whole images' reference steps with a time; ``traced``: their traced steps."""
        if reference.num_rows == 0 or traced.num_rows == 0:
            self.untraced.add(reference["wall_ms"].to_numpy())
            return
        codes, traced_codes = _traced_codes(reference, traced)
        is_traced = np.isin(codes, traced_codes)
        wall = reference["wall_ms"].to_numpy()
        self.traced.add(wall[is_traced])
        self.untraced.add(wall[~is_traced])


@dataclass
class ColdSteps:
    """Decode steps of the images whose every step carries a cold flag (capture's decode_step_cold)."""

    #: Cold flags, whatever their step's time.
    flags: int = 0
    warm_ms: QuantileSketch = field(default_factory=QuantileSketch)
    #: Per image key: its cold steps' times (bounded by sequence lengths per process).
    cold_ms: dict[int, list[float]] = field(default_factory=dict)
    #: Whether any image carried flags.
    flagged_images: int = 0

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Add ok prediction rows (``image_index``, ``rank``, ``decode_step_ms``, ``decode_step_cold``)."""
        for row in rows:
            steps, cold = row.get("decode_step_ms") or [], row.get("decode_step_cold")
            if cold is None or len(cold) != len(steps):
                continue
            self.flagged_images += 1
            self.flags += sum(cold)
            self.warm_ms.add(
                np.array([ms for ms, is_cold in zip(steps, cold, strict=True) if not is_cold and ms is not None])
            )
            cold_ms = [ms for ms, is_cold in zip(steps, cold, strict=True) if is_cold and ms is not None]
            if cold_ms:
                self.cold_ms[_row_key(row)] = cold_ms

    def all_cold_ms(self) -> list[float]:
        return [ms for values in self.cold_ms.values() for ms in values]


def _row_key(row: dict[str, Any]) -> int:
    return ((row.get("rank") or 0) << 32) | int(row["image_index"])


@dataclass
class StepFigures:
    """Everything run-level analyze computes over decode steps, for groups of whole images."""

    roofline: DecodeStepRoofline = field(default_factory=DecodeStepRoofline)
    outliers: OutlierSteps = field(default_factory=OutlierSteps)
    overhead: TracedAgainstUntraced = field(default_factory=TracedAgainstUntraced)
    cold: ColdSteps = field(default_factory=ColdSteps)

    def add(self, ok: pa.Table, traced: pa.Table, reference: pa.Table, roofline_steps: pa.Table | None) -> None:
        """Add a group of whole images: ``ok`` their ok prediction rows, ``traced`` and ``reference``
        their traced and reference-clock steps (STEPS), ``roofline_steps`` their decode-step rows
        of the ROOFLINE table."""
        self.add_steps(reference, traced)
        columns = [
            name for name in ("image_index", "rank", "decode_step_ms", "decode_step_cold") if name in ok.column_names
        ]
        self.cold.add_rows(ok.select(columns).to_pylist())
        if roofline_steps is not None:
            self.roofline.add(roofline_steps)

    def add_steps(self, reference: pa.Table, traced: pa.Table) -> None:
        """Add whole images' reference and traced steps (STEPS tables)."""
        timed = reference.filter(pc.is_valid(reference["wall_ms"]))
        self.outliers.add(prefer_images(timed, traced.filter(pc.is_valid(traced["wall_ms"]))), traced)
        self.overhead.add(timed, traced)
