"""The vectorized interval, self-time and quantile kernels against plain loops."""

from __future__ import annotations

import statistics

import numpy as np
import pyarrow as pa
from dsocr.analyze.cpu_self import self_time_ns, whole_call_trees
from dsocr.analyze.intervals import NOT_FOUND, locate, union_by_group
from dsocr.analyze.stats import grouped_quantiles
from hypothesis import given, settings
from hypothesis import strategies as st

BIG = 1_795_900_000_000_000_000  # absolute ns, as in real traces

intervals = st.lists(st.tuples(st.integers(0, 3), st.integers(-200, 200), st.integers(0, 60)), min_size=0, max_size=40)


def _plain_union(pairs: list[tuple[int, int]]) -> int:
    total, current = 0, None
    for start, end in sorted(pairs):
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [start, end]
        else:
            current[1] = max(current[1], end)
    return total + (current[1] - current[0] if current else 0)


@settings(max_examples=150, deadline=None)
@given(intervals)
def test_union_by_group_matches_a_plain_merge(rows: list[tuple[int, int, int]]) -> None:
    keys = np.array([k for k, _, _ in rows], dtype=np.int64)
    starts = np.array([BIG + s for _, s, _ in rows], dtype=np.int64)
    ends = starts + np.array([d for _, _, d in rows], dtype=np.int64)
    union = union_by_group(keys, starts, ends)
    expected_keys = sorted(set(keys.tolist()))
    assert union.keys.tolist() == expected_keys
    for key, busy, first, last, count in zip(
        union.keys, union.busy_ns, union.first_start_ns, union.last_end_ns, union.count, strict=True
    ):
        pairs = [(int(s), int(e)) for k, s, e in zip(keys, starts, ends, strict=True) if k == key]
        assert busy == _plain_union(pairs)
        assert first == min(s for s, _ in pairs)
        assert last == max(e for _, e in pairs)
        assert count == len(pairs)


def test_union_counts_overlap_on_two_streams_once() -> None:
    union = union_by_group(np.array([1, 1, 1, 2]), np.array([0, 5, 20, 0]), np.array([10, 12, 30, 4]))
    assert union.busy_ns.tolist() == [22, 4]
    assert (union.last_end_ns - union.first_start_ns).tolist() == [30, 4]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 100), st.integers(1, 30)), max_size=12),
    st.lists(st.tuples(st.integers(-1, 3), st.integers(-10, 140)), max_size=30),
)
def test_locate_matches_a_plain_scan(raw_ranges: list[tuple[int, int, int]], points: list[tuple[int, int]]) -> None:
    # Keep ranges of one lane disjoint, as locate requires: drop any that overlaps an earlier one.
    ranges: list[tuple[int, int, int]] = []
    for lane, start, length in raw_ranges:
        if all(other != lane or start + length <= s or e <= start for other, s, e in ranges):
            ranges.append((lane, start, start + length))
    found = locate(
        np.array([lane for lane, _ in points], dtype=np.int64),
        np.array([BIG + t for _, t in points], dtype=np.int64),
        np.array([lane for lane, _, _ in ranges], dtype=np.int64),
        np.array([BIG + s for _, s, _ in ranges], dtype=np.int64),
        np.array([BIG + e for _, _, e in ranges], dtype=np.int64),
    )
    for (lane, t), got in zip(points, found, strict=True):
        matches = [i for i, (other, s, e) in enumerate(ranges) if other == lane and s <= t < e]
        assert got == (matches[0] if matches else NOT_FOUND)


def _plain_self_times(ops: list[tuple[int, int, int]]) -> list[int]:
    """Stack walk per lane: each op's duration minus its direct children's."""
    result = [d for _, _, d in ops]
    order = sorted(range(len(ops)), key=lambda i: (ops[i][0], ops[i][1], -ops[i][2]))
    stack: list[int] = []
    lane = None
    for i in order:
        op_lane, start, duration = ops[i]
        if duration == 0:
            continue
        if op_lane != lane:
            stack, lane = [], op_lane
        while stack and ops[stack[-1]][1] + ops[stack[-1]][2] <= start:
            stack.pop()
        if stack:
            result[stack[-1]] -= duration
        stack.append(i)
    return result


