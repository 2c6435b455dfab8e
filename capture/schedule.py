"""Which profiler steps are traced, one step per generated token (step 0 is vision + prefill)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dsocr.capture.config import SamplingSchedule
from torch.profiler import ProfilerAction

Schedule = Callable[[int], ProfilerAction]


@dataclass(frozen=True)
class StepPlan:
    """What to record: ``records(step)``; where a recording ends even if the next step records too."""

    records: Callable[[int], bool]
    flush_after: Callable[[int], bool]
    #: The last step of the image's first session (its decode range fits in it when shorter).
    first_session_steps: int


def sampled_records(step: int, sampling: SamplingSchedule) -> bool:
    """Whether sampled mode traces ``step``: prefill, the first steps, then periodic windows."""
    if step <= sampling.first_steps:
        return True
    return step >= sampling.window_every and step % sampling.window_every < sampling.window_steps


def sampled_plan(sampling: SamplingSchedule) -> StepPlan:
    """Prefill and the first steps, then a window of ``window_steps`` every ``window_every`` steps."""
    return StepPlan(
        records=lambda step: sampled_records(step, sampling),
        flush_after=lambda step: False,
        first_session_steps=sampling.first_steps,
    )


def full_plan(chunk_steps: int) -> StepPlan:
    """Every step; flush every ``chunk_steps`` decode steps so memory stays bounded."""
    return StepPlan(
        records=lambda step: True,
        flush_after=lambda step: step > 0 and step % chunk_steps == 0,
        first_session_steps=chunk_steps,
    )


def schedule_from_plan(plan: StepPlan) -> Schedule:
    """The plan as a cyclic torch.profiler schedule for one session per image (the earlier design)."""

    def action(step: int) -> ProfilerAction:
        records_now = plan.records(step)
        records_next = plan.records(step + 1)
        if records_now:
            save = not records_next or plan.flush_after(step)
            return ProfilerAction.RECORD_AND_SAVE if save else ProfilerAction.RECORD
        # One warm-up step before a window keeps CUPTI's start-up out of the window's first step.
        return ProfilerAction.WARMUP if records_next else ProfilerAction.NONE

    return action
