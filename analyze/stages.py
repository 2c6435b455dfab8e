"""Per image and stage: CPU wall time of the ranges, GPU busy time, GPU span and kernel count."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyze.categories import (
    NS_PER_MS,
    RANGE_DECODE_STEP,
    RANGE_PREFILL,
    RANGE_VISION,
    STAGE_DECODE,
    STAGE_PREFILL,
    STAGE_PREFILL_TEXT,
    STAGE_VISION,
    STAGES,
)
from analyze.intervals import union_by_group
from analyze.keys import image_key, split_image_key, step_key

MEASURED = pa.schema(
    [
        pa.field("rank", pa.int32()),
        pa.field("image_index", pa.int32()),
        pa.field("stage", pa.string()),
        pa.field("cpu_ms", pa.float64()),
        pa.field("gpu_busy_ms", pa.float64()),
        pa.field("gpu_span_ms", pa.float64()),
        pa.field("kernel_count", pa.int64()),
        pa.field("steps_traced", pa.int32()),
    ]
)


def stage_masks(work: pa.Table) -> dict[str, np.ndarray]:
    """Which rows of placed work (in_vision, in_prefill, step) belong to each stage."""
    vision = work["in_vision"].to_numpy(zero_copy_only=False)
    prefill = work["in_prefill"].to_numpy(zero_copy_only=False)
    decode = work["step"].is_valid().to_numpy(zero_copy_only=False)
    return {
        STAGE_VISION: vision,
        STAGE_PREFILL: prefill,
        STAGE_PREFILL_TEXT: prefill & ~vision,
        STAGE_DECODE: decode,
    }


def _cpu_by_image(ranges: pa.Table) -> dict[str, dict[int, tuple[float, int | None]]]:
    """Per stage, image key -> (CPU ms, steps traced or None)."""
    durations = pc.subtract(ranges["end_ns"], ranges["start_ns"])
    keys = image_key(ranges)
    stage = ranges["stage"].to_numpy(zero_copy_only=False)
    result: dict[str, dict[int, tuple[float, int | None]]] = {}
    for range_stage, stage_name in ((RANGE_VISION, STAGE_VISION), (RANGE_PREFILL, STAGE_PREFILL)):
        mask = stage == range_stage
        result[stage_name] = {
            int(k): (float(d) / NS_PER_MS, None)
            for k, d in zip(keys[mask], durations.to_numpy()[mask], strict=True)
        }
    mask = stage == RANGE_DECODE_STEP
    unique, inverse, counts = np.unique(keys[mask], return_inverse=True, return_counts=True)
    sums = np.zeros(unique.size, dtype=np.int64)
    np.add.at(sums, inverse, durations.to_numpy()[mask])
    result[STAGE_DECODE] = {int(k): (float(s) / NS_PER_MS, int(c)) for k, s, c in zip(unique, sums, counts, strict=True)}
    text = {}
    for key, (prefill_ms, _) in result[STAGE_PREFILL].items():
        if key in result[STAGE_VISION]:
            text[key] = (prefill_ms - result[STAGE_VISION][key][0], None)
    result[STAGE_PREFILL_TEXT] = text
    return result


def _gpu_by_image(work: pa.Table) -> dict[str, dict[int, tuple[float, float, int]]]:
    """Per stage, image key -> (busy ms, span ms, kernel count)."""
    if work.num_rows == 0:
        return {stage: {} for stage in STAGES}
    keys = image_key(work)
    start = work["ts_ns"].to_numpy()
    end = start + work["dur_ns"].to_numpy()
    is_kernel = pc.equal(work["cat"], "kernel").to_numpy(zero_copy_only=False)
    steps = work["step"].fill_null(0).to_numpy()
    result = {}
    for stage, mask in stage_masks(work).items():
        union = union_by_group(keys[mask], start[mask], end[mask])
        span = union.last_end_ns - union.first_start_ns
        if stage == STAGE_DECODE:
            # Sampled traces skip steps: the span is the sum of each traced step's own span.
            per_step = union_by_group(step_key(keys[mask], steps[mask]), start[mask], end[mask])
            owner = np.unique(keys[mask])[per_step.keys >> 32]
            span = np.zeros(union.keys.size, dtype=np.int64)
            np.add.at(span, np.searchsorted(union.keys, owner), per_step.last_end_ns - per_step.first_start_ns)
        kernel_keys, kernel_counts = np.unique(keys[mask & is_kernel], return_counts=True)
        kernels = dict(zip(kernel_keys.tolist(), kernel_counts.tolist(), strict=True))
        result[stage] = {
            int(k): (float(b) / NS_PER_MS, float(s) / NS_PER_MS, int(kernels.get(int(k), 0)))
            for k, b, s in zip(union.keys, union.busy_ns, span, strict=True)
        }
    return result


def measure_stages(ranges: pa.Table, work: pa.Table, *, has_device_time: bool) -> pa.Table:
    """One row per image with ranges and per stage (MEASURED schema).

    GPU columns are null when the trace has no device activity at all, and 0 for a stage
    whose ranges launched nothing on a trace that has some.
    """
    cpu = _cpu_by_image(ranges)
    gpu = _gpu_by_image(work)
    images = sorted({key for stage in cpu.values() for key in stage})
    rows: dict[str, list] = {name: [] for name in MEASURED.names}
    for key in images:
        rank, image = split_image_key(np.array([key]))
        for stage in STAGES:
            cpu_ms, steps = cpu[stage].get(key, (None, None))
            if cpu_ms is None:
                continue
            busy, span, count = gpu[stage].get(key, (0.0, 0.0, 0)) if has_device_time else (None, None, None)
            for name, value in zip(
                MEASURED.names,
                (int(rank[0]), int(image[0]), stage, cpu_ms, busy, span, count, steps),
                strict=True,
            ):
                rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=MEASURED)
