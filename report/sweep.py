"""A sweep on one page: each variant's ratio to the baseline per figure, with its noise band.

The table comes from `dsocr sweep` (analyze's sweep table, passed in by the CLI); this module
only draws it, so the page and the terminal show the same numbers.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from dsocr.report.build import ReportResult
from dsocr.report.glance import esc
from dsocr.report.page import Section, render_page
from dsocr.report.style import FIGURE_HEIGHT, TEMPLATE
from plotly.subplots import make_subplots

from dsocr import rundir

REPORT_FILE = "report.html"
POINT_COLOR, FAILED_COLOR = "#4c78a8", "#e45756"
#: Height of the ratio figure per variant row, beyond the figure's margins.
ROW_PX = 28


def default_sweep_output(sweep_dir: Path) -> Path:
    return sweep_dir / REPORT_FILE


def ratio_figure(table: dict[str, Any]) -> go.Figure:
    """One panel per figure: each variant's ratio to the baseline as a point, its noise band as
    an error bar, the baseline's 1.0 as a line; variants that could not run are listed, not drawn."""
    figures = table["figures"]
    variants = [row for row in table["variants"] if not row["baseline"]]
    names = [row["variant"] for row in variants]
    fig = make_subplots(rows=1, cols=len(figures), shared_yaxes=True, subplot_titles=[f["label"] for f in figures])
    for column, figure in enumerate(figures, start=1):
        xs, bands, ys, texts = [], [], [], []
        for row in variants:
            cell = row["figures"].get(figure["name"]) or {}
            if cell.get("ratio") is None:
                continue
            xs.append(cell["ratio"])
            bands.append(cell["band"] or 0.0)
            ys.append(row["variant"])
            texts.append(f"{cell['ratio']:.3f}x ±{(cell['band'] or 0):.3f}: {cell['verdict']}")
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                marker={"color": POINT_COLOR, "size": 9},
                error_x={"type": "data", "array": bands, "visible": True},
                text=texts,
                hovertemplate="%{y}<br>%{text}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        fig.add_vline(x=1.0, line={"color": "#999", "dash": "dot"}, row=1, col=column)
    fig.update_yaxes(categoryorder="array", categoryarray=names[::-1], type="category")
    fig.update_layout(
        template=TEMPLATE,
        title={"text": f"ratio to the baseline ({html.escape(table['baseline'])}), ± noise band"},
        height=max(FIGURE_HEIGHT, ROW_PX * len(names) + 160),
    )
    return fig


def table_html(table: dict[str, Any]) -> str:
    """The sweep table: the baseline's figures in their units, the others as ratio ± band and verdict."""
    figures = table["figures"]
    head = "".join(f"<th>{html.escape(f['label'])}</th>" for f in figures)
    rows = []
    for row in table["variants"]:
        name = f"<td><code>{esc(row['variant'])}</code></td><td>{len(row['runs'])}</td>"
        if row["reason"] is not None:
            rows.append(f"<tr>{name}<td colspan='{len(figures) + 1}'>cannot run: {esc(row['reason'])}</td></tr>")
            continue
        cells = []
        for figure in figures:
            cell = row["figures"].get(figure["name"]) or {}
            if row["baseline"]:
                value = cell.get("baseline")
                text = None if value is None else f"{value:,.2f} {figure['unit']}"
                cells.append(f"<td>{esc(text)}</td>")
            elif cell.get("ratio") is None:
                cells.append(f"<td>{esc(None)}</td>")
            else:
                floor = "" if cell.get("band_measured") else "*"
                cells.append(f"<td>{cell['ratio']:.3f}x ±{cell['band']:.3f}{floor} {esc(cell['verdict'])}</td>")
        verdict = "baseline" if row["baseline"] else row["verdict"]
        rows.append(f"<tr>{name}{''.join(cells)}<td>{esc(verdict)}</td></tr>")
    return f"<table><thead><tr><th>variant</th><th>runs</th>{head}<th>verdict</th></tr></thead>{''.join(rows)}</table>"


def runs_html(table: dict[str, Any]) -> str:
    """Every run in the order it ran, with its directory (each has its own analysis and report)."""
    items = "".join(f"<li><code>{esc(entry)}</code></li>" for entry in table["order"])
    dirs = "".join(
        f"<li><code>{esc(row['variant'])}</code>: {esc(', '.join(row['runs']) or None)}"
        + "".join(f" — failed {esc(run['run_dir'])}: {esc(run['reason'])}" for run in row["failed_runs"])
        + "</li>"
        for row in table["variants"]
    )
    return f"<p>Order (forward, then backward):</p><ol>{items}</ol><p>Run directories:</p><ul>{dirs}</ul>"


def build_sweep_report(sweep_dir: Path, table: dict[str, Any], *, output: Path | None = None) -> ReportResult:
    """Write the page of a sweep (``table``: analyze's sweep table of ``sweep_dir``) atomically."""
    started = time.perf_counter()
    path = output or default_sweep_output(sweep_dir)
    intro = (
        f"Ratios: variant / baseline, medians over {table['repeats']} repeat(s) x {table['images']} page(s), "
        f"captures under --profile {html.escape(table['profile'])}; the band is dsocr compare's noise rule "
        "(* one value a side: the band is its noise floor alone, no spread was measured)."
    )
    sections = [
        Section("Variants against the baseline", table_html(table), intro=intro),
        Section("Ratio per variant", ratio_figure(table)),
        Section("Runs", runs_html(table)),
    ]
    page = render_page(f"dsocr sweep: {sweep_dir.name}", sections).encode("utf-8")
    rundir.write_bytes_atomic(path, page)
    return ReportResult(path=path, bytes=len(page), seconds=time.perf_counter() - started)
