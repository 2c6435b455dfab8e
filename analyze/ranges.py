"""dsocr's own ranges: one row per vision, prefill and decode step range, checked and keyed.

Ranges cut by a flush window (the profiler ended its cycle while the range was open, and
wrote the cycle's end as the range's end) and repeated ranges are counted, then left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.keys import chunk_key
from dsocr.analyze.load import IMAGE_KEYS
from dsocr.analyze.segments import Segments, build_segments

from dsocr.vocab import RangeStage

#: Stages whose ranges attribute work: vision and prefill (one per image), decode steps.
ATTRIBUTING_STAGES = (RangeStage.vision, RangeStage.prefill, RangeStage.decode_step)
LANE_KEYS = ["rank", "image_index", "pid", "tid"]


@dataclass(frozen=True)
class Ranges:
    """Clean ranges (columns rank, image_index, pid, tid, chunk, stage, step, start_ns, end_ns, lane)
    and the counts of what was left out."""

    table: pa.Table
    cut_by_flush: int
    duplicates: int
    #: (rank, image_index, pid, tid) of each lane id: the threads that own dsocr ranges.
    lanes: pa.Table

    @cached_property
    def segments(self) -> Segments:
        """The lanes cut at every range boundary (built once, used for every point placed)."""
        return build_segments(self.table, self.lanes.num_rows)


def _stage_rows(ranges: pa.Table) -> pa.Table:
    stage = ranges["range_stage"].cast(pa.string())
    keep = pc.is_in(stage, value_set=pa.array(ATTRIBUTING_STAGES))
    table = ranges.filter(keep)
    return pa.table(
        {
            "rank": table["rank"],
            "image_index": table["image_index"],
            "pid": table["pid"],
            "tid": table["tid"],
            "chunk": table["chunk"],
            "stage": table["range_stage"].cast(pa.string()),
            "step": table["range_step"],
            "start_ns": table["ts_ns"],
            "end_ns": pc.add(table["ts_ns"], table["dur_ns"]),
        }
    )


def _mark_cut(table: pa.Table, chunks: pa.Table) -> pa.Array:
    """True where a range is the last CPU event of its flush chunk to end: the cycle closed it."""
    chunk_keys = chunk_key(chunks)
    order = np.argsort(chunk_keys)
    known = chunk_keys[order]
    if known.size == 0:
        return pa.array(np.zeros(table.num_rows, dtype=bool))
    keys = chunk_key(table)
    position = np.minimum(np.searchsorted(known, keys), known.size - 1)
    found = known[position] == keys
    last_end = chunks["last_end_ns"].take(pa.array(order[position]))
    cut = pc.fill_null(pc.greater_equal(table["end_ns"], last_end), False).to_numpy(zero_copy_only=False)
    return pa.array(cut & found)


def _key_changes(table: pa.Table, keys: list[str]) -> np.ndarray:
    """True at the first row and at each row whose ``keys`` differ from the row before (rows
    sorted by them; integer nulls compare as -1)."""
    changes = np.zeros(table.num_rows, dtype=bool)
    changes[:1] = True
    for key in keys:
        column = table[key]
        if pa.types.is_integer(column.type):
            column = column.fill_null(-1)
        values = column.to_numpy()
        changes[1:] |= values[1:] != values[:-1]
    return changes


def _first_of_each(table: pa.Table, keys: list[str]) -> tuple[pa.Table, int]:
    """Keep the earliest range per key (a stage once per image, a step once); count the rest."""
    table = table.sort_by([(key, "ascending") for key in keys] + [("start_ns", "ascending")])
    first = _key_changes(table, keys)
    return table.filter(pa.array(first)), int(table.num_rows - first.sum())


def _with_lanes(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Append each range's lane (its LANE_KEYS, numbered in ascending key order, nulls last).

    A range without a pid or tid gets no lane (as in a join on the keys, where null matches
    nothing), though its keys are numbered like the others."""
    # One row per lane from a sort of the few hundred ranges (not Acero: its set-up costs more).
    order = pc.sort_indices(table, [(key, "ascending") for key in LANE_KEYS])
    by_lane = table.select(LANE_KEYS).take(order)
    new_lane = _key_changes(by_lane, LANE_KEYS)
    lane = np.empty(table.num_rows, dtype=np.int64)
    lane[order.to_numpy()] = np.cumsum(new_lane) - 1
    lanes = by_lane.filter(pa.array(new_lane))
    lanes = lanes.append_column("lane", pa.array(np.arange(lanes.num_rows, dtype=np.int64)))
    keyless = np.zeros(table.num_rows, dtype=bool)
    for key in LANE_KEYS:
        keyless |= table[key].is_null().to_numpy(zero_copy_only=False)
    return table.append_column("lane", pa.array(lane, mask=keyless)), lanes


def clean_ranges(raw: pa.Table, chunks: pa.Table) -> Ranges:
    """dsocr's vision, prefill and decode-step ranges, one per image and step, with lane ids."""
    table = _stage_rows(raw)
    cut = _mark_cut(table, chunks) if table.num_rows else pa.array([], type=pa.bool_())
    cut_count = int(pc.sum(cut).as_py() or 0)
    table = table.filter(pc.invert(cut))
    table, duplicates = _first_of_each(table, [*IMAGE_KEYS, "stage", "step"])
    table, lanes = _with_lanes(table)
    table = table.sort_by([("lane", "ascending"), ("start_ns", "ascending")])
    return Ranges(table=table, cut_by_flush=cut_count, duplicates=duplicates, lanes=lanes)
