"""`dsocr capture`: parse options, build a CaptureConfig, call capture.runner.run, show the result.

Stage modules are imported inside the command, so that loading the CLI stays cheap.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dsocr._app import app
from dsocr.errors import BadInputError, MissingExtraError, NoImageSucceededError
from dsocr.options import (
    DEFAULT_FIRST_STEPS,
    DEFAULT_FULL_CHUNK_STEPS,
    DEFAULT_GPUS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_SEED,
    DEFAULT_WARMUP_TOKENS,
    DEFAULT_WINDOW_EVERY,
    DEFAULT_WINDOW_STEPS,
    CacheKind,
    CompileMode,
    Device,
    DType,
    ProfilerSessions,
    SdpaBackend,
)
from dsocr.vocab import ProfileMode

if TYPE_CHECKING:
    from dsocr.capture.config import CaptureConfig
    from dsocr.capture.result import CaptureResult

RUNS_ROOT = Path("runs")
_DEFAULT_SOURCE = "DEFAULT"
_DEFAULT_SOURCES = frozenset({_DEFAULT_SOURCE, "DEFAULT_MAP"})
INSTALL_HINT = "dsocr capture needs torch, transformers and nvtx: pip install -e '.[capture]' (with torch==2.13.0)"


def _default_out() -> Path:
    return RUNS_ROOT / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _given(ctx: typer.Context) -> frozenset[str]:
    """The options the user gave (a default is not given: --resume takes the run's value instead)."""
    # By the source's name: typer vendors click, so its ParameterSource is not click's.
    return frozenset(
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", _DEFAULT_SOURCE) not in _DEFAULT_SOURCES
    )


def _given_options(ctx: typer.Context) -> frozenset[str]:
    """The given options named as CaptureConfig names them: after the flag (``--compile`` is
    ``compile``, whatever the parameter is called here), ``images`` for the arguments."""
    given = _given(ctx)
    return frozenset(param.opts[0].lstrip("-").replace("-", "_") for param in ctx.command.params if param.name in given)


def _argv_from(ctx: typer.Context, out: Path) -> list[str]:
    """This capture command as given, minus --gpus, with --out explicit: what every rank runs.

    Defaults stay off the command line: each rank applies the same default, or under --resume
    the run's recorded value, as this process did.
    """
    argv = ["capture", *(ctx.params.get("images") or [])]
    given = _given(ctx)
    for param in ctx.command.params:
        value = out if param.name == "out" else ctx.params.get(param.name)
        if param.name in ("images", "gpus") or value is None or (param.name != "out" and param.name not in given):
            continue
        flag = param.opts[0]
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value.value if isinstance(value, enum.Enum) else value)]
    return argv


def _missing_extra(exc: ImportError) -> MissingExtraError:
    return MissingExtraError(f"{INSTALL_HINT} ({exc.name} is missing)")


def _launch_ranks(config: CaptureConfig, argv: list[str], processes: int) -> int:
    """Check ``config`` once here, then start ``processes`` ranks that each run ``argv``."""
    from dsocr.capture.launch import launch
    from dsocr.capture.preflight import preflight

    try:
        preflight(config)
    except ImportError as exc:
        raise _missing_extra(exc) from None
    return launch(argv, processes, config.out)


def _run(config: CaptureConfig) -> CaptureResult:
    """capture.runner.run with a progress bar on stderr and its warnings shown as they happen."""
    try:
        # runner's logger is capture's package logger: every capture module's records reach it.
        from dsocr.capture.launch import LAUNCHED_ENV
        from dsocr.capture.runner import CaptureInterrupted, run
        from dsocr.capture.runner import log as capture_log
    except ImportError as exc:
        raise _missing_extra(exc) from None
    from rich.console import Console

    from dsocr.cli_capture_view import ProgressView, warnings_to

    stderr = Console(stderr=True)
    try:
        with warnings_to(capture_log, stderr), ProgressView(stderr) as view:
            return run(config, on_start=view.start, on_image=view.image)
    except CaptureInterrupted:
        if os.environ.get(LAUNCHED_ENV) and "WORLD_SIZE" in os.environ:
            # A rank of `capture --gpus N`: the parent says it once for all ranks (capture.launch).
            raise typer.Exit(0) from None
        raise


