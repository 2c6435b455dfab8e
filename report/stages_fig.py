"""Per image: stage time (vision, prefill_text, decode) stacked, on CPU and GPU busy time."""

from __future__ import annotations

import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.report._unavailable import Unavailable
from dsocr.report.inputs import RunInputs
from dsocr.report.style import STACKED_STAGES, STAGE_COLORS, TEMPLATE
from plotly.subplots import make_subplots

from dsocr.vocab import ImageStatus, Stage

#: (row title, timings column) of the measured rows; GPU rows only when the trace has device time.
CPU_ROW = ("CPU wall time of the ranges (ms)", "cpu_ms")
GPU_ROW = ("GPU busy time (ms)", "gpu_busy_ms")
ROW_HEIGHT = 260


def _ok(predictions: pa.Table) -> pa.Table:
    return predictions.filter(pc.equal(predictions["status"], ImageStatus.ok))


def _reference_rows(predictions: pa.Table) -> dict[str, dict[int, float | None]]:
    """Per stacked stage, image -> the capture's reference clock (prefill_text = prefill - vision)."""
    rows = _ok(predictions).to_pylist()
    text = {
        row["image_index"]: row["prefill_ms"] - row["vision_ms"]
        for row in rows
        if row["prefill_ms"] is not None and row["vision_ms"] is not None
    }
    return {
        Stage.vision: {row["image_index"]: row["vision_ms"] for row in rows},
        Stage.prefill_text: text,
        Stage.decode: {row["image_index"]: row["decode_ms"] for row in rows},
    }


def _measured_rows(timings: pa.Table, column: str) -> dict[str, dict[int, float | None]]:
    result: dict[str, dict[int, float | None]] = {stage: {} for stage in STACKED_STAGES}
    for row in timings.select(["image_index", "stage", column]).to_pylist():
        if row["stage"] in result:
            result[row["stage"]][row["image_index"]] = row[column]
    return result


def stage_figure(run: RunInputs) -> go.Figure | Unavailable:
    """Stacked stage bars per image: measured CPU and GPU rows, or the reference clock without a trace."""
    trace = run.summary.get("trace", {})
    rows: list[tuple[str, dict[str, dict[int, float | None]]]] = []
    if trace.get("present") and run.timings is not None:
        rows.append((CPU_ROW[0], _measured_rows(run.timings, CPU_ROW[1])))
        if trace.get("device_time"):
            rows.append((GPU_ROW[0], _measured_rows(run.timings, GPU_ROW[1])))
    else:
        why = trace.get("missing_reason") or run.missing.get("timings") or "no measured timings"
        rows.append((f"reference clock (ms); no trace: {why}", _reference_rows(run.predictions)))
    images = sorted({image for _, stages in rows for values in stages.values() for image in values})
    if not images:
        return Unavailable("no processed image has stage timings")
    labels = [f"img {image}" for image in images]
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, subplot_titles=[title for title, _ in rows])
    for row_number, (_, stages) in enumerate(rows, start=1):
        for stage in STACKED_STAGES:
            fig.add_trace(
                go.Bar(
                    x=labels,
                    y=[stages[stage].get(image) for image in images],
                    name=stage,
                    legendgroup=stage,
                    showlegend=row_number == 1,
                    marker_color=STAGE_COLORS[stage],
                    hovertemplate=f"%{{x}} {stage}: %{{y:.3f}} ms<extra></extra>",
                ),
                row=row_number,
                col=1,
            )
    note = "" if trace.get("device_time") or not trace.get("present") else " (no GPU activity in the trace)"
    fig.update_layout(
        template=TEMPLATE,
        barmode="stack",
        title={"text": f"Stage time per image: vision, prefill_text, decode{note}"},
        height=ROW_HEIGHT * len(rows) + 80,
    )
    return fig
