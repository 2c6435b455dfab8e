"""Per-image stage timings for info.json: analyze's results when present, else the run's own.

``analysis/timings.parquet`` (written by ``dsocr analyze``) gives, per image and stage, a GPU
span measured from the trace when the stage ran on a GPU, else a CPU wall time. Without it,
the prediction row's reference timings (measured at capture, or brought by an import) are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsocr.rundir import ANALYSIS_DIR, read_checked

TIMINGS_FILE = "timings.parquet"
#: The stages info.json reports, in order; prefill_text is part of prefill here.
STAGES = ("vision", "prefill", "decode")
SOURCE_GPU_SPAN = "analysis:gpu_span"
SOURCE_CPU = "analysis:cpu"
SOURCE_CAPTURE = "capture:reference"
SOURCE_IMPORT = "import"

_COLUMNS = ["image_index", "stage", "cpu_ms", "gpu_span_ms"]


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds per stage, and where each number comes from (None where unknown)."""

    ms: dict[str, float | None]
    source: dict[str, str | None]


AnalysisTimings = Mapping[tuple[int, str], tuple[float, str]]


def timings_path(run_dir: Path) -> Path:
    """Where ``dsocr analyze`` writes its per-image timings."""
    return run_dir / ANALYSIS_DIR / TIMINGS_FILE


def load_analysis_timings(run_dir: Path) -> AnalysisTimings:
    """``(image_index, stage) -> (ms, source)`` from analyze's results; empty when there are none."""
    path = timings_path(run_dir)
    if not path.is_file():
        return {}
    found: dict[tuple[int, str], tuple[float, str]] = {}
    for row in read_checked(path, "timings").select(_COLUMNS).to_pylist():
        if row["stage"] not in STAGES:
            continue
        if row["gpu_span_ms"] is not None:
            found[(row["image_index"], row["stage"])] = (row["gpu_span_ms"], SOURCE_GPU_SPAN)
        elif row["cpu_ms"] is not None:
            found[(row["image_index"], row["stage"])] = (row["cpu_ms"], SOURCE_CPU)
    return found


def stage_timings(row: Mapping[str, Any], analysis: AnalysisTimings, *, imported: bool) -> StageTimings:
    """The timings of one prediction row: analysis per stage where it has one, else the row's."""
    row_source = SOURCE_IMPORT if imported else SOURCE_CAPTURE
    ms: dict[str, float | None] = {}
    source: dict[str, str | None] = {}
    for stage in STAGES:
        analysed = analysis.get((row["image_index"], stage))
        if analysed is not None:
            ms[stage], source[stage] = analysed
        else:
            ms[stage] = row.get(f"{stage}_ms")
            source[stage] = row_source if ms[stage] is not None else None
    return StageTimings(ms, source)
