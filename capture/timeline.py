"""One image's stage boundaries inside HF generate: ranges, reference clock and profiler steps.

No Python loop of our own: generate calls the vision tower and language model (forward
pre-hooks) and, after each token is appended, its stopping criteria, which is where a token
boundary is seen. Stages:

- prefill: from the generate call to the first token appended (vision included);
- vision: the vision tower's first forward to the language model's first forward;
- decode step K (K = 1..N-1): token K appended to token K+1 appended; decode is their sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from dsocr.capture.clock import Clock
from dsocr.capture.ranges import OpenRange, open_range
from transformers import StoppingCriteria

from dsocr.vocab import RangeStage


@dataclass
class StageTimes:
    """Reference timings of one image, read from the clock after generate returned."""

    vision_ms: float | None
    prefill_ms: float
    decode_step_ms: list[float]
    profiler_step_ms: float

    @property
    def decode_ms(self) -> float:
        return float(sum(self.decode_step_ms))


@dataclass
class _Marks:
    prefill_start: int | None = None
    vision_start: int | None = None
    vision_end: int | None = None
    # One (before profiler step, after profiler step) pair per appended token.
    token_before_step: list[int] = field(default_factory=list)
    token_after_step: list[int] = field(default_factory=list)


class ImageTimeline(StoppingCriteria):
    """Stopping criterion that never stops: it marks each token boundary of one image."""

    def __init__(
        self,
        *,
        image_index: int,
        clock: Clock,
        profiler_step: Callable[[], None],
        max_new_tokens: int,
        eos_token_id: int,
        decode_in_trace: bool,
    ) -> None:
        self._image_index = image_index
        self._clock = clock
        self._profiler_step = profiler_step
        self._max_new_tokens = max_new_tokens
        self._eos_token_id = eos_token_id
        self._decode_in_trace = decode_in_trace
        self._marks = _Marks()
        self._open: dict[RangeStage, OpenRange] = {}
        self.generated_tokens = 0
        self.last_token_is_eos = False

    def _open_range(self, stage: RangeStage, step: int | None = None, in_trace: bool = True) -> None:
        self._open[stage] = open_range(stage, image_index=self._image_index, step=step, in_trace=in_trace)

    def _close_range(self, stage: RangeStage) -> None:
        self._open.pop(stage).close()

    def begin(self) -> None:
        """Call right before generate: prefill (and TTFT) starts here."""
        self._marks.prefill_start = self._clock.mark()
        self._open_range(RangeStage.prefill)

    def on_vision_forward(self, module: torch.nn.Module, args: tuple) -> None:
        """Forward pre-hook of the vision tower (runs for the global view and again for tiles)."""
        if self._marks.vision_start is None:
            self._open_range(RangeStage.vision)
            self._marks.vision_start = self._clock.mark()

    def on_text_forward(self, module: torch.nn.Module, args: tuple) -> None:
        """Forward pre-hook of the language model: its first call ends vision."""
        if RangeStage.vision in self._open:
            self._marks.vision_end = self._clock.mark()
            self._close_range(RangeStage.vision)

    def _ends_with_eos(self, input_ids: torch.LongTensor) -> bool:
        # One host sync per token; generate itself syncs at the same point for its stop check.
        self.last_token_is_eos = bool(input_ids[0, -1] == self._eos_token_id)
        return self.last_token_is_eos

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        self.generated_tokens += 1
        token = self.generated_tokens
        last = self._ends_with_eos(input_ids) or token >= self._max_new_tokens
        if token == 1:
            self._close_range(RangeStage.prefill)
        else:
            self._close_range(RangeStage.decode_step)
        if last and RangeStage.decode in self._open:
            self._close_range(RangeStage.decode)
        self._marks.token_before_step.append(self._clock.mark())
        self._profiler_step()
        self._marks.token_after_step.append(self._clock.mark())
        if not last:
            if token == 1:
                self._open_range(RangeStage.decode, in_trace=self._decode_in_trace)
            self._open_range(RangeStage.decode_step, step=token)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def abandon(self) -> None:
        """Close whatever is still open (generate raised), innermost first."""
        for stage in (RangeStage.vision, RangeStage.decode_step, RangeStage.decode, RangeStage.prefill):
            if stage in self._open:
                self._close_range(stage)

    def times(self) -> StageTimes:
        """Read the clock (waits for the device) and return this image's reference timings."""
        self._clock.settle()
        marks = self._marks
        elapsed = self._clock.elapsed_ms
        if marks.prefill_start is None or not marks.token_before_step:
            raise RuntimeError("generate produced no token")
        vision_ms = None
        if marks.vision_start is not None and marks.vision_end is not None:
            vision_ms = elapsed(marks.vision_start, marks.vision_end)
        step_ms = [
            elapsed(marks.token_after_step[index], marks.token_before_step[index + 1])
            for index in range(len(marks.token_before_step) - 1)
        ]
        profiler_ms = sum(
            elapsed(before, after)
            for before, after in zip(marks.token_before_step, marks.token_after_step, strict=True)
        )
        return StageTimes(
            vision_ms=vision_ms,
            prefill_ms=elapsed(marks.prefill_start, marks.token_before_step[0]),
            decode_step_ms=step_ms,
            profiler_step_ms=profiler_ms,
        )
