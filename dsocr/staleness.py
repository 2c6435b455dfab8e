"""Whether a run's analysis/ is older than what it was computed from (so commands recompute it)."""

from __future__ import annotations

from pathlib import Path

from dsocr import rundir
from dsocr.vocab import AnalysisFile

#: The file analyze writes last; its age stands for the whole analysis.
SUMMARY_FILE = AnalysisFile.summary


def _inputs(run_dir: Path) -> list[Path]:
    paths = [run_dir / rundir.RUN_JSON, run_dir / rundir.PREDICTIONS_FILE, *rundir.trace_files(run_dir)]
    parts = run_dir / rundir.PREDICTIONS_PARTS_DIR
    if parts.is_dir():
        paths.extend(parts.glob("*.parquet"))
    return [path for path in paths if path.is_file()]


def analysis_is_stale(run_dir: Path) -> bool:
    """True when analysis/summary.json is missing or older than run.json, predictions or the trace."""
    summary = run_dir / rundir.ANALYSIS_DIR / SUMMARY_FILE
    if not summary.is_file():
        return True
    written = summary.stat().st_mtime_ns
    return any(path.stat().st_mtime_ns > written for path in _inputs(run_dir))
