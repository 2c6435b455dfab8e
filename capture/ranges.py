"""Ranges that show in both tools: an NVTX range (Nsight Systems) and a record_function (torch trace).

NVTX ranges never appear in Kineto traces and record_function never appears in Nsight, so
every dsocr range is emitted as both, under one name.
"""

from __future__ import annotations

from dataclasses import dataclass

import nvtx
import torch

from dsocr.vocab import NVTX_DOMAIN, RangeStage, range_name

# NVTX colours (ARGB) per stage, so the Nsight timeline reads at a glance.
_STAGE_COLORS = {
    RangeStage.vision: 0xFF4C72B0,
    RangeStage.prefill: 0xFFDD8452,
    RangeStage.decode: 0xFF55A868,
    RangeStage.decode_step: 0xFF8C8C8C,
}


@dataclass
class OpenRange:
    """A range that is open in both tools until ``close`` is called."""

    _function_range: torch.autograd.profiler.record_function | None
    _nvtx_id: object

    def close(self) -> None:
        if self._function_range is not None:
            self._function_range.__exit__(None, None, None)
        nvtx.end_range(self._nvtx_id)


def open_range(stage: RangeStage, *, image_index: int, step: int | None = None, in_trace: bool = True) -> OpenRange:
    """Open ``dsocr.<stage>[#step]``; the NVTX message also names the image, its payload is the index.

    ``in_trace=False`` opens the NVTX range only: a record_function that outlives a profiler
    cycle is written with the cycle's end as its end, a duration that never happened.
    """
    function_range = None
    if in_trace:
        function_range = torch.autograd.profiler.record_function(range_name(stage, step))
        function_range.__enter__()
    message = f"img{image_index} {stage}" if step is None else f"img{image_index} {stage} {step}"
    nvtx_id = nvtx.start_range(message=message, color=_STAGE_COLORS[stage], domain=NVTX_DOMAIN, payload=image_index)
    return OpenRange(function_range, nvtx_id)
