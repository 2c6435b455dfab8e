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
    DEFAULT_DPI,
    DEFAULT_FIRST_STEPS,
    DEFAULT_FULL_CHUNK_STEPS,
    DEFAULT_GPUS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_NGRAM_ALLOW,
    DEFAULT_NGRAM_WINDOW,
    DEFAULT_SEED,
    DEFAULT_TRACE_IMAGES,
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
    """``runs/<timestamp>-<pid>``: names sort by start time, and two captures started in the same
    second differ by their process id (unique among running processes)."""
    return RUNS_ROOT / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


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


def given_argv(ctx: typer.Context, *, leave_out: tuple[str, ...] = (), values: dict | None = None) -> list[str]:
    """The options of ``ctx`` the user gave, as command-line arguments, less the parameters named
    in ``leave_out`` (the image arguments are never included); ``values`` adds parameters with
    the value to pass (given or not)."""
    values = values or {}
    given = _given(ctx)
    argv: list[str] = []
    for param in ctx.command.params:
        value = values.get(param.name, ctx.params.get(param.name))
        if param.name == "images" or param.name in leave_out or value is None:
            continue
        if param.name not in given and param.name not in values:
            continue
        flag = param.opts[0]
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list | tuple):
            argv += [part for item in value for part in (flag, str(item))]
        else:
            argv += [flag, str(value.value if isinstance(value, enum.Enum) else value)]
    return argv


def _argv_from(ctx: typer.Context, out: Path) -> list[str]:
    """This capture command as given, minus --gpus, with --out explicit: what every rank runs.

    Defaults stay off the command line: each rank applies the same default, or under --resume
    the run's recorded value, as this process did.
    """
    return ["capture", *(ctx.params.get("images") or []), *given_argv(ctx, leave_out=("gpus",), values={"out": out})]


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
            help="Image or PDF files, folders (searched recursively) or text files listing paths; "
            "each PDF page is one image. Default: sample pages drawn by dsocr.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run directory. Default: runs/<timestamp>-<pid>.", show_default=False),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Local model folder (DeepSeek-OCR-2, or another registered family), an architecture "
            ".json (random weights), or embedded:NAME (a model shipped inside dsocr). "
            "Default: the embedded layout model (embedded:layout-deepseek-ocr2, trained on synthetic "
            "pages: block boxes and labels, no text); embedded:tiny-deepseek-ocr2 is the fastest.",
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
    trace_images: Annotated[
        int,
        typer.Option(
            help="Trace every Nth image (0, N, 2N, ... of the run's list; the first always); every image "
            "keeps its reference-clock timings. For long runs: docs/scale.md."
        ),
    ] = DEFAULT_TRACE_IMAGES,
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
    dpi: Annotated[
        int, typer.Option(help="PDF inputs: render each page at this many dots per inch (the vendor's 144).")
    ] = DEFAULT_DPI,
    pages: Annotated[
        str | None,
        typer.Option(
            help="PDF inputs: the pages to capture, 1-based, e.g. 1-3,7. Default: every page.", show_default=False
        ),
    ] = None,
    no_repeat_ngram: Annotated[
        int | None,
        typer.Option(
            "--no-repeat-ngram",
            help="Apply the vendor's loop guard: ban a token that would repeat an n-gram of this size "
            "seen in the last --ngram-window generated tokens (the vendor uses 30). Default: off, "
            "the model as it is.",
            show_default=False,
        ),
    ] = None,
    ngram_window: Annotated[
        int, typer.Option(help="--no-repeat-ngram: how many of the latest generated tokens it searches.")
    ] = DEFAULT_NGRAM_WINDOW,
    ngram_allow: Annotated[
        list[str] | None,
        typer.Option(
            help="--no-repeat-ngram: a token allowed to repeat (repeat the option; '' for none). "
            f"Default: {' '.join(DEFAULT_NGRAM_ALLOW)} (the vendor's table cells).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run DeepSeek-OCR on images under torch.profiler; write outputs and traces to Parquet."""
    if gpus < 1:
        raise BadInputError(f"--gpus must be >= 1, got {gpus}")
    if resume and out is None:
        raise BadInputError("--resume continues the run named by --out: pass --out RUN")
    out = out or _default_out()
    from dsocr.capture.architecture import check_model_config
    from dsocr.capture.config import CaptureConfig, SamplingSchedule, parse_max_new_tokens
    from dsocr.capture.outdir import check_run_dir
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
        trace_images=trace_images,
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
        dpi=dpi,
        pages=pages,
        no_repeat_ngram=no_repeat_ngram,
        ngram_window=ngram_window,
        ngram_allow=DEFAULT_NGRAM_ALLOW if ngram_allow is None else tuple(token for token in ngram_allow if token),
    )
    config = as_recorded(config, _given_options(ctx))
    # Torch-free: refusing --out (an existing run without --resume, a link out of the run, --resume
    # of no run) or a model config no model can be built from must not wait seconds for torch.
    check_run_dir(config.out, resume=config.resume)
    check_model_config(config)
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
