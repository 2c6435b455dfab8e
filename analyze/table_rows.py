"""Rows as Python objects, made a slice at a time: what summary.json lists per image (``images``,
``roofline.images``) without a Python object per image, or a row, held for the whole run."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import numpy as np
import pyarrow as pa
from dsocr.analyze.ordered import Slices

#: Items made together when iterating: one Arrow-to-Python conversion per slice.
SLICE_ITEMS = 1024


def _single_row(rows: list[dict[str, Any]]) -> Any:
    return rows[0]


class SliceRows(Sequence[Any]):
    """A sequence of items made from a table read a slice at a time (``Slices``): one row per
    item as a dict, or (``group``) the consecutive rows that share those columns, made by
    ``make``. Holds no row between passes; its length is counted by a pass of its own."""

    def __init__(
        self,
        slices: Slices,
        group: tuple[str, ...] | None = None,
        make: Callable[[list[dict[str, Any]]], Any] = _single_row,
    ) -> None:
        self.slices = slices
        self.group = group
        self.make = make
        self._length: int | None = None

    def __len__(self) -> int:
        if self._length is None:
            if self.group is None:
                self._length = self.slices.count()
            else:
                self._length = sum(1 for _ in self._groups(self.slices.columns(*self.group)))
        return self._length

    def _groups(self, tables: Iterator[pa.Table]) -> Iterator[list[dict[str, Any]]]:
        """Each item's rows: one row, or the consecutive rows sharing ``group`` (an item may
        continue from one table into the next)."""
        pending: list[dict[str, Any]] = []
        last_key: tuple[Any, ...] | None = None
        for table in tables:
            for batch in table.to_batches(max_chunksize=SLICE_ITEMS):
                rows = batch.to_pylist()
                if self.group is None:
                    for row in rows:
                        yield [row]
                    continue
                keys = [batch.column(name).to_numpy(zero_copy_only=False) for name in self.group]
                new = np.zeros(len(rows), dtype=bool)
                for column in keys:
                    new[1:] |= column[1:] != column[:-1]
                first_key = tuple(column[0] for column in keys) if rows else None
                new[:1] = last_key is not None and first_key != last_key
                starts = [*np.flatnonzero(new).tolist(), len(rows)]
                if starts[0] > 0:  # the rows before the first new item continue the pending one
                    pending += rows[: starts[0]]
                for start, end in itertools.pairwise(starts):
                    if pending:
                        yield pending
                    pending = rows[start:end]
                if rows:
                    last_key = tuple(column[-1] for column in keys)
        if pending:
            yield pending

    def __iter__(self) -> Iterator[Any]:
        for rows in self._groups(iter(self.slices)):
            yield self.make(rows)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        """By a pass over the items (random access is for tests and small runs)."""
        if isinstance(index, slice):
            return list(self)[index]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"item {index} of {len(self)}")
        for number, item in enumerate(self):
            if number == position:
                return item
        raise IndexError(f"item {index} of {len(self)}")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SliceRows({len(self)} items)"
