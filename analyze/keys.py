"""Integer keys for numpy grouping: one int64 per image, per image and step."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.order import lex_order

#: The code of a null name.
NO_CODE = -1

_IMAGE_BITS = 32
_IMAGE_MASK = (1 << _IMAGE_BITS) - 1


def pack_image_key(rank: int, image_index: int) -> int:
    """The image key of one (rank, image_index), as ``image_key`` computes it per row."""
    return (rank << _IMAGE_BITS) | image_index


def _packed(table: pa.Table, shifts: dict[str, int]) -> np.ndarray:
    """``OR of column << shift`` per row (a null rank counts as 0).

    The tables analyze keys are made a file at a time, and a file holds one image and one
    chunk: a batch whose key columns are constant is filled with its one key, no per-row work.
    """
    result = np.empty(table.num_rows, dtype=np.int64)
    position = 0
    for batch in table.select(list(shifts)).to_batches():
        rows = slice(position, position + batch.num_rows)
        position += batch.num_rows
        columns = [batch.column(name) for name in shifts]
        if batch.num_rows and all(column.null_count == 0 for column in columns):
            bounds = [pc.min_max(column) for column in columns]
            if all(bound["min"].as_py() == bound["max"].as_py() for bound in bounds):
                constant = 0
                for bound, shift in zip(bounds, shifts.values(), strict=True):
                    constant |= bound["min"].as_py() << shift
                result[rows] = constant
                continue
        key = np.zeros(batch.num_rows, dtype=np.int64)
        for column, shift in zip(columns, shifts.values(), strict=True):
            key |= column.fill_null(0).to_numpy().astype(np.int64) << shift
        result[rows] = key
    return result


def image_key(table: pa.Table) -> np.ndarray:
    """``rank << 32 | image_index`` per row (both are non-negative int32 in every dsocr table)."""
    return _packed(table, {"rank": _IMAGE_BITS, "image_index": 0})


def split_image_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank, image_index) arrays of image keys."""
    keys = np.asarray(keys, dtype=np.int64)
    return (keys >> _IMAGE_BITS).astype(np.int32), (keys & _IMAGE_MASK).astype(np.int32)


def dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, looked up once per run of equal neighbours.

    Trace rows come a file (one image, one chunk) at a time, so image and chunk keys form a few
    long runs: the distinct values are found among the runs, not by sorting every row.
    """
    values = np.asarray(values)
    runs = run_starts(values)
    distinct = np.unique(values[runs])
    lengths = np.diff(np.append(runs, values.size))
    return distinct, np.repeat(np.searchsorted(distinct, values[runs]), lengths)


def step_key(image_keys: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """One int64 per (image, step): the image's dense index in the high bits, the step below."""
    _, dense = dense_codes(image_keys)
    return (dense.astype(np.int64) << _IMAGE_BITS) | np.asarray(steps, dtype=np.int64)


def step_key_image(step_keys: np.ndarray) -> np.ndarray:
    """The dense image index of each step key (its position among ``step_key``'s sorted images)."""
    return np.asarray(step_keys, dtype=np.int64) >> _IMAGE_BITS


_ID_BITS = 40
_CHUNK_SHIFT = 16
_RANK_SHIFT = 48


def chunk_key(table: pa.Table) -> np.ndarray:
    """``rank << 48 | image_index << 16 | chunk`` per row: one flush chunk of one image."""
    return _packed(table, {"rank": _RANK_SHIFT, "image_index": _CHUNK_SHIFT, "chunk": 0})


def run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal neighbours begins (0 first when not empty)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))


