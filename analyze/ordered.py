"""Spooled per-image rows read back in an order, a few parts at a time: never the whole table.

analyze adds images in the order it reads them (traced batches by rank and image, then the
untraced images by image), and spools their rows to part files (analyze/spool.py). Its outputs
list images in prediction order (or by rank and image). ``ordered`` merges the parts into that
order without reading them all: each part is sorted on its own (a batch's rows, or
``runner.IMAGE_CHUNK`` images'); consecutive parts whose keys follow each other form a run; the
runs are merged k-way, holding one part per run. A run's images come in order, so one rank's
batches are one run, and the untraced chunks another: a capture of R ranks has at most 2R runs (a
batch that holds the last images of one rank and the first of the next is a run of its own), and
memory is a part per run, whatever the number of images. (Parts that came in no order at all, a
run each, would all be held: analyze never adds them so.)

``Slices`` is such a read, made again for every pass over it, of the columns a pass asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from dsocr.analyze.keys import image_key
from dsocr.analyze.spool import TableSpool

#: A key per row: what the rows are ordered by (an image's rows share it).
Key = Callable[[pa.Table], np.ndarray]


@dataclass(frozen=True)
class Order:
    """How a spool's rows are read back: ``key`` per row (rows of equal key keep the order they
    were added in, or ``then``'s within a part), from the ``columns`` the key reads, of the rows
    ``where`` selects (None: every row)."""

    columns: tuple[str, ...]
    key: Key
    then: Key | None = None
    where: Callable[[pa.Table], np.ndarray] | None = None

    def selected(self, table: pa.Table) -> pa.Table:
        """``table``'s rows that ``where`` selects."""
        return table if self.where is None else table.filter(pa.array(self.where(table)))

    def sorted_part(self, table: pa.Table) -> tuple[pa.Table, np.ndarray]:
        """``table``'s selected rows sorted by key (stable), and their keys."""
        table = self.selected(table)
        keys = self.key(table)
        order = np.argsort(keys, kind="stable") if self.then is None else np.lexsort((self.then(table), keys))
        return table.take(pa.array(order, type=pa.int64())), keys[order]


def by_rank_and_image(table: pa.Table) -> np.ndarray:
    return image_key(table)


BY_RANK_AND_IMAGE = Order(("rank", "image_index"), by_rank_and_image)


def _runs(spool: TableSpool, order: Order) -> list[list[int]]:
    """The spool's part numbers in runs: in each run, every part's keys come after the previous part's."""
    spool.flush()  # nothing is added once the parts are read
    runs: list[list[int]] = []
    last = 0
    for number in range(spool.count):
        keys = order.key(order.selected(spool.read_part(number, order.columns)))
        if keys.size == 0:
            continue
        if runs and int(keys.min()) > last:
            runs[-1].append(number)
        else:
            runs.append([number])
        last = int(keys.max())
    return runs


def ordered(
    spool: TableSpool, order: Order, columns: Sequence[str] | None = None, runs: list[list[int]] | None = None
) -> Iterator[pa.Table]:
    """The spool's selected rows in ``order``, as tables of whole images, a part per run in memory.
    ``columns``: only these (default: every column). ``runs``: the spool's runs for ``order``, when
    known (they are found by reading every part's key columns)."""
    wanted = None if columns is None else list(dict.fromkeys([*columns, *order.columns]))
    runs = [iter(run) for run in (_runs(spool, order) if runs is None else runs)]
    heads: list[tuple[pa.Table, np.ndarray, int] | None] = [None] * len(runs)

    def load(run: int) -> None:
        for number in runs[run]:
            table, keys = order.sorted_part(spool.read_part(number, wanted))
            if keys.size:
                heads[run] = (table, keys, 0)
                return
        heads[run] = None

    for run in range(len(runs)):
        load(run)
    while any(head is not None for head in heads):
        # Every row up to the smallest of the heads' last keys is here: no later part of any run holds one.
        bound = min(head[1][-1] for head in heads if head is not None)
        pieces: list[pa.Table] = []
        piece_keys: list[np.ndarray] = []
        for run, head in enumerate(heads):
            if head is None:
                continue
            table, keys, first = head
            end = int(np.searchsorted(keys, bound, side="right"))
            if end > first:
                pieces.append(table.slice(first, end - first))
                piece_keys.append(keys[first:end])
            if end == keys.size:
                load(run)
            else:
                heads[run] = (table, keys, end)
        merged = pa.concat_tables(pieces)
        if len(pieces) > 1:  # an image is in one run: a stable sort keeps each image's rows in order
            merged = merged.take(pa.array(np.argsort(np.concatenate(piece_keys), kind="stable"), type=pa.int64()))
        yield merged if columns is None else merged.select(list(columns))


class Slices:
    """A table read a slice at a time, again for every pass (``iter``), of every column or of
    some (``columns``): what the figures across images fold over."""

    def __init__(self, read: Callable[[Sequence[str] | None], Iterable[pa.Table]], schema: pa.Schema) -> None:
        self._read = read
        self.schema = schema

    @classmethod
    def of(cls, table: pa.Table) -> Slices:
        """One table, whole (a small run, or a test)."""
        return cls(lambda columns: [table if columns is None else table.select(list(columns))], table.schema)

    @classmethod
    def spooled(cls, spool: TableSpool, order: Order) -> Slices:
        """A spool's rows in ``order`` (its runs found on the first pass, kept for the next ones:
        nothing is added to a spool once it is read)."""
        found: list[list[list[int]]] = []

        def read(columns: Sequence[str] | None) -> Iterator[pa.Table]:
            if not found:
                found.append(_runs(spool, order))
            return ordered(spool, order, columns, found[0])

        return cls(read, spool.schema)

    def __iter__(self) -> Iterator[pa.Table]:
        return iter(self._read(None))

    def columns(self, *names: str) -> Iterator[pa.Table]:
        """One pass over these columns only (Parquet projection)."""
        return iter(self._read(list(dict.fromkeys(names))))

    def read(self) -> pa.Table:
        """Every row at once (a test, or a caller that holds the run's rows anyway)."""
        return pa.concat_tables([self.schema.empty_table(), *(table.cast(self.schema) for table in self)])

    def count(self) -> int:
        return sum(table.num_rows for table in self.columns(*self.schema.names[:1]))
