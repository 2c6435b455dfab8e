"""Top kernels and operators per stage (KERNELS): calls, total and mean time, share of the stage.

Three kinds: ``kernel`` (GPU activities by name, GPU time), ``operator`` (GPU time grouped by
the cpu_op that launched it, through External id) and ``cpu_operator`` (CPU self time of
cpu_ops; the only kind on a CPU-only trace). Shares: of the stage's summed GPU activity time
for the first two, of the stage's CPU wall time for the third.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyze.categories import (
    KIND_CPU_OPERATOR,
    KIND_KERNEL,
    KIND_OPERATOR,
    NO_OPERATOR,
    NS_PER_MS,
    NS_PER_US,
    STAGES,
)
from analyze.stages import stage_masks
from dsocr import schema

DEFAULT_TOP = 10


def _top(
    names: pa.ChunkedArray | pa.Array, durations: np.ndarray, stage: str, kind: str, denominator_ns: float, top: int
) -> pa.Table:
    table = pa.table({"name": names, "dur": pa.array(durations, type=pa.int64())})
    grouped = table.group_by("name").aggregate([("dur", "sum"), ("dur", "count")])
    grouped = grouped.sort_by([("dur_sum", "descending"), ("name", "ascending")]).slice(0, top)
    totals = grouped["dur_sum"].to_numpy().astype(np.float64)
    calls = grouped["dur_count"].to_numpy()
    count = grouped.num_rows
    return pa.table(
        {
            "stage": pa.array([stage] * count, type=pa.string()),
            "kind": pa.array([kind] * count, type=pa.string()),
            "name": grouped["name"].cast(pa.string()),
            "calls": pa.array(calls, type=pa.int64()),
            "total_ms": pa.array(totals / NS_PER_MS),
            "mean_us": pa.array(totals / np.maximum(calls, 1) / NS_PER_US),
            "share": pa.array(totals / denominator_ns if denominator_ns > 0 else np.zeros(count)),
        },
        schema=schema.KERNELS,
    )


def top_gpu(work: pa.Table, *, top: int = DEFAULT_TOP) -> list[pa.Table]:
    """Top kernels and top launching operators per stage, by GPU time (work: placed gpu ops with
    an ``operator`` column)."""
    if work.num_rows == 0:
        return []
    durations = work["dur_ns"].to_numpy()
    operators = work["operator"].cast(pa.string()).fill_null(NO_OPERATOR)
    names = work["name"].cast(pa.string())
    tables = []
    for stage, mask in stage_masks(work).items():
        if not mask.any():
            continue
        selected = pa.array(mask)
        total = float(durations[mask].sum())
        tables.append(_top(names.filter(selected), durations[mask], stage, KIND_KERNEL, total, top))
        tables.append(_top(operators.filter(selected), durations[mask], stage, KIND_OPERATOR, total, top))
    return tables


def top_cpu(
    ops: pa.Table, self_ns: np.ndarray, stage_cpu_ns: dict[str, float], *, top: int = DEFAULT_TOP
) -> list[pa.Table]:
    """Top cpu_ops per stage by CPU self time (ops: placed cpu_ops, same order as ``self_ns``)."""
    if ops.num_rows == 0:
        return []
    names = ops["name"].cast(pa.string())
    tables = []
    for stage, mask in stage_masks(ops).items():
        if not mask.any():
            continue
        tables.append(
            _top(
                names.filter(pa.array(mask)), self_ns[mask], stage, KIND_CPU_OPERATOR, stage_cpu_ns.get(stage, 0.0), top
            )
        )
    return tables


def kernels_table(tables: list[pa.Table]) -> pa.Table:
    """Concatenate the per-stage tops in stage order (KERNELS schema)."""
    if not tables:
        return schema.KERNELS.empty_table()
    combined = pa.concat_tables(tables)
    order = {stage: position for position, stage in enumerate(STAGES)}
    rank = pc.cast(pa.array([order[stage] for stage in combined["stage"].to_pylist()]), pa.int32())
    return combined.append_column("_order", rank).sort_by([("_order", "ascending")]).drop_columns(["_order"])
