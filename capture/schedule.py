"""torch.profiler schedules, one profiler step per generated token (step 0 is vision + prefill)."""

from __future__ import annotations

from collections.abc import Callable

from dsocr.capture.config import SamplingSchedule
from torch.profiler import ProfilerAction

Schedule = Callable[[int], ProfilerAction]


def sampled_records(step: int, sampling: SamplingSchedule) -> bool:
    """Whether sampled mode traces ``step``: prefill, the first steps, then periodic windows."""
    if step <= sampling.first_steps:
        return True
    return step >= sampling.window_every and step % sampling.window_every < sampling.window_steps


def sampled_schedule(sampling: SamplingSchedule) -> Schedule:
    """Record prefill and the sampled decode steps; flush to Parquet at the end of each window."""

    def action(step: int) -> ProfilerAction:
        records_now = sampled_records(step, sampling)
        records_next = sampled_records(step + 1, sampling)
        if records_now:
            return ProfilerAction.RECORD if records_next else ProfilerAction.RECORD_AND_SAVE
        # One warm-up step before a window keeps CUPTI's start-up out of the window's first step.
        return ProfilerAction.WARMUP if records_next else ProfilerAction.NONE

    return action


def full_schedule(chunk_steps: int) -> Schedule:
    """Record every step; flush every ``chunk_steps`` decode steps so memory stays bounded."""

    def action(step: int) -> ProfilerAction:
        if step > 0 and step % chunk_steps == 0:
            return ProfilerAction.RECORD_AND_SAVE
        return ProfilerAction.RECORD

    return action
