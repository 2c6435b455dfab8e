"""`dsocr analyze` and `dsocr export-trace` (registered on import): parse options, call one function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dsocr._app import JsonOption, PeakGbpsOption, PeakTflopsOption, RunDirArg, app
from dsocr.errors import BadInputError
from dsocr.json_stream import write_json
from dsocr.options import DEFAULT_TOP

#: image_index is an int32 column: a larger --image cannot name an image (and cannot be compared with one).
IMAGE_INDEX_MAX = 2**31 - 1


@app.command()
def analyze(
    run_dir: RunDirArg,
    top: Annotated[int, typer.Option(help="Kernels and operators kept per stage and kind.")] = DEFAULT_TOP,
    as_json: JsonOption = False,
    peak_tflops: PeakTflopsOption = None,
    peak_gbps: PeakGbpsOption = None,
    with_report: Annotated[
        bool, typer.Option("--report", help="Also write analysis/report.html (needs the [report] extra).")
    ] = False,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide", help="Print kernel and operator names whole (demangled), one line per row, past the terminal."
        ),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", help="Threads reading the trace. Default: the usable cores, at most 4.", show_default=False
        ),
    ] = None,
    merge: Annotated[
        list[Path] | None,
        typer.Option(
            "--merge",
            help="A shard (a run already analyzed) to merge into RUN_DIR/analysis/; repeat per shard. "
            "RUN_DIR holding no run.json but runs in its folders merges those. Reads no trace again.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Per-image and per-stage timings (CPU, GPU busy, GPU span), latency, top kernels, roofline and
    findings, from the run's Parquet alone; writes analysis/timings.parquet, kernels.parquet,
    steps.parquet, roofline.parquet and summary.json (and report.html with --report).

    Tables fit the terminal without cutting a number or a header: long names are shortened in
    the middle (C++ names to their function name); --wide or --json give them whole."""
    if top < 1:
        raise BadInputError(f"--top {top}: must be at least 1")
    if jobs is not None and jobs < 1:
        raise BadInputError(f"--jobs {jobs}: must be at least 1")
    from rich.console import Console

    from dsocr.analyze.merge import merge_shards, shards_under
    from dsocr.analyze.report import print_report
    from dsocr.analyze.runner import analyze_run
    from dsocr.analyze.summary import to_json

    shards = list(merge or ())
    if not shards and not (run_dir / "run.json").exists():
        shards = shards_under(run_dir)
    if shards:
        if with_report:
            raise BadInputError("--report needs a run directory; a merged analysis (--merge) has none")
        analysis = merge_shards(run_dir, shards, top=top, peak_tflops=peak_tflops, peak_gbps=peak_gbps)
    else:
        analysis = analyze_run(run_dir, top=top, peak_tflops=peak_tflops, peak_gbps=peak_gbps, jobs=jobs)
    report_line = None
    if with_report:
        from dsocr.cli_report import write_report

        report_line = write_report(run_dir)
    if as_json:
        write_json(
            to_json(analysis.summary, streamed=True), sys.stdout
        )  # streamed: its per-image lists are made as written
        return
    console = Console()
    print_report(analysis.summary, console, wide=wide)
    console.print(f"wrote {analysis.output_dir}/", highlight=False)
    if report_line:
        console.print(report_line, highlight=False, soft_wrap=True)


@app.command("export-trace")
def export_trace(
    run_dir: RunDirArg,
    image: Annotated[
        int | None, typer.Option("--image", help="Export this image only. Default: the whole run.", show_default=False)
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="JSON file. Default: analysis/export/trace[-image<N>].json.", show_default=False
        ),
    ] = None,
) -> None:
    """Write the run's trace (or one image's) as Chrome trace JSON for Perfetto or HTA."""
    if image is not None and not 0 <= image <= IMAGE_INDEX_MAX:
        raise BadInputError(f"--image {image}: must be an image index 0..{IMAGE_INDEX_MAX}")
    from dsocr.analyze.chrome import export_trace as write_chrome_trace

    path, events = write_chrome_trace(run_dir, image=image, output=out)
    typer.echo(f"wrote {events} events to {path}")
