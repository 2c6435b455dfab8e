"""The box lists of DeepSeek-OCR's ``<|det|>`` blocks, parsed as literals (never ``eval``).

A box list reads ``[[x1, y1, x2, y2], [x1, y1, x2, y2], ...]`` with coordinates normalized
to 0..scale of the original image (the family's coordinate scale: 999 for DeepSeek-OCR).
Each innermost ``[...]`` group is one box; a bad box is clamped or skipped with a warning,
never an exception.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dsocr.emit._warnings import WarningList, quote

from dsocr.families import DEEPSEEK_OCR2

#: DeepSeek-OCR writes coordinates as integers 0..999 of the original image (the default scale).
NORM_MAX = DEEPSEEK_OCR2.coordinate_scale or 0
BOX_ARITY = 4

# An innermost bracket group: one box. Linear-time on any input (no nested quantifiers).
_GROUP = re.compile(r"\[([^\[\]]*)\]")
# A plain decimal literal: no underscores, no 'nan'/'inf' words, which float() would accept.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# What may surround the groups of a well-formed list.
_LIST_PUNCTUATION = re.compile(r"[\s\[\],]+")

Coordinate = int | float


@dataclass(frozen=True)
class NormBox:
    """One box in normalized coordinates (0..scale), ordered (x1 <= x2, y1 <= y2) and in range."""

    x1: Coordinate
    y1: Coordinate
    x2: Coordinate
    y2: Coordinate

    def as_list(self) -> list[Coordinate]:
        """``[x1, y1, x2, y2]`` as the model wrote them (after clamping)."""
        return [self.x1, self.y1, self.x2, self.y2]

    def to_pixels(self, width: int, height: int, scale: int = NORM_MAX) -> tuple[int, int, int, int]:
        """Pixel box on a ``width`` x ``height`` image, by the vendor's ``int(v / 999 * size)``."""
        return (
            int(self.x1 / scale * width),
            int(self.y1 / scale * height),
            int(self.x2 / scale * width),
            int(self.y2 / scale * height),
        )


@dataclass(frozen=True)
class BoxList:
    """The boxes of one ``<|det|>`` block, and how many were left out for the box budget."""

    boxes: tuple[NormBox, ...]
    over_budget: int


def _coordinate(token: str) -> Coordinate | None:
    """The number ``token`` spells, or None when it is not a finite decimal literal."""
    token = token.strip()
    if not _NUMBER.fullmatch(token):
        return None
    value = float(token)  # float, not int: int() refuses strings over 4300 digits
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


def _clamp(value: Coordinate, scale: int) -> Coordinate:
    return min(max(value, 0), scale)


def _parse_box(inner: str, label: str, scale: int, warnings: WarningList) -> NormBox | None:
    """One box from the inside of a ``[...]`` group, or None (with a warning) when unusable."""
    items = inner.split(",")
    if len(items) != BOX_ARITY:
        warnings.add(f"box {quote(inner)} of {quote(label)} has {len(items)} values, not {BOX_ARITY}: skipped")
        return None
    values = [_coordinate(item) for item in items]
    if any(value is None for value in values):
        warnings.add(f"box {quote(inner)} of {quote(label)} has a non-numeric or non-finite value: skipped")
        return None
    clamped = [_clamp(value, scale) for value in values if value is not None]
    if clamped != values:
        warnings.add(f"box {quote(inner)} of {quote(label)} is outside 0..{scale}: clamped")
    x1, y1, x2, y2 = clamped
    if x2 < x1 or y2 < y1:
        warnings.add(f"box {quote(inner)} of {quote(label)} has x2 < x1 or y2 < y1: skipped")
        return None
    return NormBox(x1, y1, x2, y2)


def parse_box_list(content: str, *, label: str, budget: int, warnings: WarningList, scale: int = NORM_MAX) -> BoxList:
    """The boxes written inside one ``<|det|>...<|/det|>``, in coordinates 0..``scale``.

    ``budget`` is how many more boxes the image may hold; groups beyond it are counted in
    ``over_budget`` and not parsed, so a model stuck in a loop cannot make emit slow.
    """
    boxes: list[NormBox] = []
    groups = over_budget = 0
    for match in _GROUP.finditer(content):
        groups += 1
        if len(boxes) >= budget:
            over_budget += 1
            continue
        box = _parse_box(match.group(1), label, scale, warnings)
        if box is not None:
            boxes.append(box)
    stray = _LIST_PUNCTUATION.sub("", _GROUP.sub("", content))
    if stray:
        warnings.add(f"box list of {quote(label)} holds text outside boxes: {quote(stray)} ignored")
    if not groups:
        warnings.add(f"box list {quote(content)} of {quote(label)} holds no box")
    return BoxList(tuple(boxes), over_budget)
