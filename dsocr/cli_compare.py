"""`dsocr compare` (registered on import): parse options, call one function."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dsocr._app import JsonOption, PeakGbpsOption, PeakTflopsOption, RunDirArg, app
from dsocr.errors import BadInputError
from dsocr.options import DEFAULT_TOP_DELTAS


@app.command()
def compare(
    run_a: RunDirArg,
    run_b: RunDirArg,
    top: Annotated[int, typer.Option(help="Kernels and operators with the largest changes, per kind.")] = (
        DEFAULT_TOP_DELTAS
    ),
    as_json: JsonOption = False,
    peak_tflops: PeakTflopsOption = None,
    peak_gbps: PeakGbpsOption = None,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Also write one HTML page with both runs overlaid and these verdicts: "
            "RUN_A/analysis/compare-<RUN_B>.html (needs the [report] extra).",
        ),
    ] = False,
) -> None:
    """Two runs side by side: differing options first, then per stage and per image TTFT, TPOT,
    tokens/s, GPU busy and kernels with a verdict each (faster, slower, same within noise), the
    largest kernel and operator changes, and the findings that appear or vanish. Writes nothing
    unless --report."""
    if top < 1:
        raise BadInputError(f"--top {top}: must be at least 1")
    from rich.console import Console

    from dsocr.analyze.compare import compare_runs
    from dsocr.analyze.report_compare import print_comparison

    comparison = compare_runs(run_a, run_b, top=top, peak_tflops=peak_tflops, peak_gbps=peak_gbps)
    if as_json:
        typer.echo(json.dumps(comparison, ensure_ascii=False, indent=2))
    else:
        print_comparison(comparison, Console())
    if report:
        from dsocr.cli_report import write_report

        # On stderr: --json keeps stdout one JSON document.
        typer.echo(write_report(run_a, against=run_b, comparison=comparison), err=True)
