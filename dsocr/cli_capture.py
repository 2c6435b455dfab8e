"""`dsocr capture`: parse options, build a CaptureConfig, call capture.runner.run."""

from __future__ import annotations

import datetime as dt
import enum
import os
from pathlib import Path
from typing import Annotated

import typer

from dsocr._app import app
from dsocr.capture.config import (
    DEFAULT_FIRST_STEPS,
    DEFAULT_FULL_CHUNK_STEPS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_PROMPT,
    DEFAULT_WINDOW_EVERY,
    DEFAULT_WINDOW_STEPS,
    CaptureConfig,
    Device,
    DType,
    ProfilerSessions,
    SamplingSchedule,
    SdpaBackend,
    parse_max_new_tokens,
)
from dsocr.errors import BadInputError, MissingExtraError
from dsocr.vocab import ProfileMode

RUNS_ROOT = Path("runs")
INSTALL_HINT = "dsocr capture needs torch, transformers and nvtx: pip install -e '.[capture]' (with torch==2.13.0)"


def _default_out() -> Path:
    return RUNS_ROOT / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _argv_from(ctx: typer.Context, out: Path) -> list[str]:
    """This capture command as parsed, minus --gpus, with --out explicit: what every rank runs."""
    argv = ["capture", *(ctx.params.get("images") or [])]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in ("images", "gpus") or value is None:
            continue
        flag = param.opts[0]
        if param.name == "out":
            value = out
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value.value if isinstance(value, enum.Enum) else value)]
    return argv


def _launch_ranks(argv: list[str], processes: int) -> int:
    try:
        from dsocr.capture.distributed import launch
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL_HINT} ({exc.name} is missing)") from None
    return launch(argv, processes)


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
        typer.Option(help="Local DeepSeek-OCR-2 model folder. Default: the embedded tiny model.", show_default=False),
    ] = None,
    device: Annotated[Device, typer.Option(help="Where the model runs.")] = Device.cpu,
    dtype: Annotated[
        DType | None, typer.Option(help="Weights and activations. Default: bf16 on cuda, fp32 on cpu.")
    ] = None,
    prompt: Annotated[str, typer.Option(help="Prompt; must contain <image>.")] = DEFAULT_PROMPT,
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
    seed: Annotated[int, typer.Option(help="Seed of the embedded model's random weights.")] = 0,
    gpus: Annotated[
        int,
        typer.Option(
            help="Processes, one per GPU, through torchrun; each takes a shard of the images "
            "(with --device cpu: processes on the gloo backend)."
        ),
    ] = 1,
    warmup_tokens: Annotated[
        int,
        typer.Option(
            help="Before the first image, one unrecorded generate of this many tokens (0: none). "
            "It warms only the decode lengths it runs: see docs/performance.md on cold steps."
        ),
    ] = 0,
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
) -> None:
    """Run DeepSeek-OCR on images under torch.profiler; write outputs and traces to Parquet."""
    out = out or _default_out()
    if gpus > 1 and "WORLD_SIZE" not in os.environ:
        # Every rank must agree on --out, so the resolved default goes on the command line.
        raise typer.Exit(_launch_ranks(_argv_from(ctx, out), gpus))
    if gpus < 1:
        raise BadInputError(f"--gpus must be >= 1, got {gpus}")
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
    )
    try:
        from dsocr.capture.runner import run
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL_HINT} ({exc.name} is missing)") from None
    run(config)
