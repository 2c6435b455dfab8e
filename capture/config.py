"""Capture options as one validated, frozen object (no torch import here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dsocr.errors import BadInputError
from dsocr.options import (  # re-exported: capture's modules import the option vocabulary from here
    DEFAULT_FIRST_STEPS,
    DEFAULT_FULL_CHUNK_STEPS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_PROMPT,
    DEFAULT_TRACE_IMAGES,
    DEFAULT_WINDOW_EVERY,
    DEFAULT_WINDOW_STEPS,
    INF_TOKEN,
    CacheKind,
    CompileMode,
    Device,
    DType,
    ProfileMode,
    ProfilerSessions,
    SdpaBackend,
)

__all__ = [
    "DEFAULT_FIRST_STEPS",
    "DEFAULT_FULL_CHUNK_STEPS",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_PROMPT",
    "DEFAULT_TRACE_IMAGES",
    "DEFAULT_WINDOW_EVERY",
    "DEFAULT_WINDOW_STEPS",
    "INF_TOKEN",
    "CacheKind",
    "CaptureConfig",
    "CompileMode",
    "DType",
    "Device",
    "ProfileMode",
    "ProfilerSessions",
    "SamplingSchedule",
    "SdpaBackend",
    "parse_max_new_tokens",
]

#: Token and step counts land in int32 Parquet columns (schema.PREDICTIONS); larger ones are refused
#: before anything runs instead of failing at the first write, after the model has run.
MAX_COUNT = 2**31 - 1
#: The seed is recorded in run.json and fed to torch.manual_seed; an int64 keeps it portable.
MAX_SEED = 2**63 - 1


def check_count(option: str, value: int, *, minimum: int) -> None:
    """Refuse ``value`` for ``option`` unless ``minimum <= value <= MAX_COUNT``."""
    if not minimum <= value <= MAX_COUNT:
        raise BadInputError(f"{option} must be between {minimum} and {MAX_COUNT}, got {value}")


def parse_max_new_tokens(text: str | int | None) -> int | None:
    """``inf`` (any case) -> None (until EOS, bounded by the model); else an integer >= 1."""
    if text is None:
        return None
    raw = str(text).strip()
    if raw.lower() == INF_TOKEN:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadInputError(f"--max-new-tokens must be an integer >= 1 or 'inf', got {raw!r}") from None
    if value < 1:
        raise BadInputError(f"--max-new-tokens must be an integer >= 1 or 'inf', got {value}")
    if value > MAX_COUNT:
        raise BadInputError(f"--max-new-tokens must be at most {MAX_COUNT} or 'inf', got {value}")
    return value


@dataclass(frozen=True)
class SamplingSchedule:
    """Which decode steps sampled mode traces: the first steps, then a window every so many."""

    first_steps: int = DEFAULT_FIRST_STEPS
    window_steps: int = DEFAULT_WINDOW_STEPS
    window_every: int = DEFAULT_WINDOW_EVERY

    def __post_init__(self) -> None:
        check_count("--first-steps", self.first_steps, minimum=0)
        check_count("--window-steps", self.window_steps, minimum=1)
        check_count("--window-every", self.window_every, minimum=1)
        if self.window_every <= self.window_steps:
            raise BadInputError(
                f"--window-every ({self.window_every}) must be larger than --window-steps ({self.window_steps})"
            )


@dataclass(frozen=True)
class CaptureConfig:
    """Everything `dsocr capture` was asked to do, resolved and validated."""

    images: tuple[str, ...]
    out: Path
    model: Path | None = None
    device: Device = Device.cpu
    dtype: DType | None = None  # None: bf16 on cuda, fp32 on cpu
    prompt: str | None = None  # None: the model family's default (the runner resolves it first)
    max_new_tokens: int | None = None
    profile: ProfileMode = ProfileMode.sampled
    sampling: SamplingSchedule = field(default_factory=SamplingSchedule)
    full_chunk_steps: int = DEFAULT_FULL_CHUNK_STEPS
    #: Trace every Nth image (by run-wide image index: 0, N, 2N, ...); the others run with the
    #: reference clock alone (``--trace-images``).
    trace_images: int = DEFAULT_TRACE_IMAGES
    resume: bool = False
    seed: int = 0
    warmup_tokens: int = 0
    profiler_sessions: ProfilerSessions = ProfilerSessions.window
    sdpa_backend: SdpaBackend = SdpaBackend.auto
    #: transformers' attn_implementation for the model (None: the model's default, sdpa).
    attn_implementation: str | None = None
    #: Record operator input shapes and FLOP counts (torch's ``with_flops``): off by default
    #: because it multiplies the profiler's stop cost (docs/performance.md).
    with_flops: bool = False
    #: Keep torch's exported chrome-trace JSON of every chunk under trace/kineto/ (``--keep-kineto``).
    keep_kineto: bool = False
    #: The decode cache (``--cache``) and whether a static cache's decode is compiled (``--compile``).
    cache: CacheKind = CacheKind.dynamic
    compile: CompileMode = CompileMode.auto
    #: Library use only (no CLI option): a torch.compile backend for ``--compile auto`` that
    #: transformers then uses on any device, e.g. ``eager`` (Dynamo tracing only) to run the
    #: compiled path on a CPU in tests. None: transformers' own choice (inductor, CUDA graphs).
    compile_backend: str | None = None

    def __post_init__(self) -> None:
        if self.with_flops and self.profile is ProfileMode.off:
            raise BadInputError("--with-flops needs a trace: use --profile sampled or full")
        if self.keep_kineto and self.profile is ProfileMode.off:
            raise BadInputError("--keep-kineto needs a trace: use --profile sampled or full")
        check_count("--warmup-tokens", self.warmup_tokens, minimum=0)
        check_count("--full-chunk-steps", self.full_chunk_steps, minimum=1)
        check_count("--trace-images", self.trace_images, minimum=1)
        if self.trace_images > 1 and self.profile is ProfileMode.off:
            raise BadInputError("--trace-images needs a trace: use --profile sampled or full")
        if self.max_new_tokens is not None:
            check_count("--max-new-tokens", self.max_new_tokens, minimum=1)
        if not 0 <= self.seed <= MAX_SEED:
            raise BadInputError(f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
