"""Two runs overlaid on one page: facts side by side, stage medians, step latency, top kernels."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from dsocr.report._unavailable import Unavailable
from dsocr.report.glance import config_options, esc, facts, findings_html
from dsocr.report.inputs import RunInputs
from dsocr.report.latency_fig import cold_slot, image_series, line_slot
from dsocr.report.page import Section
from dsocr.report.selector import MAX_IMAGES, Choice, add_selector
from dsocr.report.series import points_per_series
from dsocr.report.steps_data import image_steps
from dsocr.report.style import CLOCK_PARTS, RUN_COLORS, TEMPLATE, figure, short
from dsocr.report.top_fig import STAGE_ORDER, top_rows
from dsocr.report.verdicts import verdicts_html
from plotly.subplots import make_subplots

from dsocr.vocab import KernelKind

#: (row title, summary.json stage figure) compared per stage.
MEASURES = (("reference clock, every decode step (ms)", "clock_ms"),)
HISTOGRAM_BINS = 60
SHOWN = 8


def _labels(a: RunInputs, b: RunInputs) -> tuple[str, str]:
    names = (a.name, b.name)
    return (f"A: {names[0]}", f"B: {names[1]}") if names[0] != names[1] else ("A", "B")


def facts_html(a: RunInputs, b: RunInputs) -> str:
    """Facts and options of both runs in one table; rows that differ come first, in bold."""
    rows_a, rows_b = dict(facts(a)), dict(facts(b))
    config_a, config_b = config_options(a.run), config_options(b.run)
    keys = [(key, rows_a.get(key), rows_b.get(key)) for key in rows_a]
    keys += [(f"option {k}", config_a.get(k), config_b.get(k)) for k in sorted(set(config_a) | set(config_b))]
    first = [row for row in keys if row[0] == "run"]
    differing = [row for row in keys if row[1] != row[2] and row not in first]
    same = [row for row in keys if row not in differing and row not in first]
    label_a, label_b = _labels(a, b)
    body = "".join(
        f"<tr><th>{_bold(html.escape(row[0]), row in differing)}</th><td>{esc(row[1])}</td><td>{esc(row[2])}</td></tr>"
        for row in first + differing + same
    )
    head = f"<tr><th></th><th>{html.escape(label_a)}</th><th>{html.escape(label_b)}</th></tr>"
    return f'<table class="kv"><thead>{head}</thead>{body}</table>'


def _bold(text: str, bold: bool) -> str:
    return f"<b>{text}</b>" if bold else text


def stage_medians_figure(a: RunInputs, b: RunInputs) -> go.Figure | Unavailable:
    """Per stage, the median across images of each run, whiskers up to the p90."""
    rows = [
        (title, key)
        for title, key in MEASURES
        if any(
            (run.summary.get("stages", {}).get(s, {}).get(key) or {}).get("median") is not None
            for run in (a, b)
            for s in CLOCK_PARTS
        )
    ]
    if not rows:
        return Unavailable("neither run has stage figures")
    fig = make_subplots(rows=len(rows), cols=1, subplot_titles=[title for title, _ in rows])
    for number, (_, key) in enumerate(rows, start=1):
        for run, label, color in zip((a, b), _labels(a, b), RUN_COLORS, strict=True):
            figures = [(run.summary.get("stages", {}).get(s, {}).get(key) or {}) for s in CLOCK_PARTS]
            median = [f.get("median") for f in figures]
            spread = [
                (f["p90"] - f["median"]) if f.get("p90") is not None and f.get("median") is not None else None
                for f in figures
            ]
            fig.add_trace(
                go.Bar(
                    x=list(CLOCK_PARTS),
                    y=median,
                    name=label,
                    legendgroup=label,
                    showlegend=number == 1,
                    marker_color=color,
                    error_y={"type": "data", "array": spread, "symmetric": False, "arrayminus": [0] * len(CLOCK_PARTS)},
                    hovertemplate=f"{label} %{{x}}: median %{{y:.3f}} ms<extra></extra>",
                ),
                row=number,
                col=1,
            )
    fig.update_layout(
        template=TEMPLATE,
        barmode="group",
        title={"text": "Stage time on the reference clock: median across images (whisker to p90)"},
        height=240 * len(rows) + 80,
    )
    return fig


def _page_keys(run: RunInputs) -> dict[int, str]:
    """Per image index: the sha256 of the page's bytes, else the md5 of its path."""
    rows = run.predictions.select(["image_index", "image_md5", "image_sha256"]).to_pylist()
    return {row["image_index"]: row["image_sha256"] or row["image_md5"] for row in rows}


