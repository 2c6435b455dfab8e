"""Capture options as one validated, frozen object (no torch import here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsocr.capture.pdf import PageSelection, check_dpi, parse_pages

from dsocr.errors import BadInputError
from dsocr.options import (  # re-exported: capture's modules import the option vocabulary from here
    DEFAULT_DPI,
    DEFAULT_FIRST_STEPS,
    DEFAULT_FULL_CHUNK_STEPS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_NGRAM_ALLOW,
    DEFAULT_NGRAM_WINDOW,
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
#: ``--no-repeat-ngram 1`` would ban every token of the window (capture.ngram.MIN_NGRAM, torch-free here).
MIN_NO_REPEAT_NGRAM = 2
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
    #: PDF inputs: pages rendered at ``dpi`` (``--dpi``); ``pages`` selects them (``--pages 1-3,7``; None: all).
    dpi: int = DEFAULT_DPI
    pages: str | None = None
    #: The vendor's no-repeat n-gram guard (``--no-repeat-ngram``; None: off, the model as it is),
    #: the generated tokens it searches (``--ngram-window``) and the tokens it lets repeat.
    no_repeat_ngram: int | None = None
    ngram_window: int = DEFAULT_NGRAM_WINDOW
    ngram_allow: tuple[str, ...] = DEFAULT_NGRAM_ALLOW
    #: Library use only (no CLI option, not recorded): transformers logits processors that every
    #: generate of the capture runs before the guard; tests use one to force a repetition loop.
    extra_logits_processors: tuple[Any, ...] = ()

    @property
    def page_selection(self) -> PageSelection | None:
        """``pages`` parsed (validated in __post_init__)."""
        return parse_pages(self.pages)

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
        check_dpi(self.dpi)
        parse_pages(self.pages)
        if self.no_repeat_ngram is not None:
            check_count("--no-repeat-ngram", self.no_repeat_ngram, minimum=MIN_NO_REPEAT_NGRAM)
            check_count("--ngram-window", self.ngram_window, minimum=self.no_repeat_ngram)
        if not 0 <= self.seed <= MAX_SEED:
            raise BadInputError(f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
