"""Which dsocr range each piece of work belongs to.

GPU work is projected onto the CPU ranges the way Nsight Systems projects NVTX ranges: a
kernel, memcpy or memset belongs to the range that was open, on the launching thread, when
the runtime or driver call with the same ``correlation`` id (same image and flush chunk)
started. Every join here is a sorted-key match on numpy arrays that keeps the row order.

CUDA graphs (a compiled decode with ``--cache static``) launch many kernels with one host call:
CUPTI gives every kernel a graph launch ran the correlation id of its ``cudaGraphLaunch``, so
the same join gives each of them that call, and the call's start places them all in the step
whose range was open when the graph was launched (many kernels, one launch). Such activities
*share* their launch: the call's host duration is not theirs (``launch_dur_ns`` is null for
them, so no kernel of a graph counts as shorter than its launch) and ``shared_launch`` is set.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.intervals import NOT_FOUND
from dsocr.analyze.keys import chunk_key, image_key, int_values, match_ids, run_starts
from dsocr.analyze.ranges import Ranges
from dsocr.analyze.segments import PLACED_STAGES, open_ranges

from dsocr.vocab import RangeStage

_LOW_32 = (1 << 32) - 1


@dataclass(frozen=True)
class GpuWork:
    """GPU activities with their launch placed in ranges, and what could not be placed."""

    #: gpu_ops columns plus launch_ns and launch_dur_ns (null without launch or for a shared
    #: launch), pid and tid of the launch, shared_launch (one call launched several activities:
    #: a CUDA graph), lane, in_vision, in_prefill and step (null outside decode steps).
    table: pa.Table
    #: Activities whose correlation id matches no runtime/driver call in the same chunk.
    without_launch: int
    #: Launch calls passed over because an earlier call had the same correlation id.
    duplicate_launch_ids: int
    #: Activities whose recorded start precedes their own launch call: impossible, so their
    #: timestamps are corrupt (CUPTI, pytorch/pytorch#192021). Counted, and left out of ``table``
    #: so that no busy time, span or count rests on them.
    start_before_launch: int = 0
    #: Activities that share their launch call with others (kernels of a CUDA graph launch).
    shared_launch: int = 0


#: Above this many runs of one image among the points, lanes are looked up row by row at once.
_RUN_LOOKUP_LIMIT = 256


def _thread_key(table: pa.Table) -> np.ndarray:
    """pid and tid in one int64 (Linux process and thread ids fit in 32 bits each)."""
    pid = int_values(table["pid"], -1).astype(np.int64, copy=False)
    tid = int_values(table["tid"], -1).astype(np.int64, copy=False)
    return ((pid & _LOW_32) << 32) | (tid & _LOW_32)


def lane_ids(points: pa.Table, ranges: Ranges) -> np.ndarray:
    """The lane (image and thread that own dsocr ranges) of each row; -1 for other threads."""
    lanes = ranges.lanes
    result = np.full(points.num_rows, NOT_FOUND, dtype=np.int64)
    if lanes.num_rows == 0 or points.num_rows == 0:
        return result
    image = image_key(points)
    runs = run_starts(image)
    if runs.size > _RUN_LOOKUP_LIMIT:
        return _lane_ids_by_row(image, points, lanes, result)
    # Points come a file (one image) at a time and an image owns a lane or two: compare each
    # run's threads with its image's lanes instead of looking every row up.
    lane_image, lane_thread, lane_value = image_key(lanes), _thread_key(lanes), lanes["lane"].to_numpy()
    thread = _thread_key(points)
    ends = np.append(runs, image.size).tolist()
    for start, stop in itertools.pairwise(ends):
        rows = result[start:stop]
        for lane in np.flatnonzero(lane_image == image[start]).tolist():
            rows[thread[start:stop] == lane_thread[lane]] = lane_value[lane]
    return result


def _lane_ids_by_row(image: np.ndarray, points: pa.Table, lanes: pa.Table, result: np.ndarray) -> np.ndarray:
    """``lane_ids`` for points of many interleaved images: one vectorized lookup per row."""
    images, threads = np.unique(image_key(lanes)), np.unique(_thread_key(lanes))

    def code(image: np.ndarray, thread: np.ndarray) -> np.ndarray:
        i = np.minimum(np.searchsorted(images, image), images.size - 1)
        t = np.minimum(np.searchsorted(threads, thread), threads.size - 1)
        known = (images[i] == image) & (threads[t] == thread)
        return np.where(known, i * threads.size + t, NOT_FOUND)

    lane_codes = code(image_key(lanes), _thread_key(lanes))
    order = np.argsort(lane_codes)
    sorted_codes, lane_values = lane_codes[order], lanes["lane"].to_numpy()[order]
    point_codes = code(image, _thread_key(points))
    position = np.minimum(np.searchsorted(sorted_codes, point_codes), sorted_codes.size - 1)
    hit = (sorted_codes[position] == point_codes) & (point_codes >= 0)
    result[hit] = lane_values[position[hit]]
    return result


def place(points: pa.Table, time_ns: np.ndarray, lane: np.ndarray, ranges: Ranges) -> pa.Table:
    """Append ``lane``, ``in_vision``, ``in_prefill`` and ``step``: the dsocr ranges open on the
    row's thread (``lane``) at ``time_ns``. Row order is kept."""
    vision, prefill, step_index = open_ranges(ranges.segments, lane, time_ns)
    in_step = step_index != NOT_FOUND
    steps = np.zeros(step_index.size, dtype=np.int32)
    if in_step.any():
        step_ranges = ranges.segments.stage_tables[PLACED_STAGES.index(RangeStage.decode_step)]
        steps[in_step] = step_ranges["step"].fill_null(0).to_numpy()[step_index[in_step]]
    return (
        points.append_column("lane", pa.array(lane))
        .append_column("in_vision", pa.array(vision != NOT_FOUND))
        .append_column("in_prefill", pa.array(prefill != NOT_FOUND))
        .append_column("step", pa.array(steps, mask=~in_step))
    )


