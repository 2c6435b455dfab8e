"""Per image: per-token latency over the decode steps, traced windows shaded, cold steps marked."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from dsocr.report._unavailable import Unavailable
from dsocr.report.inputs import RunInputs
from dsocr.report.selector import MAX_IMAGES, Choice, add_selector
from dsocr.report.series import MAX_POINTS, Series, min_max, points_per_series
from dsocr.report.steps_data import ImageSteps, image_steps, windows
from dsocr.report.style import COLD_COLOR, RUN_COLORS, TRACED_FILL, figure

#: Shaded windows drawn per image; a sampled run of tens of thousands of steps keeps the first ones.
MAX_WINDOWS = 300


def _shapes(image: ImageSteps) -> list[dict]:
    return [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": first - 0.5,
            "x1": last + 0.5,
            "y0": 0,
            "y1": 1,
            "fillcolor": TRACED_FILL,
            "line": {"width": 0},
            "layer": "below",
        }
        for first, last in windows(image.traced)[:MAX_WINDOWS]
    ]


def _title(image: ImageSteps, shown: int) -> str:
    parts = [f"Per-token latency, {image.label} (reference clock; shaded: steps in the torch trace)"]
    if shown < image.step_ms.size:
        parts.append(f"downsampled: {shown} of {image.step_ms.size} steps, min and max per bucket")
    if image.cold is None:
        parts.append("cold steps: not recorded by this capture")
    return "<br>".join(parts)


def line_slot(name: str, color: str) -> go.Scatter:
    return go.Scatter(
        mode="lines",
        name=name,
        line={"color": color, "width": 1},
        hovertemplate="step %{x}: %{y:.3f} ms<extra></extra>",
    )


def cold_slot(name: str) -> go.Scatter:
    return go.Scatter(
        mode="markers",
        name=f"{name}: cold steps",
        marker={"color": COLD_COLOR, "symbol": "x", "size": 7},
        hovertemplate="cold step %{x}: %{y:.3f} ms<extra></extra>",
    )


def image_series(image: ImageSteps, max_points: int = MAX_POINTS) -> tuple[Series, tuple[np.ndarray, np.ndarray]]:
    """The (downsampled) latency line of one image, and its cold steps (x, y; empty when none)."""
    steps = np.arange(1, image.step_ms.size + 1, dtype=np.int32)
    cold = np.flatnonzero(image.cold[: image.step_ms.size]) if image.cold is not None else np.zeros(0, np.int64)
    return min_max(steps, image.step_ms, max_points), ((cold + 1).astype(np.int32), image.step_ms[cold])


def latency_figure(run: RunInputs) -> go.Figure | Unavailable:
    """One figure; a dropdown picks the image when the run has several."""
    every_image = image_steps(run)
    images = every_image[:MAX_IMAGES]
    if not images:
        return Unavailable("no processed image has decode steps (one generated token, or every image failed)")
    fig = figure("", xaxis_title="decode step K (token K to token K+1)", yaxis_title="ms")
    with_cold = any(image.cold is not None for image in images)
    slots = [line_slot("step latency", RUN_COLORS[0]), *([cold_slot("step latency")] if with_cold else [])]
    budget = points_per_series(len(images))
    choices = []
    for image in images:
        line, (cold_x, cold_y) = image_series(image, budget)
        layout = {"shapes": _shapes(image), "title": {"text": _title(image, line.x.size)}}
        xs, ys = [line.x, cold_x][: len(slots)], [line.y, cold_y][: len(slots)]
        choices.append(Choice(image.label, xs, ys, layout))
    add_selector(fig, slots, choices)
    if len(every_image) > MAX_IMAGES:
        fig.add_annotation(
            text=f"first {MAX_IMAGES} of {len(every_image)} images",
            xref="paper",
            yref="paper",
            x=0,
            y=1.1,
            showarrow=False,
        )
    return fig
