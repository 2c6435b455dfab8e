"""Per stage: the top kernels, GPU operators and CPU operators as horizontal bars."""

from __future__ import annotations

import plotly.graph_objects as go
from dsocr.report._unavailable import Unavailable
from dsocr.report.inputs import RunInputs
from dsocr.report.style import STAGE_COLORS, TEMPLATE, short
from plotly.subplots import make_subplots

from dsocr.vocab import TIME_STAGES, KernelKind

#: prefill (vision + prefill_text) is left out: its kernels are those two stages'.
STAGE_ORDER = TIME_STAGES
#: kind -> (figure title, what the bars measure)
KINDS = {
    KernelKind.kernel: ("Top kernels per stage", "GPU time, ms"),
    KernelKind.operator: ("Top operators per stage by the GPU time they launched", "GPU time, ms"),
    KernelKind.cpu_operator: ("Top CPU operators per stage", "CPU self time, ms"),
}
SHOWN = 10
HOVER = (
    "%{customdata[0]}<br>%{x:.3f} ms, %{customdata[1]} calls, mean %{customdata[2]:.1f} µs,"
    " %{customdata[3]:.1f}% of the stage<extra></extra>"
)
BAR_HEIGHT = 20
STAGE_PADDING = 70


def top_rows(run: RunInputs) -> list[dict]:
    """kernels.parquet rows, or summary.json's ``top`` (the same rows) when the file is absent."""
    if run.kernels is not None:
        return run.kernels.to_pylist()
    return list(run.summary.get("top") or [])


def _decode_coverage(run: RunInputs) -> str:
    """How much of decode the totals cover: "N of M steps traced"."""
    trace = ((run.summary.get("stages") or {}).get("decode") or {}).get("trace") or {}
    return f"{trace.get('steps_traced', 0)} of {trace.get('steps_total', 0)} steps traced"


def top_figures(run: RunInputs) -> list[go.Figure] | Unavailable:
    """One figure per kind present, one subplot per stage."""
    rows = top_rows(run)
    if not rows:
        return Unavailable("the analysis has no kernel or operator rows (no trace)")
    figures = []
    for kind, (title, measure) in KINDS.items():
        by_stage = {
            stage: [row for row in rows if row["kind"] == kind and row["stage"] == stage][:SHOWN]
            for stage in STAGE_ORDER
        }
        stages = [stage for stage in STAGE_ORDER if by_stage[stage]]
        if not stages:
            continue
        heights = [len(by_stage[stage]) * BAR_HEIGHT + STAGE_PADDING for stage in stages]
        fig = make_subplots(
            rows=len(stages), cols=1, subplot_titles=stages, row_heights=heights, vertical_spacing=0.3 / len(stages)
        )
        for number, stage in enumerate(stages, start=1):
            top = by_stage[stage][::-1]  # largest at the top
            fig.add_trace(
                go.Bar(
                    x=[row["total_ms_traced"] for row in top],
                    y=[f"{len(top) - position}. {short(row['name'])}" for position, row in enumerate(top)],
                    orientation="h",
                    marker_color=STAGE_COLORS[stage],
                    showlegend=False,
                    customdata=[[row["name"], row["calls"], row["mean_us"], row["share"] * 100] for row in top],
                    hovertemplate=HOVER,
                ),
                row=number,
                col=1,
            )
            fig.update_xaxes(title_text=measure, row=number, col=1)
        fig.update_layout(
            template=TEMPLATE,
            title={"text": f"{title} ({measure}, all images; decode: {_decode_coverage(run)})"},
            height=sum(heights) + 80,
            margin={"l": 420},
        )
        figures.append(fig)
    return figures or Unavailable("no kernel or operator rows of a known kind")