@app.command()
def capture(
    ctx: typer.Context,
    images: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image files, folders (searched recursively) or text files listing paths. "
            "Default: sample pages drawn by dsocr.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory. Default: runs/<timestamp>.", show_default=False)
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Local model folder (DeepSeek-OCR-2, or another registered family), an architecture "
            ".json (random weights), or embedded:NAME (a model shipped inside dsocr). "
            "Default: the embedded tiny DeepSeek-OCR-2 (embedded:tiny-deepseek-ocr2).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[Device, typer.Option(help="Where the model runs.")] = Device.cpu,
    dtype: Annotated[
        DType | None, typer.Option(help="Weights and activations. Default: bf16 on cuda, fp32 on cpu.")
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option(
            help="Prompt with the family's image placeholder (<image> for DeepSeek-OCR-2). "
            "Default: the model family's own (docs/families.md).",
            show_default=False,
        ),
    ] = None,
    max_new_tokens: Annotated[
        str,
        typer.Option("--max-new-tokens", help="Integer >= 1, or 'inf': until EOS, bounded by the model's context."),
    ] = DEFAULT_MAX_NEW_TOKENS,
    profile: Annotated[ProfileMode, typer.Option(help="What torch.profiler records.")] = ProfileMode.sampled,
    first_steps: Annotated[
        int, typer.Option(help="Sampled mode: decode steps traced right after prefill.")
    ] = DEFAULT_FIRST_STEPS,
    window_steps: Annotated[int, typer.Option(help="Sampled mode: decode steps per later window.")] = (
        DEFAULT_WINDOW_STEPS
    ),
    window_every: Annotated[int, typer.Option(help="Sampled mode: one window every this many steps.")] = (
        DEFAULT_WINDOW_EVERY
    ),
    full_chunk_steps: Annotated[
        int, typer.Option(help="Full mode: decode steps per flush of events to Parquet.")
    ] = DEFAULT_FULL_CHUNK_STEPS,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a run in --out; skip images already done.")] = (
        False
    ),
    seed: Annotated[int, typer.Option(help="Seed of the embedded model's random weights.")] = DEFAULT_SEED,
    gpus: Annotated[
        int,
        typer.Option(
            help="Processes, one per GPU, through torchrun; each takes a shard of the images "
            "(with --device cpu: processes on the gloo backend)."
        ),
    ] = DEFAULT_GPUS,
    warmup_tokens: Annotated[
        int,
        typer.Option(
            help="Before the first image, one unrecorded generate of this many tokens (0: none). "
            "It warms only the decode lengths it runs: see docs/performance.md on cold steps."
        ),
    ] = DEFAULT_WARMUP_TOKENS,
    sdpa_backend: Annotated[
        SdpaBackend,
        typer.Option(help="torch SDPA backend the model may use (auto: torch chooses; cudnn plans per length)."),
    ] = SdpaBackend.auto,
    attn_implementation: Annotated[
        str | None,
        typer.Option(
            help="transformers attn_implementation (eager, sdpa, ...). Default: the model's own.", show_default=False
        ),
    ] = None,
    profiler_sessions: Annotated[
        ProfilerSessions,
        typer.Option(
            help="One profiler session per traced window, or one per image "
            "(the slower earlier design, kept to measure against).",
        ),
    ] = ProfilerSessions.window,
    with_flops: Annotated[
        bool,
        typer.Option(
            "--with-flops",
            help="Record operator shapes and FLOP counts for analyze's roofline cross-check "
            "(makes each profiler stop several times slower: docs/performance.md).",
        ),
    ] = False,
    keep_kineto: Annotated[
        bool,
        typer.Option(
            "--keep-kineto",
            help="Keep each trace chunk's chrome-trace JSON as torch exported it, under trace/kineto/ "
            "(for HTA, Perfetto; about 50 times the size of its Parquet).",
        ),
    ] = False,
    cache: Annotated[
        CacheKind,
        typer.Option(
            help="Key/value cache of decode: dynamic (grows per token) or static (one length for the whole "
            "run, sized before the first image; what compiled decode needs)."
        ),
    ] = CacheKind.dynamic,
    compile_mode: Annotated[
        CompileMode,
        typer.Option(
            "--compile",
            help="With --cache static: auto compiles decode as transformers does (torch.compile with CUDA "
            "graphs on cuda; never on cpu), off keeps it eager. Compilation runs in a warm-up outside "
            "every timing and profiler session.",
        ),
    ] = CompileMode.auto,
) -> None:
    """Run DeepSeek-OCR on images under torch.profiler; write outputs and traces to Parquet."""
    if gpus < 1:
        raise BadInputError(f"--gpus must be >= 1, got {gpus}")
    out = out or _default_out()
    from dsocr.capture.config import CaptureConfig, SamplingSchedule, parse_max_new_tokens
    from dsocr.capture.resume import as_recorded

    # The whole configuration is validated here, before a rank is launched or a model loaded.
    config = CaptureConfig(
        images=tuple(images or ()),
        out=out,
        model=model,
        device=device,
        dtype=dtype,
        prompt=prompt,
        max_new_tokens=parse_max_new_tokens(max_new_tokens),
        profile=profile,
        sampling=SamplingSchedule(first_steps=first_steps, window_steps=window_steps, window_every=window_every),
        full_chunk_steps=full_chunk_steps,
        resume=resume,
        seed=seed,
        warmup_tokens=warmup_tokens,
        sdpa_backend=sdpa_backend,
        attn_implementation=attn_implementation,
        profiler_sessions=profiler_sessions,
        with_flops=with_flops,
        keep_kineto=keep_kineto,
        cache=cache,
        compile=compile_mode,
    )
    config = as_recorded(config, _given_options(ctx))
    if gpus > 1 and "WORLD_SIZE" not in os.environ:
        # Every rank must agree on --out, so the resolved default goes on the command line.
        raise typer.Exit(_launch_ranks(config, _argv_from(ctx, out), gpus))
    result = _run(config)
    if result.is_leader:
        from dsocr.cli_capture_view import print_summary

        print_summary(result)
        if not result.figures.images_ok:
            raise NoImageSucceededError(
                f"no image succeeded ({result.figures.images_failed} failed); "
                f"each row's error is in {result.run_dir}/predictions.parquet and capture.log"
            )
