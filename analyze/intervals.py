"""Vectorized interval arithmetic on int64 nanosecond arrays: unions per group, point location.

Every function sorts once and then works on whole arrays (numpy); none loops over events.
Groups are laid end to end on a virtual time axis, so one cumulative maximum serves all of
them without one group's intervals leaking into the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dsocr.analyze.order import lex_sorted

NOT_FOUND = -1


@dataclass(frozen=True)
class GroupUnion:
    """Per group (sorted by key): the union length, first start, last end and interval count."""

    keys: np.ndarray
    busy_ns: np.ndarray
    first_start_ns: np.ndarray
    last_end_ns: np.ndarray
    count: np.ndarray


def _segment_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a new key begins in a sorted key array (always includes 0 when non-empty)."""
    if sorted_keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1))


def union_by_group(keys: np.ndarray, start_ns: np.ndarray, end_ns: np.ndarray) -> GroupUnion:
    """Length of the union of ``[start, end)`` intervals per group key, plus span and count.

    Overlapping or touching intervals (several streams, nested envelopes) count once.
    """
    keys = np.asarray(keys, dtype=np.int64)
    start_ns = np.asarray(start_ns, dtype=np.int64)
    end_ns = np.maximum(np.asarray(end_ns, dtype=np.int64), start_ns)
    if keys.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return GroupUnion(empty, empty, empty, empty, empty)
    k, s, e = lex_sorted((start_ns, keys), keys, start_ns, end_ns)
    seg = _segment_starts(k)
    lengths = np.diff(np.append(seg, k.size))
    first = s[seg]
    rel_end = e - np.repeat(first, lengths)
    extent = np.maximum.reduceat(rel_end, seg)
    # Each group gets its own stretch of the virtual axis, one ns beyond the previous group's end.
    offsets = np.concatenate(([0], np.cumsum(extent + 1)[:-1]))
    shift = np.repeat(offsets - first, lengths)
    vs, ve = s + shift, e + shift
    running_end = np.maximum.accumulate(ve)
    new_block = np.ones(k.size, dtype=bool)
    new_block[1:] = vs[1:] > running_end[:-1]
    block_starts = np.flatnonzero(new_block)
    block_len = np.maximum.reduceat(ve, block_starts) - vs[block_starts]
    # A block never spans two groups (a group starts past every earlier end), so sum blocks per group.
    block_group = np.searchsorted(seg, block_starts, side="right") - 1
    busy = np.zeros(seg.size, dtype=np.int64)
    np.add.at(busy, block_group, block_len)
    return GroupUnion(
        keys=k[seg],
        busy_ns=busy,
        first_start_ns=first,
        last_end_ns=np.maximum.reduceat(e, seg),
        count=lengths.astype(np.int64),
    )


def locate(
    point_lane: np.ndarray,
    point_ns: np.ndarray,
    range_lane: np.ndarray,
    range_start_ns: np.ndarray,
    range_end_ns: np.ndarray,
) -> np.ndarray:
    """For each point, the index of the range of its lane that contains it (``start <= t < end``).

    Ranges of one lane must not overlap (dsocr's decode steps, or one vision range per image).
    Returns ``NOT_FOUND`` (-1) where no range contains the point or the point has no lane (< 0).
    """
    point_lane = np.asarray(point_lane, dtype=np.int64)
    point_ns = np.asarray(point_ns, dtype=np.int64)
    result = np.full(point_ns.size, NOT_FOUND, dtype=np.int64)
    if point_ns.size == 0 or len(range_lane) == 0:
        return result
    range_lane = np.asarray(range_lane, dtype=np.int64)
    range_start_ns = np.asarray(range_start_ns, dtype=np.int64)
    range_end_ns = np.asarray(range_end_ns, dtype=np.int64)
    order = np.lexsort((range_start_ns, range_lane))
    lanes, starts, ends = range_lane[order], range_start_ns[order], range_end_ns[order]
    lane_first = _segment_starts(lanes)
    lane_keys = lanes[lane_first]
    lane_sizes = np.diff(np.append(lane_first, lanes.size))
    lane_pos = np.searchsorted(lane_keys, point_lane)
    has_lane = (lane_pos < lane_keys.size) & (point_lane >= 0)
    has_lane[has_lane] &= lane_keys[lane_pos[has_lane]] == point_lane[has_lane]
    candidates = np.flatnonzero(has_lane)
    pos = lane_pos[candidates]
    # Lanes are laid end to end on a virtual axis (each from its own first start), so one
    # searchsorted finds the last range starting at or before the point inside the right lane.
    lane_base = starts[lane_first]
    lane_extent = np.maximum.reduceat(ends - np.repeat(lane_base, lane_sizes), lane_first)
    lane_offset = np.concatenate(([0], np.cumsum(lane_extent + 2)[:-1])) + 1
    virtual_starts = starts - np.repeat(lane_base - lane_offset, lane_sizes)
    relative = np.clip(point_ns[candidates] - lane_base[pos], -1, lane_extent[pos])
    found = np.searchsorted(virtual_starts, relative + lane_offset[pos], side="right") - 1
    inside = (found >= lane_first[pos]) & (found < lane_first[pos] + lane_sizes[pos])
    inside[inside] &= point_ns[candidates][inside] < ends[found[inside]]
    result[candidates[inside]] = order[found[inside]]
    return result


def running_max_before(
    keys: np.ndarray, order_ns: np.ndarray, values: np.ndarray, query_keys: np.ndarray, query_ns: np.ndarray
) -> np.ndarray:
    """For each query: the largest ``value`` among items of the same key with ``order < query``.

    ``np.iinfo(int64).min`` where there is none. Used for "when is the GPU free at CPU time t":
    the latest end among the GPU activities launched before t.
    """
    none = np.iinfo(np.int64).min
    keys = np.asarray(keys, dtype=np.int64)
    query_keys = np.asarray(query_keys, dtype=np.int64)
    query_ns = np.asarray(query_ns, dtype=np.int64)
    result = np.full(query_ns.size, none, dtype=np.int64)
    if keys.size == 0 or query_ns.size == 0:
        return result
    order_ns = np.asarray(order_ns, dtype=np.int64)
    k, t, v = lex_sorted((order_ns, keys), keys, order_ns, np.asarray(values, dtype=np.int64))
    first = _segment_starts(k)
    sizes = np.diff(np.append(first, k.size))
    # Per-key running maximum without leaking across keys: lift each key above the previous one.
    low = np.minimum.reduceat(v, first)
    lifted = v - np.repeat(low, sizes)
    lift = np.concatenate(([0], np.cumsum(np.maximum.reduceat(lifted, first) + 1)[:-1]))
    running = np.maximum.accumulate(lifted + np.repeat(lift, sizes)) - np.repeat(lift - low, sizes)
    # The last item of the query's key ordered strictly before the query time.
    key_pos = np.searchsorted(k[first], query_keys)
    known = key_pos < first.size
    known[known] &= k[first][key_pos[known]] == query_keys[known]
    rows = np.flatnonzero(known)
    pos = key_pos[rows]
    base = t[first][pos]
    extent = np.maximum.reduceat(t - np.repeat(t[first], sizes), first)
    offset = np.concatenate(([0], np.cumsum(extent + 2)[:-1])) + 1
    virtual = t - np.repeat(t[first] - offset, sizes)
    query_virtual = np.clip(query_ns[rows] - base, -1, extent[pos] + 1) + offset[pos]
    found = np.searchsorted(virtual, query_virtual, side="left") - 1
    inside = found >= first[pos]
    result[rows[inside]] = running[found[inside]]
    return result