def _nested_ops(depths: list[int]) -> list[tuple[int, int, int]]:
    """Well-nested call trees: a chain ``depth`` deep, each level with one leaf after its child."""
    ops = []
    for tree, depth in enumerate(depths):
        base = tree * 10_000
        for level in range(depth):
            ops.append((tree % 2, base + 10 * level, 1000 - 20 * level))
            ops.append((tree % 2, base + 1000 - 10 * level - 8, 5))
    return ops


@given(st.lists(st.integers(1, 6), min_size=1, max_size=5))
def test_self_time_matches_a_stack_walk(sizes: list[int]) -> None:
    ops = _nested_ops(sizes)
    got = self_time_ns(
        np.array([lane for lane, _, _ in ops]), np.array([BIG + s for _, s, _ in ops]), np.array([d for _, _, d in ops])
    )
    assert got.tolist() == _plain_self_times(ops)


def _ops_table(ops: list[tuple[int, int, int]]) -> pa.Table:
    """(lane, start, duration) rows as a cpu_ops-like table in start order (longest first on ties)."""
    ordered = sorted(ops, key=lambda op: (op[1], -op[2]))
    return pa.table(
        {
            "tid": pa.array([lane for lane, _, _ in ordered], pa.int64()),
            "ts_ns": pa.array([BIG + start for _, start, _ in ordered], pa.int64()),
            "dur_ns": pa.array([duration for _, _, duration in ordered], pa.int64()),
        }
    )


def _self_times(table: pa.Table | pa.RecordBatch) -> list[int]:
    columns = [table[name].to_numpy() for name in ("tid", "ts_ns", "dur_ns")]
    return self_time_ns(*columns).tolist()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(1, 5), st.integers(1, 8))
def test_cuts_fall_between_call_trees_and_keep_every_self_time(sizes: list[int], pieces: int, min_rows: int) -> None:
    table = _ops_table(_nested_ops(sizes))
    slices = list(whole_call_trees(table, pieces, min_rows=min_rows))
    assert 1 <= len(slices) <= max(pieces, 1)
    assert pa.Table.from_batches(slices).equals(table)  # every row once, in order
    assert [time for piece in slices for time in _self_times(piece)] == _self_times(table)
    starts = table["ts_ns"].to_numpy()
    ends = starts + table["dur_ns"].to_numpy()
    cut = 0
    for piece in slices[:-1]:
        cut += piece.num_rows
        assert ends[:cut].max() <= starts[cut]  # nothing open across a cut
    if pieces >= 2 and len(sizes) >= 2 and table.num_rows >= 2 * min_rows:
        assert len(slices) >= 2  # trees follow one another: there is always somewhere to cut


def test_a_batch_is_kept_whole_when_it_cannot_be_cut_safely() -> None:
    # One operator open over all the others: no cut point.
    spanning = _ops_table([(0, 0, 1_000_000), *((0, 10 * i + 1, 5) for i in range(100))])
    assert len(list(whole_call_trees(spanning, 4, min_rows=10))) == 1
    # Rows out of start order: the running end says nothing, so no cut.
    shuffled = _ops_table([(0, 10 * i, 5) for i in range(100)]).take(np.arange(99, -1, -1))
    assert len(list(whole_call_trees(shuffled, 4, min_rows=10))) == 1
    # Too few rows for two pieces of min_rows.
    small = _ops_table([(0, 10 * i, 5) for i in range(100)])
    assert len(list(whole_call_trees(small, 4, min_rows=60))) == 1
    assert len(list(whole_call_trees(small, 4, min_rows=25))) == 4


def test_self_time_of_a_small_stack() -> None:
    # linear [0,100) > addmm [10,60) > launch [20,30); then mm [70,90); zero-length op inside.
    lanes = np.array([0, 0, 0, 0, 0])
    starts = np.array([0, 10, 20, 70, 75])
    durations = np.array([100, 50, 10, 20, 0])
    assert self_time_ns(lanes, starts, durations).tolist() == [30, 40, 10, 20, 0]


def test_grouped_quantiles_match_statistics() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 4, 200)
    values = rng.exponential(2.0, 200)
    unique, result = grouped_quantiles(keys, values, (0.5, 0.9, 0.99))
    for key, row in zip(unique, result, strict=True):
        group = sorted(values[keys == key])
        cuts = statistics.quantiles(group, n=100, method="inclusive")
        assert row[0] == statistics.median(group)
        assert abs(row[1] - cuts[89]) < 1e-9
        assert abs(row[2] - cuts[98]) < 1e-9
