"""Per image: each traced decode step split into GPU busy time and the rest of the step (GPU idle)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from dsocr.report._unavailable import Unavailable
from dsocr.report.inputs import RunInputs
from dsocr.report.selector import MAX_IMAGES, Choice, add_selector
from dsocr.report.series import bucket_mean, points_per_series
from dsocr.report.style import BUSY_COLOR, IDLE_COLOR, figure


def gpu_steps_figure(run: RunInputs) -> go.Figure | Unavailable:
    """Stacked bars per traced step: GPU busy, and idle = the step's CPU wall time minus busy."""
    steps = run.steps
    if steps is None:
        return Unavailable(run.missing.get("steps", "no per-step table"))
    if steps.num_rows == 0:
        return Unavailable("the trace holds no decode-step range")
    if not run.summary.get("trace", {}).get("device_time") or steps["gpu_busy_ms"].null_count == steps.num_rows:
        return Unavailable("the trace has no GPU activity (a CPU run): nothing ran on a GPU")
    fig = figure("", barmode="stack", bargap=0, xaxis_title="decode step K", yaxis_title="ms")
    choices = []
    table = steps.sort_by([("image_index", "ascending"), ("step", "ascending")])
    images = table["image_index"].to_numpy()
    bounds = np.flatnonzero(np.diff(images)) + 1
    columns = [
        np.split(array, bounds)
        for array in (
            images,
            table["step"].to_numpy(),
            table["wall_ms"].to_numpy(zero_copy_only=False),
            table["gpu_busy_ms"].fill_null(0).to_numpy(),
        )
    ]
    groups = list(zip(*columns, strict=True))[:MAX_IMAGES]
    budget = points_per_series(2 * len(groups))  # two bar series per image
    slots = [
        go.Bar(name=name, marker_color=color, hovertemplate=f"step %{{x}} {name}: %{{y:.3f}} ms<extra></extra>")
        for name, color in (("GPU busy", BUSY_COLOR), ("GPU idle", IDLE_COLOR))
    ]
    for image_ids, numbers, wall, busy in groups:
        image = int(image_ids[0])
        x, (busy_shown, idle_shown), total = bucket_mean(numbers, [busy, np.maximum(wall - busy, 0)], budget)
        idle_share = 1 - busy.sum() / wall.sum() if wall.sum() > 0 else float("nan")
        title = f"GPU busy vs idle per traced step, img {image}: idle {idle_share:.0%} of {wall.sum():.1f} ms"
        if x.size < total:
            title += f"<br>downsampled: {x.size} bars of {total} steps, mean per bucket"
        choices.append(Choice(f"img {image}", [x, x], [busy_shown, idle_shown], {"title": {"text": title}}))
    add_selector(fig, slots, choices)
    return fig
