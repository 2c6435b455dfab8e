"""Where the time goes, per image: vision, prefill_text, decode and other stacked on the reference
clock (every decode step, every profile mode): the bar is the image's wall time."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dsocr.report._unavailable import Unavailable
from dsocr.report.inputs import RunInputs
from dsocr.report.style import CLOCK_PARTS, STAGE_COLORS, TEMPLATE

from dsocr.vocab import OTHER_MEANING

#: summary.json images[] figure of each stacked part.
PART_FIGURE = {part: f"{part}_ms" for part in CLOCK_PARTS}
IMAGE_FIGURE = "image_ms"
ROW_HEIGHT = 380


def stage_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The images with clock stages (summary.json images[]), in image order."""
    images = [row for row in summary.get("images") or [] if row.get("decode_ms") is not None]
    return sorted(images, key=lambda row: (row.get("image_index"), row.get("rank") or 0))


def stage_figure(run: RunInputs) -> go.Figure | Unavailable:
    """Stacked clock stages per image; the bar's top is the image's wall time (where recorded)."""
    images = stage_rows(run.summary)
    if not images:
        return Unavailable("no processed image has reference-clock stage times")
    labels = [f"img {row['image_index']}" for row in images]
    clocks = ", ".join(run.summary.get("trace", {}).get("timing_clocks") or []) or "reference clock"
    fig = go.Figure()
    for part in CLOCK_PARTS:
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[row.get(PART_FIGURE[part]) for row in images],
                name=part,
                marker_color=STAGE_COLORS[part],
                hovertemplate=f"%{{x}} {part}: %{{y:.3f}} ms<extra></extra>",
            )
        )
    missing_wall = sum(1 for row in images if row.get(IMAGE_FIGURE) is None)
    note = f"; {missing_wall} image(s) without a recorded wall time (no 'other')" if missing_wall else ""
    fig.update_layout(
        template=TEMPLATE,
        barmode="stack",
        title={
            "text": f"Where the time goes: ms per image on the {clocks} clock, every decode step"
            f"<br><sup>vision + prefill_text (= TTFT) + decode + other = the image's wall time;"
            f" {OTHER_MEANING}{note}</sup>"
        },
        yaxis={"title": {"text": "ms"}},
        height=ROW_HEIGHT,
    )
    return fig
