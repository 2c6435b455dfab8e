"""Top kernels and operators per stage (KERNELS): calls, total and mean time, share of the stage.

Three kinds: ``kernel`` (GPU activities by name, GPU time), ``operator`` (GPU time grouped by
the cpu_op that launched it, through External id) and ``cpu_operator`` (CPU self time of
cpu_ops; the only kind on a CPU-only trace). Shares: of the stage's summed GPU activity time
for the first two, of the stage's CPU wall time for the third. Names are dictionary codes, so
each total is one ``bincount``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.categories import NO_OPERATOR
from dsocr.analyze.keys import name_codes
from dsocr.analyze.stages import stage_masks

from dsocr import schema
from dsocr.vocab import NS_PER_MS, NS_PER_US, STAGES, KernelKind


def _bincounts(codes: np.ndarray, durations: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Total time and calls per code (code -1 goes to the last bucket, ``size``)."""
    buckets = np.where(codes < 0, size, codes)
    totals = np.bincount(buckets, weights=durations.astype(np.float64), minlength=size + 1)
    return totals, np.bincount(buckets, minlength=size + 1)


def _top_of_totals(
    totals: np.ndarray,
    calls: np.ndarray,
    names: list[str],
    *,
    stage: str,
    kind: str,
    denominator_ns: float,
    top: int,
) -> pa.Table:
    """The ``top`` names by total time; the last bucket is NO_OPERATOR."""
    labels = [*names, NO_OPERATOR]
    present = np.flatnonzero(calls)
    order = sorted(present.tolist(), key=lambda code: (-totals[code], labels[code]))[:top]
    chosen_totals, chosen_calls = totals[order], calls[order]
    count = len(order)
    return pa.table(
        {
            "stage": pa.array([stage] * count, type=pa.string()),
            "kind": pa.array([kind] * count, type=pa.string()),
            "name": pa.array([labels[code] for code in order], type=pa.string()),
            "calls": pa.array(chosen_calls, type=pa.int64()),
            "total_ms_traced": pa.array(chosen_totals / NS_PER_MS),
            "mean_us": pa.array(chosen_totals / np.maximum(chosen_calls, 1) / NS_PER_US),
            "share": pa.array(chosen_totals / denominator_ns if denominator_ns > 0 else np.zeros(count)),
        },
        schema=schema.KERNELS,
    )


def _top(
    codes: np.ndarray,
    names: list[str],
    durations: np.ndarray,
    *,
    stage: str,
    kind: str,
    denominator_ns: float,
    top: int,
) -> pa.Table:
    totals, calls = _bincounts(codes, durations, len(names))
    return _top_of_totals(totals, calls, names, stage=stage, kind=kind, denominator_ns=denominator_ns, top=top)


def top_gpu(work: pa.Table, operator_codes: np.ndarray, operator_names: list[str], *, top: int) -> list[pa.Table]:
    """Top kernels and top launching operators per stage, by GPU time."""
    if work.num_rows == 0:
        return []
    durations = work["dur_ns"].to_numpy()
    kernel_codes, kernel_names = name_codes(work["name"])
    tables = []
    for stage, mask in stage_masks(work).items():
        if not mask.any():
            continue
        total = float(durations[mask].sum())
        for kind, codes, names in (
            (KernelKind.kernel, kernel_codes, kernel_names),
            (KernelKind.operator, operator_codes, operator_names),
        ):
            tables.append(
                _top(codes[mask], names, durations[mask], stage=stage, kind=kind, denominator_ns=total, top=top)
            )
    return tables


@dataclass(frozen=True)
class StageGpuTotals:
    """One batch's GPU time per stage: its sum, and per kernel name and per launching operator."""

    stage_ns: float
    kernels: tuple[np.ndarray, np.ndarray]
    operators: tuple[np.ndarray, np.ndarray]


def gpu_totals(
    work: pa.Table, kernel_codes: np.ndarray, kernel_names: int, operator_codes: np.ndarray, operator_names: int
) -> dict[str, StageGpuTotals]:
    """Per stage with GPU work: what ``top_gpu`` ranks, as sums that add across batches."""
    durations = work["dur_ns"].to_numpy()
    result = {}
    for stage, mask in stage_masks(work).items():
        if not mask.any():
            continue
        result[stage] = StageGpuTotals(
            stage_ns=float(durations[mask].sum()),
            kernels=_bincounts(kernel_codes[mask], durations[mask], kernel_names),
            operators=_bincounts(operator_codes[mask], durations[mask], operator_names),
        )
    return result


def top_of_totals(
    totals: np.ndarray, calls: np.ndarray, names: list[str], *, stage: str, kind: str, denominator_ns: float, top: int
) -> pa.Table:
    """The ``top`` names of summed ``totals``/``calls`` (last bucket: NO_OPERATOR), as KERNELS rows."""
    return _top_of_totals(totals, calls, names, stage=stage, kind=kind, denominator_ns=denominator_ns, top=top)


def operator_part(
    ops: pa.Table, codes: np.ndarray, self_ns: np.ndarray, names: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Self time and calls per operator code and stage of placed cpu_ops (``names`` codes): one
    slice's share of CpuOperatorTotals, computed where the slice was placed."""
    part = {}
    for stage, mask in stage_masks(ops).items():
        if mask.any():
            part[stage] = _bincounts(codes[mask], self_ns[mask], names)
    return part


class CpuOperatorTotals:
    """CPU self time and calls per operator name and stage, merged one slice of operators at a
    time (all slices share the name dictionary of the unified cpu_ops table)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._totals = {stage: np.zeros(len(names) + 1) for stage in STAGES}
        self._calls = {stage: np.zeros(len(names) + 1, dtype=np.int64) for stage in STAGES}

    def merge(self, part: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Add what ``operator_part`` computed for one slice of the operators."""
        for stage, (totals, calls) in part.items():
            self._totals[stage] += totals
            self._calls[stage] += calls

    def sums(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per stage with calls: (self time, calls) per name code, unnamed last."""
        return {stage: (self._totals[stage], self._calls[stage]) for stage in STAGES if self._calls[stage].any()}

    def tables(self, stage_cpu_ns: dict[str, float], *, top: int) -> list[pa.Table]:
        """Top cpu_ops per stage; shares of the stage's CPU wall time."""
        return [
            _top_of_totals(
                self._totals[stage],
                self._calls[stage],
                self.names,
                stage=stage,
                kind=KernelKind.cpu_operator,
                denominator_ns=stage_cpu_ns.get(stage, 0.0),
                top=top,
            )
            for stage in STAGES
            if self._calls[stage].any()
        ]


def kernels_table(tables: list[pa.Table]) -> pa.Table:
    """Concatenate the per-stage tops in stage order (KERNELS schema)."""
    if not tables:
        return schema.KERNELS.empty_table()
    combined = pa.concat_tables(tables)
    order = {stage: position for position, stage in enumerate(STAGES)}
    rank = pc.cast(pa.array([order[stage] for stage in combined["stage"].to_pylist()]), pa.int32())
    return combined.append_column("_order", rank).sort_by([("_order", "ascending")]).drop_columns(["_order"])
