"""Per-rank figures of a multi-process capture: stage time per GPU, slowest rank, load imbalance."""

from __future__ import annotations

import statistics
from typing import Any

import pyarrow as pa

from dsocr.records import RunRecord
from dsocr.vocab import STAGES, Stage

# The stage time a rank spent, by the best measure each row has (device time first).
_MEASURES = ("gpu_range_ms", "cpu_ms", "reference_ms")
# prefill contains vision, prefill_text is prefill minus vision: prefill + decode is the whole image.
_WHOLE_IMAGE_STAGES = (Stage.prefill, Stage.decode)


def _measure(row: dict[str, Any]) -> tuple[str | None, float | None]:
    for name in _MEASURES:
        if row.get(name) is not None:
            return name, row[name]
    return None, None


def rank_figures(timings: pa.Table, run: RunRecord) -> dict[str, Any]:
    """``ranks`` of summary.json: per rank, images and stage totals and medians; the imbalance."""
    seconds_by_rank = {entry.rank: entry.capture_seconds for entry in run.ranks or ()}
    per_rank: dict[int, dict[str, Any]] = {}
    for row in timings.to_pylist():
        measure, value = _measure(row)
        entry = per_rank.setdefault(row["rank"], {"rank": row["rank"], "images": set(), "stages": {}})
        entry["images"].add(row["image_index"])
        stage = entry["stages"].setdefault(row["stage"], {"measure": measure, "values": []})
        if value is not None:
            stage["values"].append(value)
    ranks = []
    for rank in sorted(per_rank):
        entry = per_rank[rank]
        stages = {
            name: {
                "measure": figures["measure"],
                "total_ms": sum(figures["values"]),
                "median_ms": statistics.median(figures["values"]) if figures["values"] else None,
            }
            for name, figures in sorted(entry["stages"].items(), key=lambda item: STAGES.index(item[0]))
        }
        busy_ms = sum(stages[name]["total_ms"] for name in _WHOLE_IMAGE_STAGES if name in stages)
        ranks.append(
            {
                "rank": rank,
                "images": len(entry["images"]),
                "stage_ms": busy_ms,
                "capture_seconds": seconds_by_rank.get(rank),
                "stages": stages,
            }
        )
    return {
        "world_size": run.world_size,
        "per_rank": ranks,
        **_imbalance(ranks),
    }


def _imbalance(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Slowest rank and max/mean load, by capture wall time when recorded, else by stage time."""
    if not ranks:
        return {"slowest_rank": None, "imbalance": None, "imbalance_by": None}
    by = "capture_seconds" if all(rank["capture_seconds"] is not None for rank in ranks) else "stage_ms"
    loads = [rank[by] for rank in ranks]
    mean = statistics.fmean(loads)
    slowest = max(ranks, key=lambda rank: rank[by])
    return {"slowest_rank": slowest["rank"], "imbalance": max(loads) / mean if mean else None, "imbalance_by": by}
