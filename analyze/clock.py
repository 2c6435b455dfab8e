"""Per image: stage times on the capture's reference clock, every decode step (the whole truth).

The reference clock (CUDA events on a GPU, perf_counter on a CPU) times every image in every
profile mode, off included, so these are the stage times analyze, compare, report and emit show:

- vision, prefill_text (= prefill - vision), decode (every step), TTFT (= prefill = vision +
  prefill_text);
- image: the image's wall time (``image_ms``, recorded since dsocr records it);
- other = image - TTFT - decode: image loading, preprocessing, tokenization, profiler start/stop.

So vision + prefill_text + decode + other = image, per image and over the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dsocr.vocab import IMAGE, OTHER, Stage

#: Per-image clock figures, as summary.json ``images[]`` and every output name them.
CLOCK_FIGURES = ("vision_ms", "prefill_text_ms", "decode_ms", "other_ms", "image_ms", "ttft_ms")
#: The figure of each stage that adds up to the image, in display order.
STAGE_FIGURE = {
    Stage.vision: "vision_ms",
    Stage.prefill_text: "prefill_text_ms",
    Stage.decode: "decode_ms",
    OTHER: "other_ms",
    IMAGE: "image_ms",
}
#: The parts of an image (their sum is ``image``).
PARTS = (Stage.vision, Stage.prefill_text, Stage.decode, OTHER)


def clock_figures(row: Mapping[str, Any]) -> dict[str, float | None]:
    """The clock figures of one prediction row (None where the row lacks what they need)."""
    vision, prefill, decode, image = (row.get(name) for name in ("vision_ms", "prefill_ms", "decode_ms", "image_ms"))
    text = prefill - vision if prefill is not None and vision is not None else None
    other = image - prefill - decode if None not in (image, prefill, decode) else None
    return {
        "vision_ms": vision,
        "prefill_text_ms": text,
        "decode_ms": decode,
        "other_ms": other,
        "image_ms": image,
        "ttft_ms": prefill,
    }


def stage_clock_ms(row: Mapping[str, Any], stage: str) -> float | None:
    """One stage's whole time on the clock (``prefill``: TTFT)."""
    figures = clock_figures(row)
    return figures["ttft_ms"] if stage == Stage.prefill else figures.get(STAGE_FIGURE.get(stage, ""))
