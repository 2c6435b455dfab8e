"""Self time of nested CPU operators: an operator's duration minus that of its direct children.

Operators of one thread nest like a call stack. Sorted by (start, longest first), an
operator's depth is the number of operators still open when it starts, and its parent is
the last earlier operator one level up. The loop runs over depth levels (tens), never events.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from dsocr.analyze.order import is_lex_sorted

NO_PARENT = -1

#: Rows below which a batch of operators is not cut: a smaller piece costs about as much in
#: hand-off between threads as it saves.
MIN_PIECE_ROWS = 65_536


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


def whole_call_trees(ops: pa.Table, pieces: int, *, min_rows: int = MIN_PIECE_ROWS) -> Iterator[pa.RecordBatch]:
    """The batches of ``ops`` (columns ts_ns, dur_ns), each cut into at most ``pieces`` slices of
    about ``min_rows`` or more, only where no operator of any thread is open: every call tree
    stays whole in one slice, so each slice's self times equal those of the whole batch.

    One flush chunk can hold a million operators (``--full-chunk-steps``); cut, its placing
    runs on several threads instead of one. A batch whose rows are not in start order is kept whole.
    """
    for batch in ops.to_batches():
        if pieces < 2 or batch.num_rows < 2 * min_rows:
            yield batch
            continue
        starts = batch["ts_ns"].to_numpy()
        if (np.diff(starts) < 0).any():
            yield batch
            continue
        open_until = np.maximum.accumulate(starts + np.maximum(batch["dur_ns"].to_numpy(), 0))
        # Row i may begin a slice when every earlier operator has ended by its start.
        cuts = np.flatnonzero(open_until[:-1] <= starts[1:]) + 1
        wanted = min(pieces, batch.num_rows // min_rows)
        if cuts.size == 0 or wanted < 2:
            yield batch
            continue
        even = np.linspace(0, batch.num_rows, wanted + 1)[1:-1]
        chosen = np.unique(cuts[np.minimum(np.searchsorted(cuts, even), cuts.size - 1)])
        for start, stop in itertools.pairwise([0, *chosen.tolist(), batch.num_rows]):
            yield batch.slice(start, stop - start)