def attribute_gpu_ops(gpu_ops: pa.Table, launches: pa.Table, ranges: Ranges) -> GpuWork:
    """Match each GPU activity to its launch call (same image, chunk and correlation), then place it."""
    row, duplicates = match_ids(
        chunk_key(gpu_ops),
        int_values(gpu_ops["correlation"], -1),
        chunk_key(launches),
        launches["correlation"].to_numpy(),
        launches["ts_ns"],
    )
    matched = row >= 0
    # Launch calls that started several activities: a CUDA graph launch (or a launch that copies
    # and computes); each activity keeps the call's start, none of them its duration.
    launched_by = np.bincount(row[matched], minlength=launches.num_rows) if matched.any() else np.zeros(0, np.int64)
    shared = matched & (launched_by[np.where(matched, row, 0)] > 1) if matched.any() else np.zeros(row.size, bool)
    take = pa.array(np.where(matched, row, 0))
    missing = pa.array(~matched)

    def launch_column(name: str) -> pa.Array:
        kind = launches.schema.field(name).type
        values = launches[name].take(take) if launches.num_rows else pa.nulls(len(row), kind)
        return pc.if_else(missing, pa.scalar(None, kind), values)

    launch_ns = launch_column("ts_ns")
    with_launch = (
        gpu_ops.append_column("launch_ns", launch_ns)
        # How long the launching call took on the host (findings: kernels shorter than their launch).
        .append_column(
            "launch_dur_ns", pc.if_else(pa.array(shared), pa.scalar(None, pa.int64()), launch_column("dur_ns"))
        )
        .append_column("pid", launch_column("pid"))
        .append_column("tid", launch_column("tid"))
        .append_column("shared_launch", pa.array(shared))
    )
    early = matched & (gpu_ops["ts_ns"].to_numpy() < launch_ns.fill_null(0).to_numpy())
    if early.any():
        with_launch = with_launch.filter(pa.array(~early))
        launch_ns = with_launch["launch_ns"]
    lane = lane_ids(with_launch, ranges)
    placed = place(with_launch, launch_ns.fill_null(0).to_numpy(), lane, ranges)
    return GpuWork(
        table=placed,
        without_launch=int(np.count_nonzero(~matched)),
        duplicate_launch_ids=duplicates,
        start_before_launch=int(np.count_nonzero(early)),
        shared_launch=int(np.count_nonzero(shared & ~early)),
    )


def operator_rows(gpu_ops: pa.Table, cpu_ops: pa.Table) -> np.ndarray:
    """For each GPU activity, the cpu_ops row whose External id it carries (same chunk); -1 if none."""
    row, _ = match_ids(
        chunk_key(gpu_ops),
        int_values(gpu_ops["external_id"], -1),
        chunk_key(cpu_ops),
        int_values(cpu_ops["external_id"], -1),
        cpu_ops["ts_ns"],
    )
    return row
