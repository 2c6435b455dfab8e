"""JSON written as it is encoded, with lists whose items are made while they are written.

summary.json lists every image (``images``, ``roofline.images``): at 40,000 pages, Python objects
for those lists took 140 MiB and a copy of them as JSON-able values as much again. A ``RowStream``
stands for such a list and makes its items a slice at a time while ``write_json`` writes them.
The text is byte for byte that of ``json.dump(value, file, ensure_ascii=False, indent=2)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

INDENT = "  "


class RowStream:
    """A JSON list of ``count`` items, made by ``items()`` each time it is written (or iterated);
    an item holds no RowStream."""

    def __init__(self, count: int, items: Callable[[], Iterator[Any]]) -> None:
        self.count = count
        self._items = items

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        return self._items()


def iter_json(value: Any, level: int = 0) -> Iterator[str]:
    """``value`` as JSON text in pieces, as ``json.dumps(value, ensure_ascii=False, indent=2)``."""
    if isinstance(value, Mapping):
        if not value:
            yield "{}"
            return
        inner = "\n" + INDENT * (level + 1)
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON keys are strings here, not {type(key).__name__}: {key!r}")
            yield ("{" if first else ",") + inner + _scalar(key) + ": "
            yield from iter_json(item, level + 1)
            first = False
        yield "\n" + INDENT * level + "}"
    elif isinstance(value, list | tuple | RowStream):
        inner = "\n" + INDENT * (level + 1)
        # A RowStream's items hold no RowStream: each is encoded whole by the json module (the
        # text it gives at level 0, its lines indented to this level: the same bytes, 6x faster).
        whole = isinstance(value, RowStream)
        first = True
        for item in value:
            yield ("[" if first else ",") + inner
            if whole:
                yield json.dumps(item, ensure_ascii=False, indent=len(INDENT)).replace("\n", inner)
            else:
                yield from iter_json(item, level + 1)
            first = False
        yield "[]" if first else "\n" + INDENT * level + "]"
    else:
        yield _scalar(value)


def write_json(value: Any, file: TextIO) -> None:
    """Write ``value`` to ``file`` as it is encoded (``iter_json``), newline-terminated."""
    for piece in iter_json(value):
        file.write(piece)
    file.write("\n")


def _scalar(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
