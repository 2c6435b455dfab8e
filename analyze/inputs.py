"""What every metric of summary.json reads: the run's files and the tables analyze computed once.

A metric is a function ``(AnalysisInputs) -> part``; see analyze/summary.py for the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from dsocr.analyze.ordered import Slices
from dsocr.analyze.partials import TraceFigures
from dsocr.analyze.peaks import DevicePeak
from dsocr.analyze.profiler_flops import StageFlops
from dsocr.analyze.roofline import RooflineRows
from dsocr.analyze.step_figures import StepFigures

from dsocr.records import RunRecord


@dataclass(frozen=True)
class AnalysisInputs:
    """The run as read (run.json, predictions, trace) and the per-image tables computed from it."""

    run_dir: Path
    #: run.json as read and validated.
    run: RunRecord
    #: predictions, every row, failed images included: their scalar columns
    #: (``prediction_store.SCALAR_COLUMNS``), a slice at a time for each pass (the per-step lists
    #: are read a group of images at a time, by the batches).
    predictions: Slices
    #: The trace's counts and sums over every image (analyze reads it a batch of images at a time).
    trace: TraceFigures
    #: True when the run has trace files (False: imports, ``--profile off``).
    has_trace: bool
    #: Per stage: kernels shorter than their launch, and copy kernels (None without device time).
    launch: dict[str, dict[str, Any]] | None
    copies: dict[str, dict[str, Any]] | None
    #: analysis/timings.parquet (schema TIMINGS): one row per image and stage, in prediction
    #: order, read a slice at a time for each figure that folds over it (never held whole).
    timings: Slices
    #: Per image latency (analyze.latency.LATENCY), in prediction order, likewise.
    latency: Slices
    #: analysis/kernels.parquet (schema KERNELS): top names per stage and kind.
    kernels: pa.Table
    #: CPU operators whose self time per step differs most between cold and warm traced steps.
    cold_operators: list[dict[str, Any]]
    #: The run-level figures over decode steps (counts, exact sums, sketches), added per group of images.
    steps: StepFigures
    #: The device's peaks: the peaks table by run.json's device name, or --peak-tflops/--peak-gbps.
    peak: DevicePeak
    #: analysis/roofline.parquet's rows per image (schema ROOFLINE), likewise; its rows per decode
    #: step are summed in ``steps.roofline``.
    roofline: RooflineRows
    #: The profiler's FLOP counts per stage (none with a counted operator: the trace carries none).
    profiler_flops: dict[str, StageFlops]
