"""Per decode step: CPU wall time of the step's range and the GPU work it launched.

The per-image stage totals hide how a step's time splits between GPU work and GPU idle; the
report plots this table step by step. Only traced steps have a row (sampled traces skip some).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.intervals import union_by_group
from dsocr.analyze.keys import image_key, split_image_key

from dsocr import schema
from dsocr.vocab import NS_PER_MS, RangeStage

_STEP_BITS = 24  # decode steps per image stay far below 2**24 (the context is at most ~10**5)


def _keys(dense_images: np.ndarray, image_keys: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """One int64 per (image, step): the image's dense index above the step."""
    return (np.searchsorted(dense_images, image_keys).astype(np.int64) << _STEP_BITS) | steps.astype(np.int64)


def steps_table(ranges: pa.Table, work: pa.Table | None) -> pa.Table:
    """One row per traced decode-step range (STEPS schema); GPU columns null when ``work`` is None
    (no device time in the trace), 0 for a step that launched nothing."""
    steps = ranges.filter(pc.equal(ranges["stage"], RangeStage.decode_step))
    if steps.num_rows == 0:
        return schema.STEPS.empty_table()
    range_images = image_key(steps)
    step_numbers = steps["step"].fill_null(0).to_numpy()
    wall_ms = (steps["end_ns"].to_numpy() - steps["start_ns"].to_numpy()) / NS_PER_MS
    columns: dict[str, object] = {}
    if work is not None:
        stepped = work.filter(pc.is_valid(work["step"]))
        work_images = image_key(stepped)
        dense = np.unique(np.concatenate([range_images, work_images]))
        work_keys = _keys(dense, work_images, stepped["step"].to_numpy())
        start = stepped["ts_ns"].to_numpy()
        union = union_by_group(work_keys, start, start + stepped["dur_ns"].to_numpy())
        is_kernel = pc.equal(stepped["cat"], "kernel").to_numpy(zero_copy_only=False)
        kernel_keys, kernel_counts = np.unique(work_keys[is_kernel], return_counts=True)
        range_keys = _keys(dense, range_images, step_numbers)

        def lookup(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
            if keys.size == 0:
                return np.zeros(range_keys.size, dtype=values.dtype)
            position = np.minimum(np.searchsorted(keys, range_keys), keys.size - 1)
            return np.where(keys[position] == range_keys, values[position], 0)

        columns = {
            "gpu_busy_ms": lookup(union.keys, union.busy_ns) / NS_PER_MS,
            "gpu_span_ms": lookup(union.keys, union.last_end_ns - union.first_start_ns) / NS_PER_MS,
            "kernel_count": lookup(kernel_keys, kernel_counts).astype(np.int64),
        }
    rank, image = split_image_key(range_images)
    table = pa.table(
        {
            "image_index": image,
            "rank": rank,
            "step": step_numbers.astype(np.int32),
            "wall_ms": wall_ms,
            **{name: columns.get(name, pa.nulls(steps.num_rows, schema.STEPS.field(name).type))
               for name in ("gpu_busy_ms", "gpu_span_ms", "kernel_count")},
        },
        schema=schema.STEPS,
    )  # fmt: skip
    return table.sort_by([("rank", "ascending"), ("image_index", "ascending"), ("step", "ascending")])
