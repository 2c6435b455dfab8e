"""`dsocr emit` and `dsocr import` (registered on import): parse options, call one emit function.

emit is imported inside the commands, so that loading the CLI stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dsocr._app import JsonOption, RunDirArg, app
from dsocr.options import DEFAULT_FAMILY, DEFAULT_MODEL_ID, DEFAULT_QUALITY, VIZ_DIR


@app.command()
def emit(
    run_dir: RunDirArg,
    viz_dir: Annotated[
        Path, typer.Option("--viz-dir", help="Root of the per-image folders, relative to the run unless absolute.")
    ] = Path(VIZ_DIR),
    line_width: Annotated[
        int | None,
        typer.Option(
            "--line-width",
            help="Box outline width in pixels, 1..64 (titles get twice it). "
            "Default: 2 px per 1000 px of the page's shorter side, at least 2.",
            show_default=False,
        ),
    ] = None,
    no_labels: Annotated[bool, typer.Option("--no-labels", help="Draw boxes without their label tags.")] = False,
    quality: Annotated[int, typer.Option("--quality", help="JPEG quality, 1..95.")] = DEFAULT_QUALITY,
    crops: Annotated[
        bool, typer.Option("--crops", help="Also write each 'image' region, cut from the source, as images/N.jpg.")
    ] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Also write result.mmd: the clean text (text_clean) as Markdown.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", help="Render only this image (md5 or path; a PDF: its pages); repeatable.", show_default=False
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Render again images whose outputs are newer than the predictions.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Worker processes. Default: all cores.", show_default=False)
    ] = None,
    image_root: Annotated[
        list[str] | None,
        typer.Option(
            "--image-root",
            help="OLD=NEW: read images recorded under folder OLD from folder NEW (they moved); repeatable.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Draw each prediction's boxes into viz/<md5>/ and write predictions.jsonl (no model, no torch).

    Each image folder gets result_with_boxes.jpg and info.json, made from the run's Parquet
    alone. Images whose outputs are newer than the predictions are skipped unless --force.
    """
    from dsocr.emit import EmitFailedError, EmitOptions, RenderStyle, parse_image_root, render_run

    style = RenderStyle(line_width=line_width, labels=not no_labels, quality=quality, crops=crops, markdown=markdown)
    roots = tuple(parse_image_root(value) for value in image_root or ())
    options = EmitOptions(
        viz_dir=viz_dir, style=style, only=tuple(only or ()), force=force, jobs=jobs, image_roots=roots
    )
    summary = render_run(run_dir, options)
    for warning in summary.warnings:
        typer.echo(f"WARNING: {warning}", err=True)
    typer.echo(json.dumps(summary.as_json(), ensure_ascii=False, indent=2) if as_json else "\n".join(summary.lines()))
    if summary.failures:
        raise EmitFailedError(summary.failure_message())


@app.command("import")
def import_(
    outputs: Annotated[
        Path,
        typer.Argument(
            help="JSON Lines file: one object per image with 'image' and 'text_raw' (or 'text').",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create (new or empty).")],
    model_id: Annotated[str, typer.Option("--model-id", help="Model id recorded in run.json.")] = DEFAULT_MODEL_ID,
    family: Annotated[
        str, typer.Option("--family", help="Model family that wrote the outputs (how emit reads them).")
    ] = DEFAULT_FAMILY,
) -> None:
    """Turn DeepSeek-OCR outputs produced elsewhere into a run directory that emit and analyze read."""
    from dsocr.emit import import_outputs

    summary = import_outputs(outputs, out, model_id=model_id, family=family)
    typer.echo(summary.line())
