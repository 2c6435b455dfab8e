"""Run-level trace figures as sums that merge: one batch of images at a time, or one shard at a time.

analyze reads a run's trace a batch of whole images at a time (analyze/runner.py) and keeps,
between batches, only these sums and the small per-image tables: never the events. Every figure
here is an exact sum (counts, integer nanoseconds, totals per name), so adding the batches in
any grouping gives the same result as one pass over the whole trace: the top-k tables, the
coverage counts and the findings' launch and copy figures are computed from the sums at the end.

Names (kernels, operators) are numbered in one run-wide ``Vocabulary``, in the order they are
first met: the order a single pass's unified dictionary has, so ties break as they did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.attribution import GpuWork
from dsocr.analyze.gpu_figures import COPY_PATTERN, MEMCPY_CATS, TOP_NAMES
from dsocr.analyze.keys import chunk_key, dense_codes, image_key, step_key
from dsocr.analyze.load import TraceTables
from dsocr.analyze.ranges import Ranges
from dsocr.analyze.stages import stage_masks

from dsocr.vocab import NS_PER_MS, STAGES, RangeStage


class Vocabulary:
    """Names numbered in the order first met (a batch's dictionary is appended in its own order)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def codes(self, names: Iterable[str]) -> np.ndarray:
        """The run-wide code of each of ``names`` (a batch's dictionary), new names appended."""
        result = []
        for name in names:
            code = self._codes.get(name)
            if code is None:
                code = self._codes[name] = len(self.names)
                self.names.append(name)
            result.append(code)
        return np.array(result, dtype=np.int64)

    def to_json(self) -> list[str]:
        return list(self.names)


class NameTotals:
    """Time and calls per run-wide name code, and in a last bucket those without a name."""

    def __init__(self) -> None:
        self.totals = np.zeros(1)
        self.calls = np.zeros(1, dtype=np.int64)

    def _grow(self, size: int) -> None:
        if size + 1 > self.totals.size:
            grown_totals, grown_calls = np.zeros(size + 1), np.zeros(size + 1, dtype=np.int64)
            grown_totals[: self.totals.size - 1] = self.totals[:-1]
            grown_calls[: self.calls.size - 1] = self.calls[:-1]
            grown_totals[-1], grown_calls[-1] = self.totals[-1], self.calls[-1]
            self.totals, self.calls = grown_totals, grown_calls

    def add(self, codes: np.ndarray, totals: np.ndarray, calls: np.ndarray, vocabulary_size: int) -> None:
        """Add a batch's ``totals``/``calls`` per batch code (last entry: no name); ``codes`` maps
        the batch's codes to run-wide ones."""
        self._grow(vocabulary_size)
        named = totals.size - 1  # a stage's sums may predate the last names of their vocabulary
        np.add.at(self.totals, codes[:named], totals[:-1])
        np.add.at(self.calls, codes[:named], calls[:-1])
        self.totals[-1] += totals[-1]
        self.calls[-1] += calls[-1]

    def merge(self, other: NameTotals, codes: np.ndarray, vocabulary_size: int) -> None:
        """Add ``other`` (numbered by another vocabulary; ``codes`` maps its codes to this one's)."""
        self.add(codes, other.totals, other.calls, vocabulary_size)

    def sized(self, vocabulary_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(totals, calls) over the whole vocabulary, the unnamed bucket last."""
        self._grow(vocabulary_size)
        return self.totals, self.calls

    def to_json(self) -> dict[str, list[Any]]:
        return {"totals": self.totals.tolist(), "calls": self.calls.tolist()}

    @classmethod
    def from_json(cls, payload: dict[str, list[Any]]) -> NameTotals:
        totals = cls()
        totals.totals = np.array(payload["totals"], dtype=np.float64)
        totals.calls = np.array(payload["calls"], dtype=np.int64)
        return totals


#: Per stage: the sums behind ``launch_figures``.
_LAUNCH_SUMS = ("kernels", "shorter_than_launch", "launch_ns", "kernel_ns")
#: Per stage: the sums behind ``copy_figures``.
_COPY_SUMS = ("copy_ns", "gpu_ns", "count")


@dataclass
class TraceFigures:
    """What the run-level figures need from the trace, summed over batches of images."""

    events: int = 0
    files: int = 0
    flush_chunks: int = 0
    images_with_trace: int = 0
    ranges: int = 0
    ranges_cut_by_flush: int = 0
    duplicate_ranges: int = 0
    device_time: bool = False
    gpu_ops: int = 0
    gpu_ops_outside_ranges: int = 0
    gpu_ops_outside_ranges_ns: int = 0
    gpu_ops_without_launch: int = 0
    duplicate_launch_ids: int = 0
    kernels_start_before_launch: int = 0
    gpu_ops_shared_launch: int = 0
    ranges_without_device_work: int = 0
    chunks_without_device_work: int = 0
    #: Per stage: kernels, shorter_than_launch, launch_ns, kernel_ns.
    launch: dict[str, dict[str, int]] = field(default_factory=lambda: _zeros(_LAUNCH_SUMS))
    #: Per stage: copy_ns, gpu_ns, count.
    copies: dict[str, dict[str, int]] = field(default_factory=lambda: _zeros(_COPY_SUMS))
    #: Per stage: copy and memcpy/memset time per kernel name (run-wide kernel codes).
    copy_names: dict[str, NameTotals] = field(default_factory=lambda: {stage: NameTotals() for stage in STAGES})

    def to_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in _COUNTS},
            "device_time": self.device_time,
            "launch": self.launch,
            "copies": self.copies,
            "copy_names": {stage: totals.to_json() for stage, totals in self.copy_names.items()},
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TraceFigures:
        return cls(
            **{name: int(payload[name]) for name in _COUNTS},
            device_time=bool(payload["device_time"]),
            launch={stage: dict(sums) for stage, sums in payload["launch"].items()},
            copies={stage: dict(sums) for stage, sums in payload["copies"].items()},
            copy_names={stage: NameTotals.from_json(totals) for stage, totals in payload["copy_names"].items()},
        )

    def add_counts(self, other: TraceFigures) -> None:
        """Add every count and per-stage sum of ``other`` (its copy names are merged by the caller)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.device_time = self.device_time or other.device_time
        for mine, theirs in ((self.launch, other.launch), (self.copies, other.copies)):
            for stage, sums in theirs.items():
                for key, value in sums.items():
                    mine[stage][key] += value


_COUNTS = (
    "events",
    "files",
    "flush_chunks",
    "images_with_trace",
    "ranges",
    "ranges_cut_by_flush",
    "duplicate_ranges",
    "gpu_ops",
    "gpu_ops_outside_ranges",
    "gpu_ops_outside_ranges_ns",
    "gpu_ops_without_launch",
    "duplicate_launch_ids",
    "kernels_start_before_launch",
    "gpu_ops_shared_launch",
    "ranges_without_device_work",
    "chunks_without_device_work",
)


def _zeros(keys: tuple[str, ...]) -> dict[str, dict[str, int]]:
    return {stage: dict.fromkeys(keys, 0) for stage in STAGES}


def _ranges_without_work(ranges: pa.Table, work: pa.Table) -> int:
    """Vision, prefill and decode-step ranges that launched nothing on the GPU."""
    missing = 0
    # Numpy masks over the work's keys, not filtered copies of the whole work table.
    work_keys = image_key(work)
    for stage, flag in ((RangeStage.vision, "in_vision"), (RangeStage.prefill, "in_prefill")):
        stage_ranges = ranges.filter(pc.equal(ranges["stage"], stage))
        with_work = dense_codes(work_keys[work[flag].to_numpy(zero_copy_only=False)])[0]
        missing += int(np.count_nonzero(~np.isin(image_key(stage_ranges), with_work)))
    steps = ranges.filter(pc.equal(ranges["stage"], RangeStage.decode_step))
    stepped = work["step"].is_valid().to_numpy(zero_copy_only=False)
    all_keys = np.concatenate([image_key(steps), work_keys[stepped]])
    all_steps = np.concatenate([steps["step"].to_numpy(), work["step"].fill_null(0).to_numpy()[stepped]])
    keyed = step_key(all_keys, all_steps)
    missing += int(np.count_nonzero(~np.isin(keyed[: steps.num_rows], keyed[steps.num_rows :])))
    return missing


def _chunks_without_work(ranges: pa.Table, work: pa.Table) -> int:
    """Flush chunks holding vision, prefill or decode-step ranges but no GPU activity: on a trace
    with GPU activity elsewhere, a profiler session that lost its CUDA side, not an idle GPU (every
    such range launches work)."""
    return int(np.count_nonzero(~np.isin(np.unique(chunk_key(ranges)), chunk_key(work))))


def batch_figures(trace: TraceTables, ranges: Ranges) -> TraceFigures:
    """The counts of one batch's trace and clean ranges (its GPU figures are added by ``add_gpu_figures``)."""
    return TraceFigures(
        events=trace.events,
        files=trace.files,
        flush_chunks=trace.chunks.num_rows,
        images_with_trace=int(np.unique(image_key(trace.chunks)).size),
        ranges=ranges.table.num_rows,
        ranges_cut_by_flush=ranges.cut_by_flush,
        duplicate_ranges=ranges.duplicates,
        device_time=trace.has_device_time,
    )


def add_gpu_figures(figures: TraceFigures, gpu: GpuWork, ranges: pa.Table) -> None:
    """Add the coverage counts of one batch's attributed GPU work (``ranges``: its clean ranges)."""
    work = gpu.table
    outside = pc.and_(pc.invert(work["in_prefill"]), pc.is_null(work["step"])).to_numpy(zero_copy_only=False)
    figures.gpu_ops += work.num_rows
    figures.gpu_ops_outside_ranges += int(np.count_nonzero(outside))
    figures.gpu_ops_outside_ranges_ns += int(work["dur_ns"].to_numpy()[outside].sum())
    figures.gpu_ops_without_launch += gpu.without_launch
    figures.duplicate_launch_ids += gpu.duplicate_launch_ids
    figures.kernels_start_before_launch += gpu.start_before_launch
    figures.gpu_ops_shared_launch += gpu.shared_launch
    figures.ranges_without_device_work += _ranges_without_work(ranges, work)
    figures.chunks_without_device_work += _chunks_without_work(ranges, work)


def add_launch_sums(figures: TraceFigures, work: pa.Table) -> None:
    """Add the launch figures' sums of one batch's attributed GPU work."""
    launched = work["launch_dur_ns"].is_valid().to_numpy(zero_copy_only=False)
    launch_ns = work["launch_dur_ns"].fill_null(0).to_numpy()
    is_kernel = pc.equal(work["cat"], "kernel").to_numpy(zero_copy_only=False) & launched
    durations = work["dur_ns"].to_numpy()
    shorter = is_kernel & (durations < launch_ns)
    for stage, mask in stage_masks(work).items():
        short = mask & shorter
        sums = figures.launch[stage]
        sums["kernels"] += int(np.count_nonzero(mask & is_kernel))
        sums["shorter_than_launch"] += int(np.count_nonzero(short))
        sums["launch_ns"] += int(launch_ns[short].sum())
        sums["kernel_ns"] += int(durations[short].sum())


def add_copy_sums(figures: TraceFigures, work: pa.Table, kernel_codes: np.ndarray, vocabulary_size: int) -> None:
    """Add the copy figures' sums of one batch's attributed GPU work; ``kernel_codes``: each
    activity's run-wide kernel name code."""
    names = work["name"].combine_chunks()
    dictionary = names.dictionary.to_pylist() if pa.types.is_dictionary(names.type) else pc.unique(names).to_pylist()
    is_copy_name = np.array([bool(COPY_PATTERN.search(name or "")) for name in dictionary], dtype=bool)
    if pa.types.is_dictionary(names.type):
        local = names.indices.fill_null(0).to_numpy(zero_copy_only=False)
    else:
        local = np.searchsorted(np.array(dictionary, dtype=object), np.array(names.to_pylist(), dtype=object))
    is_copy = is_copy_name[local] if local.size else np.zeros(0, dtype=bool)
    is_copy |= pc.is_in(work["cat"], value_set=pa.array(MEMCPY_CATS)).to_numpy(zero_copy_only=False)
    durations = work["dur_ns"].to_numpy()
    for stage, mask in stage_masks(work).items():
        copy_mask = mask & is_copy
        sums = figures.copies[stage]
        sums["gpu_ns"] += int(durations[mask].sum())
        sums["copy_ns"] += int(durations[copy_mask].sum())
        sums["count"] += int(np.count_nonzero(copy_mask))
        named = copy_mask & (kernel_codes >= 0)
        per_name = np.bincount(kernel_codes[named], weights=durations[named], minlength=vocabulary_size)
        figures.copy_names[stage].add(
            np.arange(vocabulary_size),
            np.append(per_name, 0.0),
            np.zeros(vocabulary_size + 1, np.int64),
            vocabulary_size,
        )


def launch_figures(figures: TraceFigures) -> dict[str, dict[str, float | int]]:
    """Per stage: kernels, how many ran shorter than the runtime call that launched them, and the
    host time spent in those launches (ms)."""
    result = {}
    for stage, sums in figures.launch.items():
        kernels = sums["kernels"]
        result[stage] = {
            "kernels": kernels,
            "shorter_than_launch": sums["shorter_than_launch"],
            "share": float(sums["shorter_than_launch"] / kernels) if kernels else None,
            "launch_ms": float(sums["launch_ns"]) / NS_PER_MS,
            "kernel_ms": float(sums["kernel_ns"]) / NS_PER_MS,
        }
    return result


def copy_figures(figures: TraceFigures, kernel_names: list[str]) -> dict[str, dict[str, object]]:
    """Per stage: GPU time of copy/cast kernels and memcpy/memset, its share of all GPU activity
    time of the stage, and the largest such kernels by name."""
    result: dict[str, dict[str, object]] = {}
    for stage, sums in figures.copies.items():
        per_name = figures.copy_names[stage].sized(len(kernel_names))[0][: len(kernel_names)]
        top = np.argsort(per_name)[::-1][:TOP_NAMES]
        total, copy_ns = sums["gpu_ns"], sums["copy_ns"]
        result[stage] = {
            "copy_ms": copy_ns / NS_PER_MS,
            "gpu_ms": total / NS_PER_MS,
            "share": copy_ns / total if total else None,
            "count": sums["count"],
            "top": [{"name": kernel_names[i], "ms": float(per_name[i]) / NS_PER_MS} for i in top if per_name[i] > 0],
        }
    return result
