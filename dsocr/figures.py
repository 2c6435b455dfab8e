"""The glossary: each figure a user reads, defined once, under one name, for every output.

Capture's summary and progress bar, analyze (terminal and summary.json), the report, compare and
emit all show these figures under these names with these definitions (docs/run-format.md,
"Glossary", holds the same table; a test keeps them equal). Per image, from the reference clock:

- ``ttft_ms``: vision + prefill_text (the prediction row's ``prefill_ms``);
- ``decode_ms``: every decode step, summed;
- ``tpot_p50_ms``: the median of the image's decode steps;
- ``decode_tokens_per_s``: decode steps per second of decode (steps / decode_ms);
- ``image_ms``: the image's wall time (vision + prefill_text + decode + other).

A run figure is the median (and p90) of the per-image figures across images, never a median over
the steps of all images pooled.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dsocr.vocab import MS_PER_S

#: name -> definition, in display order (docs/run-format.md, Glossary).
GLOSSARY: dict[str, str] = {
    "vision_ms": "the vision tower's first forward to the language model's first forward (reference clock)",
    "prefill_text_ms": "prefill without vision: prefill_ms - vision_ms (reference clock)",
    "ttft_ms": "time to first token: vision + prefill_text (the prediction row's prefill_ms)",
    "decode_ms": "every decode step of the image, summed (reference clock)",
    "other_ms": "image_ms - ttft_ms - decode_ms: image loading, preprocessing, tokenization, profiler start/stop",
    "image_ms": "the image's wall time: vision + prefill_text + decode + other (reference clock)",
    "tpot_p50_ms": "median of the image's decode steps (time per output token)",
    "tpot_mean_ms": "mean of the image's decode steps: decode_ms / decode steps",
    "decode_tokens_per_s": "decode steps per second of decode: steps / decode_ms x 1000",
    "generated_tokens": "tokens generated for the image (the first one ends prefill; decode steps = generated - 1)",
}
#: How a run figure is made from the per-image ones.
RUN_FIGURE = "median across images (p90 beside it)"


def tpot_p50_ms(step_ms: Sequence[float] | None) -> float | None:
    """The median of one image's decode steps."""
    return statistics.median(step_ms) if step_ms else None


def decode_tokens_per_s(step_ms: Sequence[float] | None) -> float | None:
    """One image's decode steps per second of decode (steps / decode_ms)."""
    total = sum(step_ms or ())
    return len(step_ms) / total * MS_PER_S if step_ms and total > 0 else None


def image_figures(row: Mapping[str, Any]) -> dict[str, float | None]:
    """The glossary's per-image figures of one prediction row (None where it lacks them)."""
    steps = row.get("decode_step_ms") or []
    return {
        "ttft_ms": row.get("prefill_ms"),
        "decode_ms": row.get("decode_ms"),
        "tpot_p50_ms": tpot_p50_ms(steps),
        "decode_tokens_per_s": decode_tokens_per_s(steps),
        "image_ms": row.get("image_ms"),
    }


def median_across_images(values: Iterable[float | None]) -> float | None:
    """A run figure: the median of the per-image values (None without any)."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None
