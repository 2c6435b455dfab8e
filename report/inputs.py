"""Everything a report reads from one run directory, each part optional with the reason it is absent.

The report reads the run through the contract package (run.json, predictions) and the files
``dsocr analyze`` wrote; it never imports a stage. Sections appear when their data exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from dsocr import rundir, schema
from dsocr.errors import RunDirError, SchemaMismatchError
from dsocr.records import RunRecord
from dsocr.vocab import AnalysisFile

SUMMARY_FILE = AnalysisFile.summary
TIMINGS_FILE = AnalysisFile.timings
KERNELS_FILE = AnalysisFile.kernels
STEPS_FILE = AnalysisFile.steps


@dataclass(frozen=True)
class RunInputs:
    """One run as the report sees it. A None table has its reason in ``missing``."""

    run_dir: Path
    run: RunRecord
    predictions: pa.Table
    summary: dict[str, Any]
    timings: pa.Table | None
    kernels: pa.Table | None
    steps: pa.Table | None
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name


def read_summary(run_dir: Path) -> dict[str, Any]:
    """``analysis/summary.json``, version-checked; RunDirError when analyze has not run."""
    path = run_dir / rundir.ANALYSIS_DIR / SUMMARY_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no {rundir.ANALYSIS_DIR}/{SUMMARY_FILE} (run `dsocr analyze {run_dir}` first)")
    payload = rundir.read_json(path)
    if not isinstance(payload, dict) or payload.get("schema_version") != schema.ANALYSIS_SCHEMA_VERSION:
        found = payload.get("schema_version") if isinstance(payload, dict) else type(payload).__name__
        raise SchemaMismatchError(
            f"{path}: schema version {found!r}, this dsocr reads version {schema.ANALYSIS_SCHEMA_VERSION}"
            " (run `dsocr analyze` again)"
        )
    return payload


def _optional_table(run_dir: Path, file_name: str, table: str, missing: dict[str, str]) -> pa.Table | None:
    path = run_dir / rundir.ANALYSIS_DIR / file_name
    if not path.is_file():
        missing[table] = f"{rundir.ANALYSIS_DIR}/{file_name} is absent (written by a newer `dsocr analyze`)"
        return None
    return rundir.read_checked(path, table)


def load_run(run_dir: Path) -> RunInputs:
    """Read a run and its analysis; raises RunDirError / SchemaMismatchError for unusable input."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    run = rundir.read_run_json(run_dir)
    predictions = rundir.read_predictions(run_dir, run)
    summary = read_summary(run_dir)
    missing: dict[str, str] = {}
    return RunInputs(
        run_dir=run_dir,
        run=run,
        predictions=predictions,
        summary=summary,
        timings=_optional_table(run_dir, TIMINGS_FILE, "timings", missing),
        kernels=_optional_table(run_dir, KERNELS_FILE, "kernels", missing),
        steps=_optional_table(run_dir, STEPS_FILE, "steps", missing),
        missing=missing,
    )