def latency_overlay_figure(a: RunInputs, b: RunInputs) -> go.Figure | Unavailable:
    """Per-token latency of the same page in both runs (matched by image path, else by index)."""
    steps_a, steps_b = image_steps(a), image_steps(b)
    paths_a, paths_b = _page_keys(a), _page_keys(b)
    by_md5_b = {paths_b[image.image_index]: image for image in steps_b}
    pairs = [
        (image, by_md5_b[paths_a[image.image_index]]) for image in steps_a if paths_a[image.image_index] in by_md5_b
    ]
    matched_by = "page content (sha256), else path"
    if not pairs:
        by_index_b = {image.image_index: image for image in steps_b}
        pairs = [(image, by_index_b[image.image_index]) for image in steps_a if image.image_index in by_index_b]
        matched_by = "image index (no page is in both runs)"
    if not pairs:
        return Unavailable("no image has decode steps in both runs")
    fig = figure("", xaxis_title="decode step K", yaxis_title="ms")
    label_a, label_b = _labels(a, b)
    pairs = pairs[:MAX_IMAGES]
    with_cold = any(image.cold is not None for pair in pairs for image in pair)
    slots = [line_slot(label_a, RUN_COLORS[0]), line_slot(label_b, RUN_COLORS[1])]
    slots += [cold_slot(label_a), cold_slot(label_b)] if with_cold else []
    budget = points_per_series(2 * len(pairs))
    choices = []
    for image_a, image_b in pairs:
        (line_a, cold_a), (line_b, cold_b) = image_series(image_a, budget), image_series(image_b, budget)
        xs, ys = [line_a.x, line_b.x, cold_a[0], cold_b[0]], [line_a.y, line_b.y, cold_a[1], cold_b[1]]
        title = f"Per-token latency, {image_a.label} (matched by {matched_by}; reference clock)"
        choices.append(Choice(image_a.label, xs[: len(slots)], ys[: len(slots)], {"title": {"text": title}}))
    add_selector(fig, slots, choices)
    return fig


def step_histogram_figure(a: RunInputs, b: RunInputs) -> go.Figure | Unavailable:
    """Every decode step of every image, binned on common edges (share of each run's steps)."""
    values = [np.concatenate([image.step_ms for image in image_steps(run)] or [np.zeros(0)]) for run in (a, b)]
    values = [v[np.isfinite(v)] for v in values]
    if not any(v.size for v in values):
        return Unavailable("neither run has decode steps")
    edges = np.histogram_bin_edges(np.concatenate(values), bins=HISTOGRAM_BINS)
    fig = figure(
        "Decode step latency, all images (share of each run's steps)",
        barmode="overlay",
        xaxis_title="ms",
        yaxis_title="share of steps",
    )
    for v, label, color in zip(values, _labels(a, b), RUN_COLORS, strict=True):
        if v.size:
            counts, _ = np.histogram(v, bins=edges)
            fig.add_trace(
                go.Bar(
                    x=(edges[:-1] + edges[1:]) / 2,
                    y=counts / v.size,
                    width=np.diff(edges),
                    name=f"{label} ({v.size} steps)",
                    marker_color=color,
                    opacity=0.6,
                )
            )
    return fig


def top_overlay_figure(a: RunInputs, b: RunInputs) -> go.Figure | Unavailable:
    """Top kernels (or CPU operators) per stage, both runs' totals side by side."""
    rows_a, rows_b = top_rows(a), top_rows(b)
    kind = (
        KernelKind.kernel if any(r["kind"] == KernelKind.kernel for r in rows_a + rows_b) else KernelKind.cpu_operator
    )
    stages = [s for s in STAGE_ORDER if any(r["stage"] == s and r["kind"] == kind for r in rows_a + rows_b)]
    if not stages:
        return Unavailable("neither run has kernel or operator rows")
    fig = make_subplots(rows=len(stages), cols=1, subplot_titles=stages, vertical_spacing=0.3 / len(stages))
    for number, stage in enumerate(stages, start=1):
        totals = [
            {r["name"]: r["total_ms_traced"] for r in rows if r["stage"] == stage and r["kind"] == kind}
            for rows in (rows_a, rows_b)
        ]
        names = sorted(set(totals[0]) | set(totals[1]), key=lambda n: -max(totals[0].get(n, 0), totals[1].get(n, 0)))[
            :SHOWN
        ][::-1]
        for total, label, color in zip(totals, _labels(a, b), RUN_COLORS, strict=True):
            fig.add_trace(
                go.Bar(
                    # Numbered: two long names can share their first characters.
                    y=[f"{len(names) - position}. {short(n)}" for position, n in enumerate(names)],
                    x=[total.get(n) for n in names],
                    orientation="h",
                    name=label,
                    legendgroup=label,
                    showlegend=number == 1,
                    marker_color=color,
                    customdata=names,
                    hovertemplate=f"{label} %{{customdata}}: %{{x:.3f}} ms<extra></extra>",
                ),
                row=number,
                col=1,
            )
    measure = "GPU time" if kind == KernelKind.kernel else "CPU self time"
    fig.update_layout(
        template=TEMPLATE,
        barmode="group",
        title={"text": f"Top {kind.replace('_', ' ')}s per stage, {measure} ms (absent: not in that run's top)"},
        height=len(stages) * (SHOWN * 36 + 60) + 80,
        margin={"l": 420},
    )
    return fig


def compare_sections(a: RunInputs, b: RunInputs, comparison: dict | None = None) -> list[Section]:
    """The sections of the A-vs-B page (``comparison``: what `dsocr compare` computed, for verdicts)."""
    label_a, label_b = _labels(a, b)
    columns = "".join(
        f"<div><h3>{html.escape(label)}</h3>{findings_html(run.summary)}</div>"
        for label, run in ((label_a, a), (label_b, b))
    )
    findings = f'<div class="cols">{columns}</div>'
    return [
        Section("Runs side by side (differences first)", facts_html(a, b)),
        Section("Verdicts (median across images; noise from the spread across images)", verdicts_html(comparison)),
        Section("Stage time", stage_medians_figure(a, b)),
        Section("Per-token latency of the same page", latency_overlay_figure(a, b)),
        Section("Decode step latency distribution", step_histogram_figure(a, b)),
        Section("Top kernels and operators", top_overlay_figure(a, b)),
        Section("Findings", findings),
    ]
