"""Per decode step: wall time, GPU busy time and kernel count (traced steps), or the reference clock."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.intervals import union_by_group
from dsocr.analyze.keys import dense_codes, image_key
from dsocr.analyze.reference import ok_predictions

from dsocr import schema
from dsocr.vocab import NS_PER_MS, RangeStage

SOURCE_TRACE = "trace"
SOURCE_REFERENCE = "reference"
_STEP_BITS = 32

STEPS = pa.schema(
    [
        pa.field("rank", pa.int32()),
        pa.field("image_index", pa.int32()),
        pa.field("step", pa.int32()),
        pa.field("source", pa.string()),
        pa.field("wall_ms", pa.float64()),
        pa.field("gpu_busy_ms", pa.float64()),
        pa.field("kernel_count", pa.int64()),
        pa.field("gpu_span_ms", pa.float64()),
    ]
)


def step_codes(images: np.ndarray, keys: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """One int64 per (image, step), shared by every array keyed against the same ``images``."""
    return (np.searchsorted(images, keys).astype(np.int64) << _STEP_BITS) | steps.astype(np.int64)


def traced_steps(ranges: pa.Table, work: pa.Table | None) -> pa.Table:
    """One row per traced decode-step range (STEPS); GPU columns null when ``work`` is None."""
    steps = ranges.filter(pc.equal(ranges["stage"], RangeStage.decode_step))
    keys, numbers = image_key(steps), steps["step"].fill_null(0).to_numpy()
    wall = (steps["end_ns"].to_numpy() - steps["start_ns"].to_numpy()) / NS_PER_MS
    busy: pa.Array = pa.nulls(steps.num_rows, pa.float64())
    span: pa.Array = pa.nulls(steps.num_rows, pa.float64())
    kernels: pa.Array = pa.nulls(steps.num_rows, pa.int64())
    if work is not None:
        columns = ["rank", "image_index", "step", "ts_ns", "dur_ns", "cat"]
        stepped = work.select(columns).filter(pc.is_valid(work["step"]))  # only the columns used
        # Work rows come in runs of one image and one step: distinct values are found per run.
        work_images, work_image_of = dense_codes(image_key(stepped))
        images = np.unique(np.concatenate([keys, work_images]))
        codes = step_codes(images, keys, numbers)
        image_position = np.searchsorted(images, work_images).astype(np.int64)[work_image_of]
        work_codes = (image_position << _STEP_BITS) | stepped["step"].to_numpy().astype(np.int64)  # = step_codes
        start = stepped["ts_ns"].to_numpy()
        union = union_by_group(work_codes, start, start + stepped["dur_ns"].to_numpy())
        busy_ns = np.zeros(steps.num_rows, dtype=np.int64)
        span_ns = np.zeros(steps.num_rows, dtype=np.int64)
        position = np.minimum(np.searchsorted(union.keys, codes), max(union.keys.size - 1, 0))
        hit = union.keys[position] == codes if union.keys.size else np.zeros(steps.num_rows, dtype=bool)
        busy_ns[hit] = union.busy_ns[position[hit]]
        span_ns[hit] = (union.last_end_ns - union.first_start_ns)[position[hit]]
        busy = pa.array(busy_ns / NS_PER_MS)
        span = pa.array(span_ns / NS_PER_MS)
        is_kernel = pc.equal(stepped["cat"], "kernel").to_numpy(zero_copy_only=False)
        kernel_codes, kernel_of = dense_codes(work_codes[is_kernel])
        counts = np.bincount(kernel_of, minlength=kernel_codes.size)
        found = np.minimum(np.searchsorted(kernel_codes, codes), max(kernel_codes.size - 1, 0))
        counted = np.zeros(steps.num_rows, dtype=np.int64)
        if kernel_codes.size:
            match = kernel_codes[found] == codes
            counted[match] = counts[found[match]]
        kernels = pa.array(counted)
    return pa.table(
        {
            "rank": steps["rank"].cast(pa.int32()),
            "image_index": steps["image_index"].cast(pa.int32()),
            "step": steps["step"].cast(pa.int32()),
            "source": pa.array([SOURCE_TRACE] * steps.num_rows, pa.string()),
            "wall_ms": pa.array(wall, pa.float64()),
            "gpu_busy_ms": busy,
            "kernel_count": kernels,
            "gpu_span_ms": span,
        },
        schema=STEPS,
    )


def steps_file_table(traced: pa.Table) -> pa.Table:
    """The traced steps as ``analysis/steps.parquet`` stores them (schema.STEPS, sorted)."""
    table = traced.select(schema.STEPS.names).cast(schema.STEPS)
    return table.sort_by([("rank", "ascending"), ("image_index", "ascending"), ("step", "ascending")])


def reference_steps(predictions: pa.Table) -> pa.Table:
    """One row per decode step of every processed image, from the reference clock (decode_step_ms)."""
    ok = ok_predictions(predictions)
    lists = ok["decode_step_ms"].combine_chunks()
    parents = pc.list_parent_indices(lists).to_numpy()
    values = pc.list_flatten(lists).fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    # Step K is decode_step_ms[K-1]: number the steps within each image from 1.
    starts = np.searchsorted(parents, parents, side="left")
    numbers = np.arange(parents.size) - starts + 1
    return pa.table(
        {
            "rank": pa.array(ok["rank"].fill_null(0).to_numpy()[parents], pa.int32()),
            "image_index": pa.array(ok["image_index"].to_numpy()[parents], pa.int32()),
            "step": pa.array(numbers, pa.int32()),
            "source": pa.array([SOURCE_REFERENCE] * parents.size, pa.string()),
            "wall_ms": pa.array(values, pa.float64(), mask=np.isnan(values)),
            "gpu_busy_ms": pa.nulls(parents.size, pa.float64()),
            "kernel_count": pa.nulls(parents.size, pa.int64()),
            "gpu_span_ms": pa.nulls(parents.size, pa.float64()),
        },
        schema=STEPS,
    )


def prefer_images(preferred: pa.Table, fallback: pa.Table) -> pa.Table:
    """Every row of ``preferred``, and ``fallback``'s rows of the images ``preferred`` lacks (STEPS tables)."""
    keep = ~np.isin(image_key(fallback), np.unique(image_key(preferred)))
    return pa.concat_tables([preferred, fallback.filter(pa.array(keep)).cast(preferred.schema)])
