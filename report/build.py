"""``build_report``: read a run (and optionally a second one) and write one self-contained HTML page."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dsocr.report.compare import compare_sections
from dsocr.report.glance import findings_html, glance_html, images_html
from dsocr.report.gpu_steps_fig import gpu_steps_figure
from dsocr.report.inputs import RunInputs, load_run
from dsocr.report.latency_fig import latency_figure
from dsocr.report.page import Section, render_page
from dsocr.report.roofline_fig import roofline_figure
from dsocr.report.stages_fig import stage_figure
from dsocr.report.thumbs import thumbnails_html
from dsocr.report.top_fig import top_figures

from dsocr import rundir

REPORT_FILE = "report.html"
COMPARE_PREFIX = "compare-"


@dataclass(frozen=True)
class ReportResult:
    """Where the page went, its size and how long it took."""

    path: Path
    bytes: int
    seconds: float

    def line(self) -> str:
        return f"wrote {self.path} ({self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s)"


def default_output(run_dir: Path, against: Path | None) -> Path:
    """``RUN/analysis/report.html``, or ``RUN/analysis/compare-<B>.html`` for a comparison."""
    name = REPORT_FILE if against is None else f"{COMPARE_PREFIX}{against.resolve().name}.html"
    return rundir.analysis_dir(run_dir) / name  # refused when analysis/ links out of the run


def run_sections(run: RunInputs, page_dir: Path) -> list[Section]:
    """The sections of a one-run page, in reading order."""
    return [
        # "Where does my time go" first, then what to change, then the rest.
        Section("Where the time goes", stage_figure(run)),
        Section("What to change (findings, largest time at stake first)", findings_html(run.summary)),
        Section("Run at a glance", glance_html(run)),
        Section("Per-token latency", latency_figure(run)),
        Section("GPU busy vs idle per decode step", gpu_steps_figure(run)),
        Section("Top kernels and operators per stage", top_figures(run)),
        Section("Roofline", roofline_figure(run.summary)),
        Section("Rendered pages (dsocr emit)", thumbnails_html(run, page_dir)),
        Section("Images", images_html(run)),
    ]


def build_report(
    run_dir: Path, *, against: Path | None = None, output: Path | None = None, comparison: dict | None = None
) -> ReportResult:
    """Write the report of ``run_dir`` (or of ``run_dir`` against ``against``) atomically.

    ``comparison``: the object `dsocr compare` computed for the same two runs (adds its verdicts).
    Both runs must have been analyzed (``analysis/summary.json``); raises RunDirError or
    SchemaMismatchError otherwise. Default output: :func:`default_output`.
    """
    started = time.perf_counter()
    path = output or default_output(run_dir, against)
    run = load_run(run_dir)
    if against is None:
        title = f"dsocr report: {run.name}"
        sections = run_sections(run, path.parent.resolve())
    else:
        other = load_run(against)
        title = f"dsocr compare: {run.name} (A) vs {other.name} (B)"
        sections = compare_sections(run, other, comparison)
    page = render_page(title, sections).encode("utf-8")
    rundir.write_bytes_atomic(path, page)
    return ReportResult(path=path, bytes=len(page), seconds=time.perf_counter() - started)
