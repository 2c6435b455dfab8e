"""`dsocr report` (registered on import): bring the analysis up to date, then write the HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsocr._app import RunDirArg, app
from dsocr.errors import BadInputError, MissingExtraError

REPORT_EXTRA_HINT = "dsocr report needs the [report] extra (plotly): pip install 'dsocr[report]'"


def write_report(
    run_dir: Path, *, against: Path | None = None, output: Path | None = None, comparison: dict | None = None
) -> str:
    """Analyze each run whose analysis is missing or stale, then build the page; returns the lines to print.

    ``comparison``: what `dsocr compare` computed for the two runs (its verdicts go on the page)."""
    try:
        from dsocr.report import build_report
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "plotly":
            raise MissingExtraError(REPORT_EXTRA_HINT) from None
        raise
    from dsocr.analyze.runner import analyze_run
    from dsocr.staleness import analysis_is_stale

    lines = []
    for run in (run_dir, against):
        if run is not None and analysis_is_stale(run):
            analyze_run(run)
            lines.append(f"analyzed {run} (its analysis was missing or older than the run)")
    lines.append(build_report(run_dir, against=against, output=output, comparison=comparison).line())
    return "\n".join(lines)


@app.command()
def report(
    run_dir: RunDirArg,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against", help="A second run: one page with both overlaid (A = RUN, B = this).", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="HTML file. Default: RUN/analysis/report.html (compare-<B>.html with --against).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML page of plots (opens offline); runs analyze first when needed.
    RUN may be a sweep directory (`dsocr sweep`): one page of its variants' ratios to the baseline."""
    from dsocr.sweep_plan import is_sweep_dir

    if is_sweep_dir(run_dir):
        if against is not None:
            raise BadInputError("--against compares two runs; a sweep directory is one page of its own")
        typer.echo(write_sweep_report(run_dir, output=out))
        return
    typer.echo(write_report(run_dir, against=against, output=out))


def write_sweep_report(sweep_dir: Path, *, output: Path | None = None) -> str:
    """Analyze the sweep's runs, compare each variant with the baseline, and write its page
    (default SWEEP/report.html); returns the line to print."""
    try:
        from dsocr.report.sweep import build_sweep_report
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "plotly":
            raise MissingExtraError(REPORT_EXTRA_HINT) from None
        raise
    from dsocr.analyze.sweep import sweep_table

    return build_sweep_report(sweep_dir, sweep_table(sweep_dir), output=output).line()
