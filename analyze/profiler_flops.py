"""The profiler's own FLOP counts (``with_flops``) per stage, against the model-config count."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.stages import stage_masks


def add_stage_flops(totals: dict[str, list[float]], ops: pa.Table) -> None:
    """Add the flops of placed cpu_ops (columns flops, in_vision, in_prefill, step) per stage:
    ``totals[stage] = [flops, operators that carry a count]``."""
    if "flops" not in ops.column_names:
        return
    flops = ops["flops"]
    carried = flops.is_valid().to_numpy(zero_copy_only=False)
    if not carried.any():
        return
    values = flops.fill_null(0).to_numpy().astype(np.float64)
    for stage, mask in stage_masks(ops).items():
        entry = totals.setdefault(stage, [0.0, 0])
        entry[0] += float(values[mask].sum())
        entry[1] += int(np.count_nonzero(mask & carried))


def profiler_check(totals: dict[str, list[float]], roofline: pa.Table) -> dict[str, Any] | None:
    """Per stage: the profiler's FLOPs (matrix products from recorded shapes), the model's outside
    attention (SDPA carries no shapes-based estimate), and ``rel_diff = (profiler - model) / model``.

    None when the trace carries no FLOP counts (captured without with_flops)."""
    if not totals:
        return None
    result: dict[str, Any] = {}
    for stage, (profiler, operators) in totals.items():
        rows = roofline.filter(pc.and_(pc.equal(roofline["stage"], stage), pc.is_null(roofline["step"])))
        total = pc.sum(rows["flops"]).as_py() if rows.num_rows else None
        attention = pc.sum(rows["attention_flops"]).as_py() if rows.num_rows else None
        model = total - attention if total is not None and attention is not None else None
        result[stage] = {
            "profiler_flops": profiler,
            "operators_counted": operators,
            "model_flops": model,
            "model_attention_flops": attention,
            "rel_diff": (profiler - model) / model if model else None,
        }
    return result
