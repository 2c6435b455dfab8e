"""analyze's fast paths (rows already sorted, one image or chunk per file) against the general
paths they skip, on the committed H200 capture and on inputs that force the general path."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from analyze_helpers import gpu_run_or_skip
from dsocr.analyze import attribution, segments
from dsocr.analyze.intervals import locate
from dsocr.analyze.keys import chunk_key, dense_codes, image_key, int_values, match_ids
from dsocr.analyze.load import _windows, load_trace
from dsocr.analyze.order import is_lex_sorted, lex_order
from dsocr.analyze.ranges import clean_ranges
from dsocr.analyze.segments import PLACED_STAGES, open_ranges


@pytest.fixture(scope="module")
def trace():
    return load_trace(gpu_run_or_skip())


def _plain_match(left_chunk, left_id, right_chunk, right_id, right_order) -> tuple[list[int], int]:
    """The join as a dict: first right row by order per (chunk, id); ids < 0 never match."""
    first: dict[tuple[int, int], int] = {}
    passed_over = 0
    for row in sorted(range(len(right_id)), key=lambda r: (right_chunk[r], right_id[r], right_order[r])):
        key = (int(right_chunk[row]), int(right_id[row]))
        if key[1] < 0:
            continue
        if key in first:
            passed_over += 1
        else:
            first[key] = row
    rows = [first.get((int(c), int(i)), -1) if i >= 0 else -1 for c, i in zip(left_chunk, left_id, strict=True)]
    return rows, passed_over


def test_lex_order_is_lexsort_sorted_or_not() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        size = int(rng.integers(0, 40))
        keys = [rng.integers(0, 4, size), rng.integers(-3, 3, size)]
        for candidate in (keys, [key[np.lexsort(keys)] for key in keys]):
            assert lex_order(candidate).tolist() == np.lexsort(candidate).tolist()
            assert is_lex_sorted(candidate) == (np.lexsort(candidate).tolist() == list(range(size)))


def test_dense_codes_is_unique_with_inverse() -> None:
    rng = np.random.default_rng(3)
    for values in (np.repeat([5, 2, 9, 2], [3, 1, 4, 2]), rng.integers(0, 6, 50), np.zeros(0, dtype=np.int64)):
        distinct, codes = dense_codes(values)
        expected, inverse = np.unique(values, return_inverse=True)
        assert distinct.tolist() == expected.tolist() and codes.tolist() == inverse.tolist()


def test_keys_of_constant_and_mixed_batches_agree() -> None:
    constant = pa.table({"rank": pa.array([1, 1], pa.int32()), "image_index": [4, 4], "chunk": [2, 2]})
    mixed = pa.table({"rank": pa.array([None, 1], pa.int32()), "image_index": [3, 4], "chunk": [0, 2]})
    both = pa.concat_tables([constant, mixed.cast(constant.schema)])
    assert image_key(both).tolist() == [(1 << 32) | 4, (1 << 32) | 4, 3, (1 << 32) | 4]
    assert chunk_key(both).tolist() == [(1 << 48) | (4 << 16) | 2] * 2 + [3 << 16, (1 << 48) | (4 << 16) | 2]


@pytest.mark.parametrize("shuffle", [False, True])
def test_match_ids_per_chunk_and_general(trace, shuffle: bool) -> None:
    """The capture's launch ids rise within each chunk (fast path); shuffled with a repeated id
    they do not (general path). Both give the plain join."""
    launches, gpu = trace.launches, trace.gpu_ops
    right = [chunk_key(launches), int_values(launches["correlation"], -1), launches["ts_ns"].to_numpy()]
    if shuffle:
        order = np.random.default_rng(1).permutation(right[0].size)
        right = [column[order].copy() for column in right]
        right[1][1] = right[1][0]  # a repeated id in (maybe) the same chunk
    left = [chunk_key(gpu), int_values(gpu["correlation"], -1)]
    rows, passed_over = match_ids(*left, *right)
    assert (rows.tolist(), passed_over) == _plain_match(*left, *right)
    assert np.count_nonzero(rows >= 0) > 0.99 * rows.size


def test_lane_ids_by_run_and_by_row(trace, monkeypatch: pytest.MonkeyPatch) -> None:
    ranges = clean_ranges(trace.ranges, trace.chunks)
    ops = trace.cpu_ops.combine_chunks()
    foreign = np.where(np.arange(ops.num_rows) % 7 == 0, 999_999, int_values(ops["tid"], -1))
    ops = ops.set_column(ops.schema.get_field_index("tid"), "tid", pa.array(foreign))  # another thread
    by_run = attribution.lane_ids(ops, ranges)
    monkeypatch.setattr(attribution, "_RUN_LOOKUP_LIMIT", -1)
    assert by_run.tolist() == attribution.lane_ids(ops, ranges).tolist()
    assert set(by_run.tolist()) == {-1, *range(ranges.lanes.num_rows)}


@pytest.mark.parametrize("by_run", [True, False])
def test_open_ranges_is_locate_per_stage(trace, by_run: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not by_run:
        monkeypatch.setattr(segments, "_RUN_LOOKUP_LIMIT", -1)
    ranges = clean_ranges(trace.ranges, trace.chunks)
    lanes = attribution.lane_ids(trace.cpu_ops, ranges)
    times = trace.cpu_ops["ts_ns"].to_numpy()
    found = open_ranges(ranges.segments, lanes, times)
    for stage, rows, stage_table in zip(PLACED_STAGES, found, ranges.segments.stage_tables, strict=True):
        expected = locate(
            lanes, times, stage_table["lane"].to_numpy(), stage_table["start_ns"], stage_table["end_ns"].to_numpy()
        )
        assert rows.tolist() == expected.tolist(), stage
        assert (rows >= 0).any(), stage


def test_windows_of_one_chunk_and_of_several(trace) -> None:
    """A file of one chunk takes the one-row path; two chunks in one file take the grouping path."""
    files = [_windows_of(trace, chunk) for chunk in (0, 1)]
    table = pa.concat_tables([files[0][0], files[1][0]])
    roles = np.concatenate([files[0][1], files[1][1]])
    grouped = _windows(table, roles).sort_by("chunk").to_pylist()
    assert grouped == [_windows(*files[0]).to_pylist()[0], _windows(*files[1]).to_pylist()[0]]


def _windows_of(trace, chunk: int) -> tuple[pa.Table, np.ndarray]:
    """A fake one-chunk file of the capture's launches (role: launch), with ``chunk`` set."""
    launches = trace.launches.select(["rank", "image_index", "chunk", "ts_ns", "dur_ns"]).slice(chunk * 10, 10)
    launches = launches.set_column(2, "chunk", pa.array([chunk] * 10, pa.int32()))
    return launches, np.ones(10, dtype=np.int8)
