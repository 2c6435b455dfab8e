"""The roofline: achieved TFLOP/s against arithmetic intensity, under the device's two roofs.

Reads ``summary.json: roofline`` (written by analyze where it knows the model's FLOPs and the
device's peaks): ``roofline.device`` (``peak_tflops``, ``peak_gbps``), ``roofline.<stage>``
over the run and ``roofline.images[].<stage>`` per image, each with ``flops``, ``bytes`` and
``achieved_tflops`` (on GPU busy time) / ``achieved_tflops_wall``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from dsocr.report._unavailable import Unavailable
from dsocr.report.style import STAGE_COLORS, figure

from dsocr.vocab import TIME_STAGES, Stage

#: (achieved key, what it divides by, marker) plotted per stage over the run.
RATES = (("achieved_tflops", "GPU busy time", "circle"), ("achieved_tflops_wall", "wall time", "circle-open"))
TFLOPS_PER_GFLOPS = 1e-3
RUN_MARKER, IMAGE_MARKER = 13, 6
#: Images drawn as points; beyond, the first ones (the run-level points cover all images).
MAX_IMAGES = 2000


def _point(figures: Any, key: str) -> tuple[float, float] | None:
    """(FLOP per byte, TFLOP/s) of one stage's figures, or None when any part is unknown."""
    if not isinstance(figures, dict):
        return None
    flops, size, achieved = figures.get("flops"), figures.get("bytes"), figures.get(key)
    if not all(isinstance(value, int | float) for value in (flops, size, achieved)) or not size or not achieved:
        return None
    return flops / size, float(achieved)


def _roofs(fig: go.Figure, tflops: float, gbps: float, intensities: list[float]) -> None:
    ridge = tflops / (gbps * TFLOPS_PER_GFLOPS)
    x = np.geomspace(min([*intensities, ridge]) / 10, max([*intensities, ridge]) * 10, 64)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=np.minimum(tflops, x * gbps * TFLOPS_PER_GFLOPS),
            mode="lines",
            name=f"roof: {tflops:g} TFLOP/s, {gbps:g} GB/s",
            line={"color": "black", "width": 2},
            hovertemplate="roof at %{x:.2f} FLOP/B: %{y:.1f} TFLOP/s<extra></extra>",
        )
    )


def roofline_figure(summary: dict[str, Any]) -> go.Figure | Unavailable:
    """Run-level points per stage (busy and wall), per-image points, under the roofs."""
    roofline = summary.get("roofline")
    if not isinstance(roofline, dict):
        return Unavailable("this analysis has no roofline section (analyze adds it when it knows the model's FLOPs)")
    device = roofline.get("device") or {}
    tflops, gbps = device.get("peak_tflops"), device.get("peak_gbps")
    if not (isinstance(tflops, int | float) and isinstance(gbps, int | float) and tflops > 0 and gbps > 0):
        # Points without a roof place no stage against anything: one line says so instead.
        why = device.get("reason") or roofline.get("reason") or "device peaks unknown"
        return Unavailable(f"no roofline: the device's peaks are unknown ({why}); points without a roof say nothing")
    traces, intensities = [], []
    for stage in TIME_STAGES:
        per = " per token" if stage == Stage.decode else ""
        for key, divisor, symbol in RATES:
            point = _point(roofline.get(stage), key)
            if point is not None:
                intensities.append(point[0])
                traces.append(
                    go.Scatter(
                        x=[point[0]],
                        y=[point[1]],
                        mode="markers",
                        name=f"{stage}{per}, all images, on {divisor}",
                        marker={"color": STAGE_COLORS[stage], "size": RUN_MARKER, "symbol": symbol},
                        hovertemplate=f"{stage} on {divisor}: %{{x:.2f}} FLOP/B, %{{y:.4f}} TFLOP/s<extra></extra>",
                    )
                )
        per_image = [
            _point(image.get(stage), "achieved_tflops") for image in (roofline.get("images") or [])[:MAX_IMAGES]
        ]
        per_image = [point for point in per_image if point is not None]
        if per_image:
            x, y = zip(*per_image, strict=True)
            intensities.extend(x)
            traces.append(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="markers",
                    name=f"{stage}, per image",
                    opacity=0.5,
                    marker={"color": STAGE_COLORS[stage], "size": IMAGE_MARKER},
                    hovertemplate=f"{stage}, one image: %{{x:.2f}} FLOP/B, %{{y:.4f}} TFLOP/s<extra></extra>",
                )
            )
    if not traces:
        reason = roofline.get("reason") or (roofline.get("device") or {}).get("reason")
        return Unavailable(f"no stage has FLOPs, bytes and a GPU time{f': {reason}' if reason else ''}")
    name = device.get("matched") or device.get("device_name") or "device"
    fig = figure(
        f"Roofline on {name}: achieved TFLOP/s against FLOP per byte",
        xaxis={"type": "log", "title": {"text": "arithmetic intensity (FLOP / byte)"}},
        yaxis={"type": "log", "title": {"text": "TFLOP/s"}},
        height=480,
    )
    _roofs(fig, float(tflops), float(gbps), intensities)
    fig.add_traces(traces)
    return fig
