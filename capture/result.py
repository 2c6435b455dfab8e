"""What ``capture.run`` returns: the run directory, its rows and the figures a caller shows.

The library prints nothing; the CLI turns a :class:`CaptureResult` into its summary table and
feeds a progress bar from the ``on_start``/``on_image`` callbacks of ``capture.run``.
Torch-free, so that a caller can type against it without loading the GPU stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsocr.figures import image_figures, median_across_images
from dsocr.vocab import ImageStatus

if TYPE_CHECKING:
    from dsocr.records import PredictionRow, StaticCacheRecord

#: ``on_start(total, already_done)``: images of the run, and how many a resumed run had done.
OnStart = Callable[[int, int], None]
#: ``on_image(row)``: the prediction row of an image this process just finished (ok or failed).
OnImage = Callable[["PredictionRow"], None]


@dataclass(frozen=True)
class CaptureFigures:
    """The run at a glance: counts, and the glossary's figures (dsocr.figures) as medians across
    the images that finished ``ok``: the same names and values as analyze's."""

    images_ok: int
    images_failed: int
    generated_tokens: int
    ttft_ms: float | None
    decode_ms: float | None
    tpot_p50_ms: float | None
    decode_tokens_per_s: float | None
    image_ms: float | None
    stop_reasons: tuple[str, ...]
    #: None when no image recorded trace events (``--profile off``).
    trace_events: int | None
    #: Images whose output ends in a repetition loop, its tokens and decode ms (reference clock).
    loop_images: int = 0
    loop_tokens: int = 0
    loop_ms: float = 0.0


@dataclass(frozen=True)
class CaptureResult:
    """A finished capture, as one process saw it.

    ``rows`` are the prediction rows of the whole run on the leader (rank 0, or the only
    process), read back after the merge; on other ranks only the rows that rank wrote.
    """

    run_dir: Path
    model_id: str
    device: str
    is_leader: bool
    rows: tuple[PredictionRow, ...]
    #: Wall time of this session's image loop (model loading excluded).
    capture_seconds: float
    #: ``--cache static``: the run's cache and its warm-up (compile seconds), outside capture_seconds.
    static_cache: StaticCacheRecord | None = None

    @property
    def figures(self) -> CaptureFigures:
        return capture_figures(self.rows)


#: The glossary's figures the capture summary shows (medians across images).
RUN_FIGURES = ("ttft_ms", "decode_ms", "tpot_p50_ms", "decode_tokens_per_s", "image_ms")


def capture_figures(rows: tuple[PredictionRow, ...] | list[PredictionRow]) -> CaptureFigures:
    """Counts, token totals, medians, stop reasons and trace events of prediction rows."""
    ok = [row for row in rows if row["status"] == ImageStatus.ok]
    per_image = [image_figures(row) for row in ok]
    events = [row["trace_events"] for row in ok if row.get("trace_events") is not None]
    looped = [row for row in ok if row.get("loop_start_step") is not None]
    return CaptureFigures(
        images_ok=len(ok),
        images_failed=len(rows) - len(ok),
        generated_tokens=sum(row.get("generated_tokens") or 0 for row in ok),
        **{name: median_across_images(figures[name] for figures in per_image) for name in RUN_FIGURES},
        stop_reasons=tuple(sorted({row["stop_reason"] for row in ok if row.get("stop_reason")})),
        trace_events=sum(events) if events else None,
        loop_images=len(looped),
        loop_tokens=sum((row.get("generated_tokens") or 0) - (row.get("loop_start_step") or 0) for row in looped),
        loop_ms=sum(row.get("loop_ms") or 0.0 for row in looped),
    )
