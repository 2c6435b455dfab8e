"""Per image: TTFT, per-token decode latency (mean, p50, p90, p99, max), tokens/s, token counts.

The headline figures of an image cover the whole image: they come from the capture's reference
clock (every decode step), or from the trace only when the image has no reference timings; its
clock stages (analyze.clock: vision, prefill_text, decode, other, image) come with them.
Figures from the trace alone cover the traced steps only and carry that coverage
(``tpot_traced_p50_ms`` over ``steps_traced`` of ``steps_total``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.clock import clock_figures
from dsocr.analyze.cold import image_cold
from dsocr.analyze.keys import image_key
from dsocr.analyze.reference import ok_predictions
from dsocr.analyze.stats import MEDIAN, P90, P99, grouped_quantiles

from dsocr.vocab import MS_PER_S, NS_PER_MS, RangeStage

SOURCE_TRACE = "trace"
SOURCE_REFERENCE = "reference"

LATENCY = pa.schema(
    [
        pa.field("image_index", pa.int32()),
        pa.field("rank", pa.int32()),
        pa.field("source", pa.string()),
        pa.field("ttft_ms", pa.float64()),
        # The clock stages of the image (analyze.clock): vision + prefill_text + decode + other = image.
        pa.field("vision_ms", pa.float64()),
        pa.field("prefill_text_ms", pa.float64()),
        pa.field("decode_ms", pa.float64()),
        pa.field("other_ms", pa.float64()),
        pa.field("image_ms", pa.float64()),
        pa.field("tpot_mean_ms", pa.float64()),
        pa.field("tpot_p50_ms", pa.float64()),
        pa.field("tpot_p90_ms", pa.float64()),
        pa.field("tpot_p99_ms", pa.float64()),
        pa.field("tpot_max_ms", pa.float64()),
        pa.field("decode_tokens_per_s", pa.float64()),
        pa.field("steps", pa.int32()),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("generated_tokens", pa.int32()),
        pa.field("stop_reason", pa.string()),
        pa.field("steps_total", pa.int32()),
        pa.field("steps_traced", pa.int32()),
        pa.field("tpot_traced_p50_ms", pa.float64()),
        pa.field("cold_steps", pa.int32()),
        pa.field("warm_steps", pa.int32()),
        pa.field("tpot_warm_p50_ms", pa.float64()),
        pa.field("tpot_cold_p50_ms", pa.float64()),
    ]
)


def _step_stats(keys: np.ndarray, step_ms: np.ndarray) -> dict[int, dict[str, float | int]]:
    unique, quantiles = grouped_quantiles(keys, step_ms, (MEDIAN, P90, P99))
    if unique.size == 0:
        return {}
    inverse = np.searchsorted(unique, keys)
    sums = np.bincount(inverse, weights=step_ms, minlength=unique.size)
    counts = np.bincount(inverse, minlength=unique.size)
    maxima = np.full(unique.size, -np.inf)
    np.maximum.at(maxima, inverse, step_ms)
    return {
        int(key): {
            "tpot_mean_ms": float(total / count),
            "tpot_p50_ms": float(q[0]),
            "tpot_p90_ms": float(q[1]),
            "tpot_p99_ms": float(q[2]),
            "tpot_max_ms": float(peak),
            "decode_tokens_per_s": float(count / total * MS_PER_S) if total > 0 else None,
            "steps": int(count),
        }
        for key, q, total, count, peak in zip(unique, quantiles, sums, counts, maxima, strict=True)
    }


def _from_trace(ranges: pa.Table) -> tuple[dict[int, float], dict[int, dict]]:
    prefill = ranges.filter(pc.equal(ranges["stage"], RangeStage.prefill))
    ttft = dict(
        zip(
            image_key(prefill).tolist(),
            (pc.subtract(prefill["end_ns"], prefill["start_ns"]).to_numpy() / NS_PER_MS).tolist(),
            strict=True,
        )
    )
    steps = ranges.filter(pc.equal(ranges["stage"], RangeStage.decode_step))
    step_ms = pc.subtract(steps["end_ns"], steps["start_ns"]).to_numpy() / NS_PER_MS
    return ttft, _step_stats(image_key(steps), step_ms)


def _from_reference(ok: pa.Table) -> dict[int, dict]:
    lists = ok["decode_step_ms"].combine_chunks()
    parents = pc.list_parent_indices(lists).to_numpy()
    values = pc.list_flatten(lists).fill_null(np.nan).to_numpy(zero_copy_only=False)
    keys = image_key(ok)[parents] if parents.size else np.zeros(0, dtype=np.int64)
    present = ~np.isnan(values)
    return _step_stats(keys[present], values[present])


def latency_table(predictions: pa.Table, ranges: pa.Table) -> pa.Table:
    """One row per processed image (LATENCY): whole-image figures from the reference clock where
    the image has them, else from the trace's ranges (``source`` says which)."""
    ok = ok_predictions(predictions)
    ttft, traced = _from_trace(ranges)
    reference = _from_reference(ok)
    rows = []
    for key, row in zip(image_key(ok).tolist(), ok.to_pylist(), strict=True):
        measured = reference.get(key)
        from_trace = traced.get(key, {})
        stats = measured if measured is not None else from_trace
        cold = image_cold(row)
        clock = clock_figures(row)
        steps_total = len(row["decode_step_ms"]) if row["decode_step_ms"] is not None else None
        rows.append(
            {
                "image_index": row["image_index"],
                "rank": row["rank"] or 0,
                "source": SOURCE_REFERENCE if measured is not None or key not in ttft else SOURCE_TRACE,
                **clock,
                "ttft_ms": row["prefill_ms"] if row["prefill_ms"] is not None else ttft.get(key),
                **stats,
                "prompt_tokens": row["prompt_tokens"],
                "generated_tokens": row["generated_tokens"],
                "stop_reason": row["stop_reason"],
                "steps_total": steps_total,
                "steps_traced": from_trace.get("steps", 0) if key in ttft else 0,
                "tpot_traced_p50_ms": from_trace.get("tpot_p50_ms"),
                "cold_steps": cold.cold_steps,
                "warm_steps": cold.warm_steps,
                "tpot_warm_p50_ms": cold.tpot_warm_p50_ms,
                "tpot_cold_p50_ms": cold.tpot_cold_p50_ms,
            }
        )
    return pa.Table.from_pylist(rows, schema=LATENCY)
