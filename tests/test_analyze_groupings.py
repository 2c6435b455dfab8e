"""analyze's numpy groupings against what pyarrow's group_by, join and a plain loop give.

analyze does not use Acero (its import and set-up cost more than these small tables' work);
these tests keep Acero as the oracle for the groupings that replaced it.
"""

from __future__ import annotations

import pyarrow as pa
from dsocr.analyze.load import CHUNK_KEYS, _combine_windows
from dsocr.analyze.ranges import LANE_KEYS, _mark_cut, _with_lanes
from hypothesis import given, settings
from hypothesis import strategies as st

BIG = 1_795_900_000_000_000_000
small = st.integers(0, 2)
maybe_ns = st.one_of(st.none(), st.integers(0, 1000).map(lambda offset: BIG + offset))


@st.composite
def window_parts(draw: st.DrawFn) -> list[pa.Table]:
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        rows = draw(st.lists(st.tuples(small, small, small, st.integers(1, 99), maybe_ns, maybe_ns), max_size=4))
        columns = list(zip(*rows, strict=True)) if rows else [[]] * 6
        parts.append(
            pa.table(
                {
                    **{key: pa.array(values, pa.int32()) for key, values in zip(CHUNK_KEYS, columns[:3], strict=True)},
                    "ts_ns_count": pa.array(columns[3], pa.int64()),
                    "ts_ns_min": pa.array(columns[4], pa.int64()),
                    "end_ns_max": pa.array(columns[5], pa.int64()),
                }
            )
        )
    return parts


@settings(max_examples=150, deadline=None)
@given(window_parts())
def test_combined_windows_match_arrow_group_by(parts: list[pa.Table]) -> None:
    expected = (
        pa.concat_tables(parts)
        .group_by(CHUNK_KEYS)
        .aggregate([("ts_ns_count", "sum"), ("ts_ns_min", "min"), ("end_ns_max", "max")])
        .rename_columns([*CHUNK_KEYS, "events", "first_ns", "last_end_ns"])
        .sort_by([(key, "ascending") for key in CHUNK_KEYS])
    )
    assert _combine_windows(parts).to_pylist() == expected.to_pylist()


lane_rows = st.lists(
    st.tuples(small, small, st.one_of(st.none(), small), st.one_of(st.none(), small)), min_size=1, max_size=30
)


@settings(max_examples=150, deadline=None)
@given(lane_rows)
def test_lanes_match_arrow_group_by_and_join(rows: list[tuple[int, int, int | None, int | None]]) -> None:
    rank, image, pid, tid = zip(*rows, strict=True)
    table = pa.table(
        {
            "rank": pa.array(rank, pa.int32()),
            "image_index": pa.array(image, pa.int32()),
            "pid": pa.array(pid, pa.int64()),
            "tid": pa.array(tid, pa.int64()),
            "row": pa.array(range(len(rows)), pa.int64()),
        }
    )
    expected_lanes = table.group_by(LANE_KEYS).aggregate([]).sort_by([(key, "ascending") for key in LANE_KEYS])
    expected_lanes = expected_lanes.append_column("lane", pa.array(range(expected_lanes.num_rows), pa.int64()))
    joined = table.join(expected_lanes, LANE_KEYS).sort_by("row")
    got, lanes = _with_lanes(table)
    assert lanes.to_pylist() == expected_lanes.to_pylist()
    assert got.select(["row", "lane"]).to_pylist() == joined.select(["row", "lane"]).to_pylist()  # row order kept


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(small, small, small, st.integers(0, 1000)), min_size=1, max_size=20),
    st.dictionaries(st.tuples(small, small, small), st.one_of(st.none(), st.integers(0, 1000)), max_size=27),
)
def test_cut_ranges_end_at_or_after_their_chunks_last_event(
    ranges: list[tuple[int, int, int, int]], windows: dict[tuple[int, int, int], int | None]
) -> None:
    rank, image, chunk, end = zip(*ranges, strict=True)
    table = pa.table(
        {
            "rank": pa.array(rank, pa.int32()),
            "image_index": pa.array(image, pa.int32()),
            "chunk": pa.array(chunk, pa.int32()),
            "end_ns": pa.array([BIG + value for value in end], pa.int64()),
        }
    )
    keys = list(windows)
    chunks = pa.table(
        {
            **{name: pa.array([key[i] for key in keys], pa.int32()) for i, name in enumerate(CHUNK_KEYS)},
            "last_end_ns": pa.array([None if windows[key] is None else BIG + windows[key] for key in keys], pa.int64()),
        }
    )
    expected = [
        windows.get(key) is not None and BIG + value >= BIG + windows[key]
        for key, value in zip(zip(rank, image, chunk, strict=True), end, strict=True)
    ]
    assert _mark_cut(table, chunks).to_pylist() == expected
