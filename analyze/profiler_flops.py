"""The profiler's own FLOP counts (``with_flops``) per stage, against the model-config count."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.ordered import Slices
from dsocr.analyze.sketch import ExactSum
from dsocr.analyze.stages import stage_masks
from dsocr.analyze.step_figures import DecodeStepRoofline

from dsocr.vocab import Stage

#: Matrix products for which neither torch's profiler nor capture's op_flops has a FLOP formula.
#: Where one runs as a single kernel (CUDA) its work is missing from the profiler's count: on an
#: H200 the MoE experts of DeepSeek-OCR-2's prefill run as ``aten::_grouped_mm`` (docs/analysis.md).
#: On CPU it runs ``aten::mm`` per group, which is counted.
UNCOUNTED_PRODUCTS = ("aten::_grouped_mm", "aten::_scaled_mm", "aten::_scaled_grouped_mm")


@dataclass
class StageFlops:
    """The profiler's FLOP count of one stage and what it leaves out."""

    flops: float = 0.0
    #: Operators that carry a count.
    operators: int = 0
    #: Calls of UNCOUNTED_PRODUCTS with no counted operator inside them, by name.
    uncounted: Counter[str] = field(default_factory=Counter)


def add_stage_flops(totals: dict[str, StageFlops], ops: pa.Table) -> None:
    """Add the flops of placed cpu_ops (columns name, flops, in_vision, in_prefill, step) and their
    calls of UNCOUNTED_PRODUCTS per stage."""
    if "flops" not in ops.column_names:
        return
    flops = ops["flops"]
    carried = flops.is_valid().to_numpy(zero_copy_only=False)
    uncounted = pc.is_in(ops["name"], value_set=pa.array(UNCOUNTED_PRODUCTS)).to_numpy(zero_copy_only=False)
    if uncounted.any():
        uncounted = _without_counted_children(ops, uncounted, carried)
    if not carried.any() and not uncounted.any():
        return
    values = flops.fill_null(0).to_numpy().astype(np.float64)
    names = ops["name"].take(np.flatnonzero(uncounted)).to_pylist() if uncounted.any() else []
    for stage, mask in stage_masks(ops).items():
        entry = totals.setdefault(stage, StageFlops())
        entry.flops += float(values[mask].sum())
        entry.operators += int(np.count_nonzero(mask & carried))
        if names:
            entry.uncounted.update(name for name, inside in zip(names, mask[uncounted], strict=True) if inside)


def _without_counted_children(ops: pa.Table, candidates: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """The ``candidates`` with no counted operator starting inside them on their thread."""
    starts = ops["ts_ns"].to_numpy()
    ends = starts + ops["dur_ns"].to_numpy()
    threads = ops["tid"].to_numpy(zero_copy_only=False)
    kept = candidates.copy()
    for thread in np.unique(threads[candidates]):
        counted_starts = np.sort(starts[carried & (threads == thread)])
        if not counted_starts.size:
            continue
        rows = np.flatnonzero(candidates & (threads == thread))
        first = np.searchsorted(counted_starts, starts[rows], side="left")
        inside = first < counted_starts.size
        inside[inside] = counted_starts[first[inside]] < ends[rows[inside]]
        kept[rows[inside]] = False
    return kept


def _stage_flops(stages: Slices) -> dict[str, tuple[float | None, float | None]]:
    """Per stage: the model's FLOPs and attention FLOPs summed over its rows (correctly rounded,
    the same for any slicing; None: no row has a value)."""
    sums: dict[str, list[ExactSum | None]] = {}
    for table in stages.columns("stage", "flops", "attention_flops"):
        for stage in set(table["stage"].to_pylist()):
            rows = table.filter(pc.equal(table["stage"], stage))
            into = sums.setdefault(stage, [None, None])
            for position, name in enumerate(("flops", "attention_flops")):
                values = rows[name].drop_null()
                if len(values):
                    into[position] = into[position] or ExactSum()
                    into[position].add(values.cast(pa.float64()).to_numpy())
    return {
        stage: (flops.value if flops else None, attention.value if attention else None)
        for stage, (flops, attention) in sums.items()
    }


def profiler_check(
    totals: dict[str, StageFlops], stages: Slices, decode_steps: DecodeStepRoofline
) -> dict[str, Any] | None:
    """Per stage: the profiler's FLOPs (matrix products from recorded shapes), the model's outside
    attention (SDPA carries no shapes-based estimate), ``rel_diff = (profiler - model) / model``,
    and the calls of matrix products the profiler cannot count. The model's: ``stages`` (the
    ROOFLINE stage rows per image, a slice at a time) and, for decode, the sums of the step rows.

    None when the trace carries no FLOP counts (captured without with_flops)."""
    if not any(entry.operators for entry in totals.values()):
        return None
    model_sums = _stage_flops(stages)
    result: dict[str, Any] = {}
    for stage, entry in totals.items():
        profiler, operators = entry.flops, entry.operators
        # decode's model count over the steps the profiler saw: the sum of its step rows (the
        # decode rows are per token).
        if stage == Stage.decode:
            total, attention = decode_steps.total("flops"), decode_steps.total("attention_flops")
        else:
            total, attention = model_sums.get(stage, (None, None))
        model = total - attention if total is not None and attention is not None else None
        result[stage] = {
            "profiler_flops": profiler,
            "operators_counted": operators,
            "model_flops": model,
            "model_attention_flops": attention,
            "rel_diff": (profiler - model) / model if model else None,
            "uncounted_operators": dict(sorted(entry.uncounted.items())),
        }
    return result
