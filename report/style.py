"""One look for every figure: a small plotly template (the default one weighs ~7 KB per figure)."""

from __future__ import annotations

import plotly.graph_objects as go

from dsocr.vocab import OTHER, Stage

#: Stages stacked in the stage bars: with other (the remainder) they add up to the image.
STACKED_STAGES = (Stage.vision, Stage.prefill_text, Stage.decode)
#: The clock parts of an image, stacked in "where the time goes".
CLOCK_PARTS = (*STACKED_STAGES, OTHER)
STAGE_COLORS = {
    OTHER: "#bab0ac",
    Stage.vision: "#4c78a8",
    Stage.prefill_text: "#f58518",
    Stage.prefill: "#e45756",
    Stage.decode: "#54a24b",
}
RUN_COLORS = ("#4c78a8", "#e45756")
BUSY_COLOR, IDLE_COLOR = "#54a24b", "#d3d3d3"
TRACED_FILL = "rgba(84,162,75,0.15)"
COLD_COLOR = "#e45756"
NAME_CHARS = 60
FIGURE_HEIGHT = 360

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font={"family": "system-ui, sans-serif", "size": 12},
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin={"l": 60, "r": 20, "t": 90, "b": 50},
        title={"x": 0.01, "xanchor": "left", "font": {"size": 14}},
        xaxis={"gridcolor": "#eee", "zeroline": False},
        yaxis={"gridcolor": "#eee", "zeroline": False},
        legend={"orientation": "h", "y": -0.2},
        height=FIGURE_HEIGHT,
    )
)


def figure(title: str, **layout: object) -> go.Figure:
    """An empty figure in the report's template."""
    return go.Figure(layout=go.Layout(template=TEMPLATE, title={"text": title}, **layout))


def short(name: str) -> str:
    """A kernel or operator name cut to fit an axis (the hover shows it whole)."""
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"