def _match_in_chunks(
    left_chunk: np.ndarray,
    left_runs: np.ndarray,
    left_id: np.ndarray,
    right_chunk: np.ndarray,
    right_runs: np.ndarray,
    right_id: np.ndarray,
) -> np.ndarray | None:
    """``match_ids`` for the usual layout, one binary search per chunk; None where it does not apply.

    The usual layout: each chunk's rows are contiguous on both sides (one file each) and the
    right ids rise strictly within a chunk (correlation and External ids count up as the
    profiler hands them out), so no id repeats and no key needs building or sorting.
    """
    left_values, right_values = left_chunk[left_runs], right_chunk[right_runs]
    if np.unique(left_values).size != left_values.size or np.unique(right_values).size != right_values.size:
        return None
    right_ends = np.append(right_runs, right_id.size)
    # Checked a chunk at a time: each slice stays in cache (one pass over the whole array
    # costs far more on a machine whose memory bandwidth is shared).
    for start, stop in itertools.pairwise(right_ends.tolist()):
        if not (np.diff(right_id[start:stop]) > 0).all():
            return None
    result = np.full(left_id.size, -1, dtype=np.int64)
    left_ends = np.append(left_runs, left_id.size)
    right_of = {int(value): run for run, value in enumerate(right_values.tolist())}
    for run, value in enumerate(left_values.tolist()):
        other = right_of.get(int(value))
        if other is None or right_ends[other] == right_ends[other + 1]:
            continue
        start, stop = int(right_ends[other]), int(right_ends[other + 1])
        rows = slice(int(left_ends[run]), int(left_ends[run + 1]))
        ids, candidates = left_id[rows], right_id[start:stop]
        position = np.minimum(np.searchsorted(candidates, ids), candidates.size - 1)
        hit = (candidates[position] == ids) & (ids >= 0) & (ids < (1 << _ID_BITS))
        result[rows] = np.where(hit, position + start, -1)
    return result


def match_ids(
    left_chunk: np.ndarray,
    left_id: np.ndarray,
    right_chunk: np.ndarray,
    right_id: np.ndarray,
    right_order: np.ndarray | pa.ChunkedArray,
) -> tuple[np.ndarray, int]:
    """For each left row, the right row with the same (chunk, id), -1 where there is none.

    A sorted-key equi-join that keeps the left order. Ids below 0 never match. Where several
    right rows share a key, the first by ``right_order`` wins; returns how many were passed over.
    ``right_order`` may stay an Arrow column: the usual layout never reads it.
    """
    left_runs, right_runs = run_starts(left_chunk), run_starts(right_chunk)
    by_chunk = _match_in_chunks(left_chunk, left_runs, left_id, right_chunk, right_runs, right_id)
    if by_chunk is not None:
        return by_chunk, 0
    chunks = np.unique(np.concatenate([left_chunk[left_runs], right_chunk[right_runs]]))
    if chunks.size >= 1 << (63 - _ID_BITS):
        raise ValueError(f"{chunks.size} flush chunks: too many to key")  # a bug or a corrupt trace

    def keyed(chunk: np.ndarray, runs: np.ndarray, ids: np.ndarray) -> np.ndarray:
        # Rows come a file (a chunk) at a time: look up each run of one chunk once, not each row.
        dense = np.repeat(np.searchsorted(chunks, chunk[runs]).astype(np.int64), np.diff(np.append(runs, chunk.size)))
        valid = (ids >= 0) & (ids < (1 << _ID_BITS))
        return np.where(valid, (dense << _ID_BITS) | ids, -1)

    left_key, right_key = keyed(left_chunk, left_runs, left_id), keyed(right_chunk, right_runs, right_id)
    result = np.full(left_key.size, -1, dtype=np.int64)
    order = lex_order((np.asarray(right_order), right_key))
    sorted_keys = right_key[order]
    first = np.ones(sorted_keys.size, dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first &= sorted_keys >= 0
    unique_keys, unique_rows = sorted_keys[first], order[first]
    duplicates = int(np.count_nonzero(sorted_keys >= 0) - unique_keys.size)
    if unique_keys.size == 0:
        return result, duplicates
    position = np.minimum(np.searchsorted(unique_keys, left_key), unique_keys.size - 1)
    hit = (unique_keys[position] == left_key) & (left_key >= 0)
    result[hit] = unique_rows[position[hit]]
    return result, duplicates


def int_values(column: pa.ChunkedArray | pa.Array, null: int) -> np.ndarray:
    """An integer column as numpy, nulls as ``null`` (no fill pass when there are none)."""
    if column.null_count:
        column = column.fill_null(null)
    return column.to_numpy()


def name_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Dictionary codes and values of a dictionary column whose chunks share one dictionary."""
    combined = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(combined.type):
        combined = combined.dictionary_encode()
    # int32 codes as stored: a widening copy would cost a pass over every row for nothing.
    return int_values(combined.indices, NO_CODE), combined.dictionary.to_pylist()
