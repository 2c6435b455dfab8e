"""The reference clock: independent of the profiler, cheap enough to read at every token.

On CUDA it records events on the current stream (stream time, no host sync until the end);
on CPU it reads perf_counter, which needs no synchronisation there.
"""

from __future__ import annotations

import time
from typing import Protocol

import torch

from dsocr.vocab import NS_PER_MS, TimingClock


class Clock(Protocol):
    name: TimingClock

    def mark(self) -> int:
        """Record a point in time; returns its handle."""
        ...

    def elapsed_ms(self, start: int, end: int) -> float:
        """Milliseconds between two marks (call after ``settle``)."""
        ...

    def settle(self) -> None:
        """Wait until every mark has a time."""
        ...


class PerfCounterClock:
    """Host wall clock (CPU runs)."""

    name = TimingClock.perf_counter

    def __init__(self) -> None:
        self._times_ns: list[int] = []

    def mark(self) -> int:
        self._times_ns.append(time.perf_counter_ns())
        return len(self._times_ns) - 1

    def settle(self) -> None:
        """Nothing to wait for: host times are final when read."""

    def elapsed_ms(self, start: int, end: int) -> float:
        return (self._times_ns[end] - self._times_ns[start]) / NS_PER_MS


class CudaEventClock:
    """CUDA events on the current stream: device time between two points of the stream."""

    name = TimingClock.cuda_event

    def __init__(self) -> None:
        self._events: list[torch.cuda.Event] = []

    def mark(self) -> int:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        self._events.append(event)
        return len(self._events) - 1

    def settle(self) -> None:
        if self._events:
            self._events[-1].synchronize()

    def elapsed_ms(self, start: int, end: int) -> float:
        return float(self._events[start].elapsed_time(self._events[end]))


def clock_for(device: torch.device) -> Clock:
    """A fresh clock suited to ``device``."""
    return CudaEventClock() if device.type == "cuda" else PerfCounterClock()
