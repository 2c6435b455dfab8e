"""Per image and stage: CPU wall time of the ranges, GPU busy time, GPU span and kernel count."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.categories import GPU_OP_CATS
from dsocr.analyze.intervals import running_max_before, union_by_group
from dsocr.analyze.keys import dense_codes, image_key, name_codes, split_image_key, step_key, step_key_image

from dsocr.vocab import NS_PER_MS, STAGES, RangeStage, Stage

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
        pa.field("gpu_range_ms", pa.float64()),
        pa.field("memcpy_count", pa.int64()),
        pa.field("memset_count", pa.int64()),
    ]
)


def stage_masks(work: pa.Table) -> dict[str, np.ndarray]:
    """Which rows of placed work (in_vision, in_prefill, step) belong to each stage."""
    vision = work["in_vision"].to_numpy(zero_copy_only=False)
    prefill = work["in_prefill"].to_numpy(zero_copy_only=False)
    decode = work["step"].is_valid().to_numpy(zero_copy_only=False)
    return {
        Stage.vision: vision,
        Stage.prefill: prefill,
        Stage.prefill_text: prefill & ~vision,
        Stage.decode: decode,
    }


def _cpu_by_image(ranges: pa.Table) -> dict[str, dict[int, tuple[float, int | None]]]:
    """Per stage, image key -> (CPU ms, steps traced or None)."""
    durations = pc.subtract(ranges["end_ns"], ranges["start_ns"])
    keys = image_key(ranges)
    stage = ranges["stage"].to_numpy(zero_copy_only=False)
    result: dict[str, dict[int, tuple[float, int | None]]] = {}
    for range_stage, stage_name in ((RangeStage.vision, Stage.vision), (RangeStage.prefill, Stage.prefill)):
        mask = stage == range_stage
        result[stage_name] = {
            int(k): (float(d) / NS_PER_MS, None) for k, d in zip(keys[mask], durations.to_numpy()[mask], strict=True)
        }
    mask = stage == RangeStage.decode_step
    unique, inverse, counts = np.unique(keys[mask], return_inverse=True, return_counts=True)
    sums = np.zeros(unique.size, dtype=np.int64)
    np.add.at(sums, inverse, durations.to_numpy()[mask])
    result[Stage.decode] = {
        int(k): (float(s) / NS_PER_MS, int(c)) for k, s, c in zip(unique, sums, counts, strict=True)
    }
    text = {}
    for key, (prefill_ms, _) in result[Stage.prefill].items():
        if key in result[Stage.vision]:
            text[key] = (prefill_ms - result[Stage.vision][key][0], None)
    result[Stage.prefill_text] = text
    return result


#: The activity kinds whose union is GPU busy time, each counted on its own.
COUNTED_CATS = GPU_OP_CATS  # kernel, gpu_memcpy, gpu_memset: the count tuple follows this order


def _gpu_by_image(work: pa.Table) -> dict[str, dict[int, tuple[float, float, tuple[int, int, int]]]]:
    """Per stage, image key -> (busy ms, span ms, (kernels, memcpys, memsets)): busy time is the
    union of all three kinds, so all three are counted."""
    if work.num_rows == 0:
        return {stage: {} for stage in STAGES}
    keys = image_key(work)
    start = work["ts_ns"].to_numpy()
    end = start + work["dur_ns"].to_numpy()
    cat_codes, cat_names = name_codes(work["cat"])
    is_cat = {
        cat: cat_codes == cat_names.index(cat) if cat in cat_names else np.zeros(work.num_rows, dtype=bool)
        for cat in COUNTED_CATS
    }
    images, image_codes = dense_codes(keys)
    steps = work["step"].fill_null(0).to_numpy()
    result = {}
    for stage, mask in stage_masks(work).items():
        union = union_by_group(keys[mask], start[mask], end[mask])
        span = union.last_end_ns - union.first_start_ns
        if stage == Stage.decode:
            # Sampled traces skip steps: the span is the sum of each traced step's own span.
            per_step = union_by_group(step_key(keys[mask], steps[mask]), start[mask], end[mask])
            owner = dense_codes(keys[mask])[0][step_key_image(per_step.keys)]
            span = np.zeros(union.keys.size, dtype=np.int64)
            np.add.at(span, np.searchsorted(union.keys, owner), per_step.last_end_ns - per_step.first_start_ns)
        counts = []
        for cat in COUNTED_CATS:
            per_image = np.bincount(image_codes[mask & is_cat[cat]], minlength=images.size)
            present = np.flatnonzero(per_image)
            counts.append(dict(zip(images[present].tolist(), per_image[present].tolist(), strict=True)))
        result[stage] = {
            int(k): (
                float(b) / NS_PER_MS,
                float(s) / NS_PER_MS,
                tuple(int(per_cat.get(int(k), 0)) for per_cat in counts),
            )
            for k, b, s in zip(union.keys, union.busy_ns, span, strict=True)
        }
    # Kernels launched before vision and after it make prefill_text's own first-to-last span
    # cover vision too; like its CPU time, its span is prefill's minus vision's.
    for key, (busy, _, count) in result[Stage.prefill_text].items():
        prefill_span = result[Stage.prefill].get(key, (0.0, 0.0, (0, 0, 0)))[1]
        vision_span = result[Stage.vision].get(key, (0.0, 0.0, (0, 0, 0)))[1]
        result[Stage.prefill_text][key] = (busy, prefill_span - vision_span, count)
    return result


def _stream_ms(ranges: pa.Table, work: pa.Table) -> dict[str, dict[int, float]]:
    """Per stage, image key -> the ranges projected onto the GPU stream, in ms.

    A range occupies the stream from ``max(CPU start, GPU free)`` to ``max(CPU end, GPU free)``,
    where "GPU free at t" is the latest end of the work launched before t: exactly what a pair of
    CUDA events recorded at the range's ends measures (one stream; idle time included).
    """
    # Arrays of the launched activities only, without copying the whole work table.
    launched = work["launch_ns"].is_valid().to_numpy(zero_copy_only=False)
    op_keys = image_key(work)[launched]
    launch = work["launch_ns"].fill_null(0).to_numpy()[launched]
    ends = (work["ts_ns"].to_numpy() + work["dur_ns"].to_numpy())[launched]
    keys = image_key(ranges)
    starts, stops = ranges["start_ns"].to_numpy(), ranges["end_ns"].to_numpy()
    # Both ends of every range in one query: the activities are sorted once.
    free = running_max_before(op_keys, launch, ends, np.concatenate([keys, keys]), np.concatenate([starts, stops]))
    begin = np.maximum(starts, free[: keys.size])
    finish = np.maximum(stops, free[keys.size :])
    lengths = finish - begin
    stage = ranges["stage"].to_numpy(zero_copy_only=False)
    result: dict[str, dict[int, float]] = {}
    for range_stage, name in (
        (RangeStage.vision, Stage.vision),
        (RangeStage.prefill, Stage.prefill),
        (RangeStage.decode_step, Stage.decode),
    ):
        mask = stage == range_stage
        unique, inverse = np.unique(keys[mask], return_inverse=True)
        totals = np.zeros(unique.size, dtype=np.int64)
        np.add.at(totals, inverse, lengths[mask])
        result[name] = {int(k): float(v) / NS_PER_MS for k, v in zip(unique, totals, strict=True)}
    result[Stage.prefill_text] = {
        key: value - result[Stage.vision][key]
        for key, value in result[Stage.prefill].items()
        if key in result[Stage.vision]
    }
    return result


def measure_stages(ranges: pa.Table, work: pa.Table, *, has_device_time: bool) -> pa.Table:
    """One row per image with ranges and per stage (MEASURED schema).

    GPU columns are null when the trace has no device activity at all, and 0 for a stage
    whose ranges launched nothing on a trace that has some.
    """
    cpu = _cpu_by_image(ranges)
    gpu = _gpu_by_image(work)
    stream = _stream_ms(ranges, work) if has_device_time else {}
    images = sorted({key for stage in cpu.values() for key in stage})
    rows = []
    for key in images:
        rank, image = (int(part[0]) for part in split_image_key(np.array([key])))
        for stage in STAGES:
            cpu_ms, steps = cpu[stage].get(key, (None, None))
            if cpu_ms is None:
                continue
            busy, span, counts = (
                gpu[stage].get(key, (0.0, 0.0, (0, 0, 0))) if has_device_time else (None, None, (None, None, None))
            )
            rows.append(
                {
                    "rank": rank,
                    "image_index": image,
                    "stage": stage,
                    "cpu_ms": cpu_ms,
                    "gpu_busy_ms": busy,
                    "gpu_span_ms": span,
                    "kernel_count": counts[0],
                    "memcpy_count": counts[1],
                    "memset_count": counts[2],
                    "steps_traced": steps,
                    "gpu_range_ms": stream[stage].get(key) if has_device_time else None,
                }
            )
    return pa.Table.from_pylist(rows, schema=MEASURED)
