"""Per-image timings for info.json and predictions.jsonl: one set of whole-image numbers.

``timings_ms`` always covers the whole image: vision, prefill (= TTFT, vision included) and decode
over every step, from the capture's reference clock (or an import's own figures). The same
numbers, under the same names, are the capture summary's, the progress bar's and analyze's
``images[]``. Figures that come from the trace (``dsocr analyze``'s ``timings.parquet``: CPU
time, GPU busy and span) go under ``trace_ms`` with their coverage: in sampled mode the trace
holds only some decode steps (``steps_traced`` of ``steps_total``), so a trace figure is never
passed off as the image's decode time. Where the row has no reference figure for a stage and
the trace covers the whole stage, that trace figure fills ``timings_ms`` and the source says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsocr.rundir import analysis_path, read_checked
from dsocr.vocab import REFERENCE_STAGES, AnalysisFile, Stage

#: The stages info.json reports, in order (prefill_text is part of prefill here): the ones a
#: prediction row also times itself, so every stage has a fallback.
STAGES = REFERENCE_STAGES
SOURCE_CAPTURE = "capture:reference"
SOURCE_IMPORT = "import"
SOURCE_TRACE_COMPLETE = "analysis:complete_trace"
#: Columns of timings.parquet copied into trace_ms, per stage.
TRACE_FIGURES = (
    "cpu_ms_traced",
    "gpu_busy_ms_traced",
    "gpu_span_ms_traced",
    "kernel_count_traced",
    "steps_traced",
    "steps_total",
)

_COLUMNS = ["image_index", "rank", "stage", *TRACE_FIGURES]


@dataclass(frozen=True)
class StageTimings:
    """Whole-image milliseconds per stage with their source, and the trace's figures per stage."""

    ms: dict[str, float | None]
    source: dict[str, str | None]
    #: stage -> analyze's figures for it (TRACE_FIGURES), or None without an analysis.
    trace: dict[str, dict[str, Any]] | None


AnalysisTimings = Mapping[tuple[int, int, str], dict[str, Any]]


def timings_path(run_dir: Path) -> Path:
    """Where ``dsocr analyze`` writes its per-image timings."""
    return analysis_path(run_dir, AnalysisFile.timings)


def load_analysis_timings(run_dir: Path) -> AnalysisTimings:
    """``(rank, image_index, stage) -> trace figures`` from analyze's results; empty without them."""
    path = timings_path(run_dir)
    if not path.is_file():
        return {}
    table = read_checked(path, "timings")
    found: dict[tuple[int, int, str], dict[str, Any]] = {}
    for row in table.select([name for name in _COLUMNS if name in table.column_names]).to_pylist():
        if row["stage"] in STAGES and row.get("cpu_ms_traced") is not None:
            found[(row.get("rank") or 0, row["image_index"], row["stage"])] = {
                name: row.get(name) for name in TRACE_FIGURES
            }
    return found


def _complete_trace_ms(figures: dict[str, Any] | None, stage: str) -> float | None:
    """A trace figure that covers the whole stage (every decode step traced), else None."""
    if figures is None:
        return None
    if stage == Stage.decode and (figures["steps_total"] is None or figures["steps_traced"] != figures["steps_total"]):
        return None
    span = figures["gpu_span_ms_traced"]
    return span if span is not None else figures["cpu_ms_traced"]


def stage_timings(row: Mapping[str, Any], analysis: AnalysisTimings, *, imported: bool) -> StageTimings:
    """The timings of one prediction row: its own whole-image figures, and analyze's beside them."""
    row_source = SOURCE_IMPORT if imported else SOURCE_CAPTURE
    key = (row.get("rank") or 0, row["image_index"])
    trace = {stage: analysis[(*key, stage)] for stage in STAGES if (*key, stage) in analysis}
    ms: dict[str, float | None] = {}
    source: dict[str, str | None] = {}
    for stage in STAGES:
        own = row.get(f"{stage}_ms")
        if own is not None:
            ms[stage], source[stage] = own, row_source
            continue
        complete = _complete_trace_ms(trace.get(stage), stage)
        ms[stage] = complete
        source[stage] = SOURCE_TRACE_COMPLETE if complete is not None else None
    return StageTimings(ms, source, trace or None)
