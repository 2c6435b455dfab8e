"""The capture's independent clock (PREDICTIONS) per image and stage, and the check against it.

``clock_ms`` is the whole stage on the clock (analyze.clock), in every profile mode. The check
compares like with like: on ``cuda_event`` runs the stage's ranges projected onto the GPU stream
(``gpu_range_ms_traced``, what a pair of CUDA events measures), on ``perf_counter`` runs their CPU
time, against the clock over the same traced steps (``reference_traced_ms``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.clock import stage_clock_ms
from dsocr.analyze.keys import image_key, pack_image_key

from dsocr import schema
from dsocr.vocab import STAGES, ImageStatus, RangeStage, Stage, TimingClock

MEASURE_GPU_RANGE = "gpu_range_ms"
MEASURE_CPU = "cpu_ms"


def ok_predictions(predictions: pa.Table) -> pa.Table:
    """The prediction rows of images that were processed."""
    return predictions.filter(pc.equal(predictions["status"], ImageStatus.ok))


def traced_step_reference(predictions: pa.Table, ranges: pa.Table) -> dict[int, float]:
    """Per image key: the sum of decode_step_ms over the steps that are in the trace."""
    steps = ranges.filter(pc.equal(ranges["stage"], RangeStage.decode_step))
    if steps.num_rows == 0 or predictions.num_rows == 0:
        return {}
    lists = predictions["decode_step_ms"].combine_chunks()
    offsets = lists.offsets.to_numpy()
    flat = lists.values.fill_null(np.nan).to_numpy(zero_copy_only=False)
    prediction_keys = image_key(predictions)
    order = np.argsort(prediction_keys)
    step_keys = image_key(steps)
    slot = np.clip(np.searchsorted(prediction_keys[order], step_keys), 0, order.size - 1)
    row = order[slot]
    step_numbers = steps["step"].fill_null(0).to_numpy().astype(np.int64)
    position = offsets[row] + step_numbers - 1
    known = (prediction_keys[row] == step_keys) & (step_numbers >= 1) & (position < offsets[row + 1])
    unique, inverse = np.unique(step_keys[known], return_inverse=True)
    sums = np.zeros(unique.size)
    np.add.at(sums, inverse, flat[position[known]])
    return dict(zip(unique.tolist(), sums.tolist(), strict=True))


def _traced_reference(row: dict[str, Any], stage: str, traced_decode: float | None, has_trace: bool) -> float | None:
    """The reference clock over what the trace holds of ``stage`` (decode: its traced steps only)."""
    if stage == Stage.decode:
        return traced_decode if has_trace else None
    return stage_clock_ms(row, stage) if has_trace else None


def _relative(measured: float | None, reference: float | None) -> float | None:
    if measured is None or reference is None or reference == 0:
        return None
    return (measured - reference) / reference


def timings_table(predictions: pa.Table, measured: pa.Table, ranges: pa.Table, *, has_trace: bool) -> pa.Table:
    """TIMINGS: one row per processed image and stage: the whole stage on the reference clock
    (``clock_ms``), the trace's figures (``*_traced``) and their check against the clock."""
    ok = ok_predictions(predictions)
    traced = traced_step_reference(ok, ranges)
    by_image = {(row["rank"], row["image_index"], row["stage"]): row for row in measured.to_pylist()}
    rows = []
    for prediction in ok.to_pylist():
        rank = prediction["rank"] or 0
        key = pack_image_key(rank, prediction["image_index"])
        generated = prediction["generated_tokens"]
        for stage in STAGES:
            found = by_image.get((rank, prediction["image_index"], stage), {})
            measure = None
            if found:
                gpu = prediction["timing_clock"] == TimingClock.cuda_event and found.get("gpu_range_ms") is not None
                measure = MEASURE_GPU_RANGE if gpu else MEASURE_CPU
            reference = _traced_reference(prediction, stage, traced.get(key), has_trace and bool(found))
            rows.append(
                {
                    "image_index": prediction["image_index"],
                    "rank": rank,
                    "stage": stage,
                    "clock_ms": stage_clock_ms(prediction, stage),
                    "cpu_ms_traced": found.get("cpu_ms"),
                    "gpu_busy_ms_traced": found.get("gpu_busy_ms"),
                    "gpu_span_ms_traced": found.get("gpu_span_ms"),
                    "kernel_count_traced": found.get("kernel_count"),
                    "reference_traced_ms": reference,
                    "reference_rel_diff": _relative(found.get(measure) if measure else None, reference),
                    "steps_traced": found.get("steps_traced") if stage == Stage.decode else None,
                    "steps_total": max(generated - 1, 0) if stage == Stage.decode and generated else None,
                    "check_measure": f"{measure}_traced" if measure and reference is not None else None,
                    "gpu_range_ms_traced": found.get("gpu_range_ms"),
                    "memcpy_count_traced": found.get("memcpy_count"),
                    "memset_count_traced": found.get("memset_count"),
                }
            )
    return pa.Table.from_pylist(rows, schema=schema.TIMINGS)
