"""Self time of nested CPU operators: an operator's duration minus that of its direct children.

Operators of one thread nest like a call stack. Sorted by (start, longest first), an
operator's depth is the number of operators still open when it starts, and its parent is
the last earlier operator one level up. The loop runs over depth levels (tens), never events.
"""

from __future__ import annotations

import numpy as np
from dsocr.analyze.order import is_lex_sorted

NO_PARENT = -1


def self_time_ns(lane: np.ndarray, start_ns: np.ndarray, dur_ns: np.ndarray) -> np.ndarray:
    """Self time of each interval (same order as the input); lanes are independent call stacks.

    Zero-length intervals neither nest nor hold children. Overlaps that are not nesting (which a
    well-formed thread never records) are tolerated: self time is clipped at zero.
    """
    lane = np.asarray(lane, dtype=np.int64)
    start_ns = np.asarray(start_ns, dtype=np.int64)
    dur_ns = np.maximum(np.asarray(dur_ns, dtype=np.int64), 0)
    result = dur_ns.copy()
    nests = dur_ns > 0
    if not nests.any():
        return result
    # Copies only where needed: usually every operator lasts and the rows are already in order.
    if nests.all():
        index, lanes, starts, durs = np.arange(lane.size), lane, start_ns, dur_ns
    else:
        index = np.flatnonzero(nests)
        lanes, starts, durs = lane[index], start_ns[index], dur_ns[index]
    if not is_lex_sorted((-durs, starts, lanes)):
        order = np.lexsort((-durs, starts, lanes))
        lanes, starts, durs, index = lanes[order], starts[order], durs[order], index[order]
    # Each lane on its own stretch of a virtual axis, so ends of one lane never count in another.
    first = np.concatenate(([0], np.flatnonzero(lanes[1:] != lanes[:-1]) + 1))
    sizes = np.diff(np.append(first, lanes.size))
    base = np.repeat(starts[first], sizes)
    extent = np.maximum.reduceat(starts + durs - base, first)
    offset = np.repeat(np.concatenate(([0], np.cumsum(extent + 1)[:-1])), sizes)
    virtual_start = starts - base + offset
    virtual_end = virtual_start + durs
    closed_before = np.searchsorted(np.sort(virtual_end), virtual_start, side="right")
    depth = np.arange(lanes.size) - closed_before
    parent = np.full(lanes.size, NO_PARENT, dtype=np.int64)
    for level in range(1, int(depth.max()) + 1):
        parents = np.flatnonzero(depth == level - 1)
        children = np.flatnonzero(depth == level)
        if parents.size == 0 or children.size == 0:
            continue
        slot = np.searchsorted(parents, children) - 1
        valid = slot >= 0
        parent[children[valid]] = parents[slot[valid]]
    has_parent = parent != NO_PARENT
    child_total = np.bincount(parent[has_parent], weights=durs[has_parent], minlength=lanes.size)
    result[index] = np.maximum(durs - np.rint(child_total).astype(np.int64), 0)
    return result
