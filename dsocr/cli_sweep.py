"""`dsocr sweep` (registered on import): capture variants side by side, then one table of ratios.

Every argument that is not the sweep's own goes to each capture, checked first by capture's
own parser: pages, --model, --device, --max-new-tokens, ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dsocr._app import JsonOption, app
from dsocr.errors import BadInputError, DsocrError, RunDirError
from dsocr.options import SWEEP_OWNED, VARY_CANDIDATES
from dsocr.vocab import ProfileMode

if TYPE_CHECKING:
    from dsocr.sweep_plan import PlannedRun, SweepManifest

SAMPLES_DIR = "samples"
#: Columns of the table when the output is not a terminal.
PIPED_WIDTH = 160
#: What a sweep's captures record: nothing (undisturbed figures) or sampled decode windows.
SWEEP_PROFILES = (ProfileMode.off.value, ProfileMode.sampled.value)


def _capture_command() -> Any:
    """`dsocr capture` as the click command typer builds: its parser checks the passed options."""
    import typer.main

    from dsocr import cli_capture  # noqa: F401  (registers capture)

    return typer.main.get_command(app).commands["capture"]  # type: ignore[attr-defined]


def varyable_options(capture: Any) -> tuple[str, ...]:
    """The options a sweep may vary: VARY_CANDIDATES that this `dsocr capture` has."""
    flags = {opt.removeprefix("--") for param in capture.params for opt in param.opts}
    return tuple(name for name in VARY_CANDIDATES if name in flags)


def _parse_capture(capture: Any, tokens: list[str]) -> typer.Context:
    try:
        return capture.make_context("capture", list(tokens))
    except typer.exceptions.TyperException as exc:  # click's usage errors, as typer vendors them
        raise BadInputError(f"passed to capture: {exc.format_message()}") from None


def _check_values(capture: Any, vary: dict[str, list[str]]) -> None:
    """Each varied value must parse as capture parses it (a typo is an error, not a variant)."""
    from dsocr.capture.config import parse_max_new_tokens

    for key, values in vary.items():
        for value in values:
            _parse_capture(capture, [f"--{key}", value])
            if key == "max-new-tokens":
                parse_max_new_tokens(value)


def _images(parsed: typer.Context, out: Path) -> list[str]:
    """Absolute paths of the given pages (captures run elsewhere), or dsocr's sample pages,
    written once under the sweep so that every variant reads the same files."""
    given = parsed.params.get("images") or []
    if given:
        return [str(Path(text).resolve()) if Path(text).exists() else text for text in given]
    from dsocr.capture.samples import write_sample_images

    return [str(path.resolve()) for path in write_sample_images(out / SAMPLES_DIR)]


def _capture_args(parsed: typer.Context) -> list[str]:
    """The passed capture options, with paths made absolute (captures may run from elsewhere)."""
    from dsocr.cli_capture import given_argv

    model = parsed.params.get("model")
    # A file or folder is made absolute; `embedded:NAME` names no path and passes as it is.
    values = {"model": model.resolve()} if model is not None and model.exists() else {}
    return given_argv(parsed, values=values)


def _passed_flags(capture: Any, parsed: typer.Context) -> set[str]:
    """The capture options given on the command line, by flag name without dashes."""
    given = {name for name in parsed.params if getattr(parsed.get_parameter_source(name), "name", "") == "COMMANDLINE"}
    return {opt.removeprefix("--") for param in capture.params if param.name in given for opt in param.opts}


def _plan(
    capture_tokens: list[str], vary_texts: list[str], *, one_at_a_time: bool, repeats: int, profile: str
) -> tuple[SweepManifest, typer.Context]:
    """The sweep's manifest (its pages not yet resolved) and capture's parse of the passed arguments."""
    from dsocr.sweep_plan import SweepManifest, parse_vary, plan_runs, plan_variants

    capture = _capture_command()
    vary = parse_vary(vary_texts, varyable_options(capture))
    parsed = _parse_capture(capture, capture_tokens)
    passed = _passed_flags(capture, parsed)
    for key in vary:
        if key in passed:
            raise BadInputError(f"--{key} is both passed to every capture and varied: give it in --vary only")
    for name in SWEEP_OWNED:
        if name in passed:
            raise BadInputError(f"--{name} is the sweep's own option")
    _check_values(capture, vary)
    variants = plan_variants(vary, one_at_a_time=one_at_a_time)
    manifest = SweepManifest(
        images=[],
        capture_args=_capture_args(parsed),
        profile=profile,
        repeats=repeats,
        one_at_a_time=one_at_a_time,
        vary=vary,
        variants=variants,
        runs=plan_runs(variants, repeats),
        argv=["dsocr", *sys.argv[1:]],
    )
    return manifest, parsed


def _same_plan(old: SweepManifest, new: SweepManifest) -> bool:
    keys = ("capture_args", "profile", "repeats", "one_at_a_time", "vary")
    return all(getattr(old, key) == getattr(new, key) for key in keys)


def _start(out: Path, manifest: SweepManifest, parsed: typer.Context, *, resume: bool) -> SweepManifest:
    """The manifest to run: a new sweep in an empty --out, or (``--resume``) the one already there."""
    from dsocr.sweep_plan import is_sweep_dir, read_manifest, write_manifest

    if is_sweep_dir(out):
        if not resume:
            raise RunDirError(f"--out {out} already holds a sweep: pass --resume to finish it, or another --out")
        previous = read_manifest(out)
        given = parsed.params.get("images")
        if given and _images(parsed, out) != previous.images:
            raise RunDirError(f"--out {out} holds a sweep of other pages: drop the page arguments, or another --out")
        if not _same_plan(previous, manifest):
            raise RunDirError(f"--out {out} holds a different sweep (options or --vary differ); use another --out")
        return previous
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"--out {out} is not empty and holds no sweep")
    out.mkdir(parents=True, exist_ok=True)
    manifest.images = _images(parsed, out)
    write_manifest(out, manifest)
    return manifest


def _progress(total: int) -> Any:
    from dsocr.sweep_plan import STATUS_OK

    def report(run: PlannedRun) -> None:
        state = "ok" if run.status == STATUS_OK else f"cannot run: {run.reason}"
        typer.echo(f"[{run.order + 1}/{total}] {run.variant} #{run.repeat}: {state} ({run.seconds:.1f} s)", err=True)

    return report


@app.command(
    options_metavar="[IMAGES]... [OPTIONS] [CAPTURE OPTIONS]",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def sweep(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Sweep directory: sweep.json, every run under runs/, their logs.")
    ],
    vary: Annotated[
        list[str],
        typer.Option(
            "--vary",
            help="OPTION=A,B,...: a capture option and its values; the first value is the baseline's. "
            f"Repeatable. Options: {', '.join(VARY_CANDIDATES)} (those this capture has).",
        ),
    ],
    one_at_a_time: Annotated[
        bool,
        typer.Option("--one-at-a-time", help="Change one option at a time from the baseline (default: the grid)."),
    ] = False,
    repeats: Annotated[
        int, typer.Option(help="Runs per variant, interleaved (forward, then backward): the noise band.")
    ] = 1,
    profile: Annotated[
        str,
        typer.Option(help="What each capture records: off (undisturbed figures) or sampled."),
    ] = ProfileMode.off.value,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish a sweep in --out: run what did not run or failed.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Capture variants side by side, each `dsocr capture` its own process on the same pages, then
    one table: TTFT, TPOT p50 (warm steps), decode tokens/s, pages/s and peak GPU memory of each
    variant as a ratio to the baseline, with a noise band and a verdict (faster, slower, same
    within noise). IMAGES and every other capture option (--model, --device, --max-new-tokens,
    ...) go to every capture. A variant that cannot run is one line with its reason."""
    if profile not in SWEEP_PROFILES:
        raise BadInputError(f"--profile {profile}: a sweep captures with off or sampled")
    manifest, parsed = _plan(list(ctx.args), vary, one_at_a_time=one_at_a_time, repeats=repeats, profile=profile)
    manifest = _start(out, manifest, parsed, resume=resume)
    from dsocr.sweep_runner import run_sweep

    run_sweep(out, manifest, on_run=_progress(len(manifest.runs)))
    from dsocr.analyze.report_sweep import print_sweep
    from dsocr.analyze.sweep import sweep_table

    table = sweep_table(out)
    if as_json:
        typer.echo(json.dumps(table, ensure_ascii=False, indent=2))
    else:
        from rich.console import Console

        console = Console()
        # Piped output is 80 columns to rich: a reason or a ratio cell would wrap into a column.
        print_sweep(table, console if console.is_terminal else Console(width=PIPED_WIDTH))
    baseline = next(row for row in table["variants"] if row["baseline"])
    if baseline["reason"] is not None:
        raise DsocrError(f"the baseline ({baseline['variant']}) could not run: {baseline['reason']}")
