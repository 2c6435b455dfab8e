"""A dropdown that swaps one image's data into a fixed set of traces, so one figure serves a run
of any size: each image's arrays are in the page once (in its button), never a visibility list
per image and trace (that grows with the square of the images)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go

#: Images listed in a selector; a longer run shows its first images and says so.
MAX_IMAGES = 500
#: Decimals kept for values written as JSON in the buttons (ms: 1 µs).
DECIMALS = 3


@dataclass(frozen=True)
class Choice:
    """One dropdown entry: per trace slot, in order, its x and y; and its layout (title, shapes)."""

    label: str
    x: list[np.ndarray]
    y: list[np.ndarray]
    layout: dict[str, Any] = field(default_factory=dict)


def _json_values(values: np.ndarray) -> list[Any]:
    """Plain JSON numbers (NaN as null), rounded so the page stays small."""
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return values.tolist()
    rounded = np.round(values.astype(np.float64), DECIMALS)
    return [None if np.isnan(value) else value for value in rounded.tolist()]


def add_selector(fig: go.Figure, slots: list[go.Scatter | go.Bar], choices: list[Choice]) -> None:
    """Add the slot traces holding the first choice; with two or more, a dropdown swaps the data in."""
    first = choices[0]
    for slot, x, y in zip(slots, first.x, first.y, strict=True):
        slot.x, slot.y = x, np.asarray(y, dtype=np.float32)
        fig.add_trace(slot)
    fig.update_layout(**first.layout)
    if len(choices) < 2:
        return
    buttons = [
        {
            "label": choice.label,
            "method": "update",
            "args": [
                {"x": [_json_values(x) for x in choice.x], "y": [_json_values(y) for y in choice.y]},
                choice.layout,
            ],
        }
        for choice in choices
    ]
    fig.update_layout(updatemenus=[{"buttons": buttons, "direction": "down", "x": 1.0, "xanchor": "right", "y": 1.18}])
