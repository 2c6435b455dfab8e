"""summary.json ``ranks``: stage time per process of a multi-process capture, slowest rank, imbalance."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from dsocr.analyze.inputs import AnalysisInputs
from dsocr.analyze.ordered import Slices
from dsocr.analyze.sketch import QuantileSketch

from dsocr.vocab import STAGES, Stage

# The stage time a rank spent: the whole stage on the reference clock (every decode step).
_MEASURES = ("clock_ms",)
# prefill (TTFT) contains vision, prefill_text is prefill minus vision: prefill + decode is the model's time.
_WHOLE_IMAGE_STAGES = (Stage.prefill, Stage.decode)
IMBALANCE_BY_WALL = "capture_seconds"
IMBALANCE_BY_STAGES = "stage_ms"


@dataclass(frozen=True)
class RankStage:
    """One stage on one rank: the measure used, its total and median across the rank's images."""

    measure: str | None
    total_ms: float
    median_ms: float | None


@dataclass(frozen=True)
class RankFigures:
    rank: int
    images: int
    #: prefill + decode totals: the rank's time in the model.
    stage_ms: float
    #: From run.json ``ranks`` (None when not recorded).
    capture_seconds: float | None
    stages: dict[str, RankStage]


@dataclass(frozen=True)
class Ranks:
    world_size: int
    per_rank: list[RankFigures]
    slowest_rank: int | None
    #: max / mean load, by ``imbalance_by``.
    imbalance: float | None
    imbalance_by: str | None


def _measure(row: dict[str, Any]) -> tuple[str | None, float | None]:
    for name in _MEASURES:
        if row.get(name) is not None:
            return name, row[name]
    return None, None


def _rank_figures(rank: int, entry: dict[str, Any], capture_seconds: float | None) -> RankFigures:
    stages = {
        name: RankStage(measure=figures["measure"], total_ms=figures["total"], median_ms=figures["values"].median())
        for name, figures in sorted(entry["stages"].items(), key=lambda item: STAGES.index(item[0]))
    }
    return RankFigures(
        rank=rank,
        images=entry["images"],
        stage_ms=sum(stages[name].total_ms for name in _WHOLE_IMAGE_STAGES if name in stages),
        capture_seconds=capture_seconds,
        stages=stages,
    )


#: Timings rows made into Python objects together (the run's are never made at once).
_ROWS_AT_ONCE = 4096


def _rows(timings: Slices) -> Iterator[dict[str, Any]]:
    for table in timings.columns("rank", "image_index", "stage", *_MEASURES):
        for batch in table.to_batches(max_chunksize=_ROWS_AT_ONCE):
            yield from batch.to_pylist()


def _flush(stage: dict[str, Any]) -> None:
    stage["values"].add(np.array(stage["pending"], dtype=np.float64))
    stage["pending"].clear()


def rank_figures(inputs: AnalysisInputs) -> Ranks:
    """Per rank: images, stage totals and medians (exact up to the sketch's EXACT_VALUES images
    a rank); the slowest rank and the load imbalance. One pass over the timings rows, whose rows
    of an image come together."""
    run = inputs.run
    seconds_by_rank = {entry.rank: entry.capture_seconds for entry in run.ranks or ()}
    per_rank: dict[int, dict[str, Any]] = {}
    last_image: tuple[int, int] | None = None
    for row in _rows(inputs.timings):
        measure, value = _measure(row)
        entry = per_rank.setdefault(row["rank"], {"images": 0, "stages": {}})
        if (row["rank"], row["image_index"]) != last_image:
            entry["images"] += 1
            last_image = (row["rank"], row["image_index"])
        stage = entry["stages"].setdefault(
            row["stage"], {"measure": measure, "total": 0, "values": QuantileSketch(), "pending": []}
        )
        if value is not None:
            stage["total"] += value  # in order: the float sum of one pass over the rank's images
            stage["pending"].append(value)
            if len(stage["pending"]) == _ROWS_AT_ONCE:
                _flush(stage)
    for entry in per_rank.values():
        for stage in entry["stages"].values():
            _flush(stage)
    ranks = [_rank_figures(rank, per_rank[rank], seconds_by_rank.get(rank)) for rank in sorted(per_rank)]
    world_size = run.world_size
    if not ranks:
        return Ranks(world_size, ranks, slowest_rank=None, imbalance=None, imbalance_by=None)
    # Capture wall time when every rank recorded it, else stage time.
    by_wall = all(rank.capture_seconds is not None for rank in ranks)
    loads = [(rank.capture_seconds if by_wall else rank.stage_ms) or 0.0 for rank in ranks]
    mean = statistics.fmean(loads)
    slowest = ranks[max(range(len(ranks)), key=lambda position: loads[position])]
    return Ranks(
        world_size=world_size,
        per_rank=ranks,
        slowest_rank=slowest.rank,
        imbalance=max(loads) / mean if mean else None,
        imbalance_by=IMBALANCE_BY_WALL if by_wall else IMBALANCE_BY_STAGES,
    )
