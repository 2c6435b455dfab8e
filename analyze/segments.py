"""Each lane's time cut at every dsocr range boundary, with the ranges open over each piece.

Placing a point (a launch call, a cpu_op) in the vision, prefill and decode-step ranges of its
lane is then one binary search among the boundaries instead of one per stage: between two
neighbouring boundaries the set of open ranges cannot change, so it is worked out once per
piece (at the piece's first instant, with ``locate``) and looked up for every point inside.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.intervals import NOT_FOUND, locate
from dsocr.analyze.keys import run_starts

from dsocr.vocab import RangeStage

#: Above this many runs of one lane among the points, they are placed all at once.
_RUN_LOOKUP_LIMIT = 256
#: The stages a point is placed in, in the order of ``Segments.open_rows``.
PLACED_STAGES = (RangeStage.vision, RangeStage.prefill, RangeStage.decode_step)


@dataclass(frozen=True)
class Segments:
    """Boundaries of every lane laid end to end on one virtual axis (as ``locate`` lays lanes)."""

    #: Per lane id: its first boundary, the offset of its stretch of the axis, its extent.
    lane_base: np.ndarray
    lane_offset: np.ndarray
    lane_extent: np.ndarray
    #: Per lane id: the position of its first boundary in ``boundaries``.
    lane_first: np.ndarray
    #: Every lane's distinct range starts and ends, on the virtual axis (sorted).
    boundaries: np.ndarray
    #: The same boundaries as trace times (sorted within each lane), and per lane id the
    #: position just past its last one.
    times: np.ndarray
    lane_end: np.ndarray
    #: Per stage of PLACED_STAGES, per boundary: the row (in ``stage_tables``) of the range of
    #: that stage open from that boundary to the next, or NOT_FOUND.
    open_rows: tuple[np.ndarray, ...]
    #: Per stage of PLACED_STAGES: its ranges (rows of the ranges table with that stage).
    stage_tables: tuple[pa.Table, ...]


def build_segments(table: pa.Table, lane_count: int) -> Segments:
    """Segments of clean ranges (columns lane, stage, start_ns, end_ns; lane ids ``0..lane_count-1``)."""
    lane = table["lane"].to_numpy()
    times = np.concatenate([table["start_ns"].to_numpy(), table["end_ns"].to_numpy()])
    lanes = np.concatenate([lane, lane])
    order = np.lexsort((times, lanes))
    lanes, times = lanes[order], times[order]
    distinct = np.ones(lanes.size, dtype=bool)
    distinct[1:] = (lanes[1:] != lanes[:-1]) | (times[1:] != times[:-1])
    lanes, times = lanes[distinct], times[distinct]
    lane_first = np.searchsorted(lanes, np.arange(lane_count))
    lane_end = np.searchsorted(lanes, np.arange(lane_count), side="right")
    # Lanes are made from the ranges themselves, so every lane has at least one boundary.
    lane_base = times[lane_first]
    lane_extent = times[lane_end - 1] - lane_base
    # One empty instant between lanes, as in ``locate``: no point of one lane reaches another.
    lane_offset = np.cumsum(lane_extent + 2) - (lane_extent + 2) + 1
    boundaries = times - lane_base[lanes] + lane_offset[lanes]
    stage_tables = tuple(table.filter(pc.equal(table["stage"], stage)) for stage in PLACED_STAGES)
    open_rows = tuple(
        locate(
            lanes,
            times,
            stage_table["lane"].to_numpy(),
            stage_table["start_ns"].to_numpy(),
            stage_table["end_ns"].to_numpy(),
        )
        for stage_table in stage_tables
    )
    return Segments(
        lane_base, lane_offset, lane_extent, lane_first, boundaries, times, lane_end, open_rows, stage_tables
    )


def open_ranges(segments: Segments, lane: np.ndarray, time_ns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per stage of PLACED_STAGES, per point: the row of the range open on the point's lane at
    ``time_ns`` (``start <= t < end``), NOT_FOUND where none is or the lane is < 0. Exactly what
    ``locate`` gives per stage."""
    lane = np.asarray(lane, dtype=np.int64)
    results = tuple(np.full(lane.size, NOT_FOUND, dtype=np.int64) for _ in PLACED_STAGES)
    if segments.boundaries.size == 0 or lane.size == 0:
        return results
    runs = run_starts(lane)
    if runs.size <= _RUN_LOOKUP_LIMIT:
        _open_by_run(segments, lane, np.asarray(time_ns, dtype=np.int64), runs, results)
        return results
    points = np.flatnonzero(lane >= 0)
    on = lane[points]
    relative = np.clip(
        np.asarray(time_ns, dtype=np.int64)[points] - segments.lane_base[on], -1, segments.lane_extent[on]
    )
    piece = np.searchsorted(segments.boundaries, relative + segments.lane_offset[on], side="right") - 1
    inside = piece >= segments.lane_first[on]
    points, piece = points[inside], piece[inside]
    for result, rows in zip(results, segments.open_rows, strict=True):
        result[points] = rows[piece]
    return results


def _open_by_run(
    segments: Segments, lane: np.ndarray, time_ns: np.ndarray, runs: np.ndarray, results: tuple[np.ndarray, ...]
) -> None:
    """``open_ranges`` for points in a few runs of one lane (a file's cpu_ops are mostly one
    thread's): one search among that lane's own boundaries per run, on trace times."""
    for start, stop in itertools.pairwise(np.append(runs, lane.size).tolist()):
        owner = int(lane[start])
        if owner < 0:
            continue
        first, end = int(segments.lane_first[owner]), int(segments.lane_end[owner])
        # Before the lane's first boundary the search gives -1, which picks the NOT_FOUND
        # appended after the lane's own rows.
        piece = np.searchsorted(segments.times[first:end], time_ns[start:stop], side="right") - 1
        for result, rows in zip(results, segments.open_rows, strict=True):
            result[start:stop] = np.append(rows[first:end], NOT_FOUND)[piece]
