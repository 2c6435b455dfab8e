"""Which dsocr range each piece of work belongs to.

GPU work is projected onto the CPU ranges the way Nsight Systems projects NVTX ranges: a
kernel, memcpy or memset belongs to the range that was open, on the launching thread, when
the runtime or driver call with the same ``correlation`` id started.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyze.categories import RANGE_DECODE_STEP, RANGE_PREFILL, RANGE_VISION
from analyze.intervals import NOT_FOUND, locate
from analyze.load import CHUNK_KEYS
from analyze.ranges import LANE_KEYS, Ranges

CORRELATION_KEYS = [*CHUNK_KEYS, "correlation"]
EXTERNAL_KEYS = [*CHUNK_KEYS, "external_id"]


@dataclass(frozen=True)
class GpuWork:
    """GPU activities with their launch placed in ranges, and what could not be placed."""

    #: gpu_ops columns plus launch_ns, in_vision, in_prefill, step (null outside decode steps).
    table: pa.Table
    #: Activities whose correlation id matches no runtime/driver call in the trace.
    without_launch: int
    #: Correlation ids carried by more than one launch call (the first call is used).
    duplicate_launch_ids: int


def _unique_by(table: pa.Table, keys: list[str]) -> tuple[pa.Table, int]:
    """``table`` with one row per key (the earliest by ts_ns), and how many rows were dropped."""
    grouped = table.group_by(keys).aggregate([])
    if grouped.num_rows == table.num_rows:
        return table, 0
    ordered = table.sort_by([(key, "ascending") for key in keys] + [("ts_ns", "ascending")])
    first = np.ones(ordered.num_rows, dtype=bool)
    first[1:] = False
    for key in keys:
        values = ordered[key].to_numpy()
        first[1:] |= values[1:] != values[:-1]
    return ordered.filter(pa.array(first)), int(table.num_rows - grouped.num_rows)


def place(points: pa.Table, time_column: str, ranges: Ranges) -> pa.Table:
    """Add ``in_vision``, ``in_prefill`` and ``step`` to rows that carry rank, image_index,
    pid, tid and a time: the dsocr ranges open on that thread at that time. Row order changes."""
    joined = points.join(ranges.lanes, LANE_KEYS, join_type="left outer")
    lane = joined["lane"].fill_null(NOT_FOUND).to_numpy()
    times = joined[time_column].fill_null(0).to_numpy()
    found = {}
    for stage in (RANGE_VISION, RANGE_PREFILL, RANGE_DECODE_STEP):
        stage_ranges = ranges.table.filter(pc.equal(ranges.table["stage"], stage))
        found[stage] = (
            locate(
                lane,
                times,
                stage_ranges["lane"].to_numpy(),
                stage_ranges["start_ns"].to_numpy(),
                stage_ranges["end_ns"].to_numpy(),
            ),
            stage_ranges,
        )
    step_index, step_ranges = found[RANGE_DECODE_STEP]
    in_step = step_index != NOT_FOUND
    steps = np.zeros(step_index.size, dtype=np.int32)
    if in_step.any():
        steps[in_step] = step_ranges["step"].fill_null(0).to_numpy()[step_index[in_step]]
    return (
        joined.drop_columns(["lane"])
        .append_column("in_vision", pa.array(found[RANGE_VISION][0] != NOT_FOUND))
        .append_column("in_prefill", pa.array(found[RANGE_PREFILL][0] != NOT_FOUND))
        .append_column("step", pa.array(steps, mask=~in_step))
    )


def attribute_gpu_ops(gpu_ops: pa.Table, launches: pa.Table, ranges: Ranges) -> GpuWork:
    """Join each GPU activity to its launch call (same image, chunk and correlation), then place it."""
    launches, duplicates = _unique_by(launches, CORRELATION_KEYS)
    launch_side = launches.select([*CORRELATION_KEYS, "ts_ns", "pid", "tid"]).rename_columns(
        [*CORRELATION_KEYS, "launch_ns", "pid", "tid"]
    )
    joined = gpu_ops.join(launch_side, CORRELATION_KEYS, join_type="left outer")
    without_launch = int(joined["launch_ns"].null_count)
    placed = place(joined, "launch_ns", ranges)
    return GpuWork(table=placed, without_launch=without_launch, duplicate_launch_ids=duplicates)


def operator_names(gpu_ops: pa.Table, cpu_ops: pa.Table) -> pa.Table:
    """``gpu_ops`` with ``operator``: the name of the cpu_op whose External id the activity carries."""
    operators, _ = _unique_by(cpu_ops.select([*EXTERNAL_KEYS, "ts_ns", "name"]), EXTERNAL_KEYS)
    operators = operators.select([*EXTERNAL_KEYS, "name"]).rename_columns([*EXTERNAL_KEYS, "operator"])
    return gpu_ops.join(operators, EXTERNAL_KEYS, join_type="left outer")
