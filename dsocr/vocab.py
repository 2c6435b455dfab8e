"""Every word the stages share, defined once: stage and range names, statuses, reasons, clocks, units.

Closed sets are ``StrEnum``s, so a member is its own string in Parquet and JSON. Capture writes
these words, analyze and emit read them; no stage retypes one. Each set is documented in
docs/run-format.md (Vocabulary), and a test keeps the doc tables in sync with this module.
"""

from __future__ import annotations

import enum

# -- time units ------------------------------------------------------------------------------

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
US_PER_MS = 1_000
MS_PER_S = 1_000


# -- stages and ranges -------------------------------------------------------------------------


class RangeStage(enum.StrEnum):
    """The ranges capture opens around each image (TRACE ``range_stage``)."""

    vision = "vision"
    prefill = "prefill"
    decode = "decode"
    decode_step = "decode_step"
    #: Marks the end of each profiler session (a zero-work range; no stage's time).
    session_end = "session_end"


class Stage(enum.StrEnum):
    """The stages analyze reports (TIMINGS ``stage``), in display order.

    prefill contains vision; prefill_text is prefill minus vision; decode is the decode steps.
    """

    vision = "vision"
    prefill_text = "prefill_text"
    prefill = "prefill"
    decode = "decode"


#: The TIMINGS stages, in display order.
STAGES = tuple(Stage)

#: The stages that add up to an image on the reference clock, with ``other`` (the remainder):
#: vision + prefill_text + decode + other = image. prefill is TTFT (vision + prefill_text),
#: never shown beside them.
TIME_STAGES = (Stage.vision, Stage.prefill_text, Stage.decode)
#: The image's wall time not in a stage: image loading, preprocessing, tokenization, profiler start/stop.
OTHER = "other"
#: The whole image (IMAGE = vision + prefill_text + decode + other).
IMAGE = "image"
#: What ``other`` holds, as every output names it.
OTHER_MEANING = "other: image loading, preprocessing, tokenization, profiler start/stop"

#: Stages that a prediction row times itself, as ``<stage>_ms`` (vision_ms, prefill_ms,
#: decode_ms): the capture's reference clock, or an import's ``timings_ms``.
REFERENCE_STAGES = (Stage.vision, Stage.prefill, Stage.decode)

#: Every dsocr range name starts with this: ``dsocr.prefill``, ``dsocr.decode_step#12``.
RANGE_PREFIX = "dsocr."
#: Between a range's stage and its decode step number.
STEP_SEPARATOR = "#"
#: The NVTX domain of dsocr's ranges in Nsight Systems.
NVTX_DOMAIN = "dsocr"


def range_name(stage: RangeStage | str, step: int | None = None) -> str:
    """The record_function name of a range, e.g. ``dsocr.decode_step#12``."""
    name = f"{RANGE_PREFIX}{stage}"
    return name if step is None else f"{name}{STEP_SEPARATOR}{step}"


def parse_range_name(name: str) -> tuple[str | None, int | None]:
    """(stage, step) of a dsocr range name; (None, None) for any other event name.

    The stage is returned as written (a newer capture may add stages); the step is None when
    the name has none or it is not a non-negative integer.
    """
    if not name.startswith(RANGE_PREFIX):
        return None, None
    stage, _, step = name[len(RANGE_PREFIX) :].partition(STEP_SEPARATOR)
    return stage, (int(step) if step.isdecimal() and step.isascii() else None)


# -- predictions -----------------------------------------------------------------------------


class ImageStatus(enum.StrEnum):
    """PREDICTIONS ``status``: whether the image was processed."""

    ok = "ok"
    failed = "failed"


class StopReason(enum.StrEnum):
    """PREDICTIONS ``stop_reason``: why a generation ended."""

    eos = "eos"
    max_new_tokens = "max_new_tokens"
    model_limit = "model_limit"  # the cap came from the model's context length
    fallback_ceiling = "fallback_ceiling"  # inf asked, no context length known
    error = "error"  # the image failed


class TimingClock(enum.StrEnum):
    """PREDICTIONS ``timing_clock``: the reference clock of the row's ``*_ms`` timings."""

    cuda_event = "cuda_event"
    perf_counter = "perf_counter"


class ProfileMode(enum.StrEnum):
    """How much of each image torch.profiler records (``--profile``, PREDICTIONS ``profile_mode``)."""

    sampled = "sampled"
    full = "full"
    off = "off"


# -- run.json --------------------------------------------------------------------------------


class RunKind(enum.StrEnum):
    """run.json ``kind``: how the run directory was made."""

    capture = "capture"
    import_ = "import"  # `dsocr import`: outputs produced elsewhere, no trace


class RunStatus(enum.StrEnum):
    """run.json ``status``."""

    running = "running"
    complete = "complete"
    interrupted = "interrupted"


# -- analysis --------------------------------------------------------------------------------


class KernelKind(enum.StrEnum):
    """KERNELS ``kind``: what a top-k row ranks."""

    kernel = "kernel"  # GPU activities by name, GPU time
    operator = "operator"  # GPU time by the cpu_op that launched it
    cpu_operator = "cpu_operator"  # CPU self time of cpu_ops


class AnalysisFile(enum.StrEnum):
    """The files ``dsocr analyze`` writes under ``analysis/`` (see rundir.analysis_path)."""

    timings = "timings.parquet"
    kernels = "kernels.parquet"
    summary = "summary.json"
    steps = "steps.parquet"
    #: The sums a shard's analysis merges by (``dsocr analyze --merge``).
    partials = "partials.json"
    roofline = "roofline.parquet"
