"""An Arrow table's rows as Python objects, made a slice at a time: what summary.json lists per
image (``images``, ``roofline.images``) without a Python object per image held for the whole run."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import numpy as np
import pyarrow as pa

#: Items made together when iterating: one Arrow-to-Python conversion per slice.
SLICE_ITEMS = 1024


def _single_row(rows: list[dict[str, Any]]) -> Any:
    return rows[0]


class TableRows(Sequence[Any]):
    """A sequence of items, item ``k`` made by ``make`` from ``table``'s rows ``starts[k]`` to
    ``starts[k + 1]`` (default: one row per item, as a dict). Holds the table, never the items."""

    def __init__(
        self,
        table: pa.Table,
        starts: np.ndarray | None = None,
        make: Callable[[list[dict[str, Any]]], Any] = _single_row,
    ) -> None:
        self.table = table
        self.starts = np.arange(table.num_rows + 1) if starts is None else starts
        self.make = make

    def __len__(self) -> int:
        return int(self.starts.size) - 1

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"item {index} of {len(self)}")
        first, end = int(self.starts[position]), int(self.starts[position + 1])
        return self.make(self.table.slice(first, end - first).to_pylist())

    def __iter__(self) -> Iterator[Any]:
        count = len(self)
        for first in range(0, count, SLICE_ITEMS):
            last = min(count, first + SLICE_ITEMS)
            base = int(self.starts[first])
            rows = self.table.slice(base, int(self.starts[last]) - base).to_pylist()
            for position in range(first, last):
                yield self.make(rows[int(self.starts[position]) - base : int(self.starts[position + 1]) - base])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TableRows({len(self)} items)"
