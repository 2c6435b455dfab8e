"""The HTML page: plotly's JavaScript embedded once, then sections of figures and tables."""

from __future__ import annotations

import html
from dataclasses import dataclass

import plotly.graph_objects as go
import plotly.io as pio
from dsocr.report._unavailable import Unavailable
from dsocr.report.glance import not_available
from plotly.offline import get_plotlyjs

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #e3e3e3;padding:3px 8px;
text-align:left;vertical-align:top}table.kv th{background:#f6f6f6;width:220px}
.na{color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}
.thumbs{display:flex;flex-wrap:wrap;gap:12px}.thumbs figure{margin:0;font-size:12px;text-align:center}
.thumbs img{border:1px solid #ccc}.findings li{margin:4px 0}.evidence{color:#555;font-size:12px}
.sev-high b{color:#c00}.sev-medium b{color:#b60}.cols{display:flex;gap:24px}.cols>div{flex:1;min-width:0}
"""


@dataclass(frozen=True)
class Section:
    """A titled part of the page: HTML, figures, or the reason it is empty."""

    title: str
    body: str | go.Figure | list[go.Figure] | Unavailable
    intro: str = ""


def _body_html(body: str | go.Figure | list[go.Figure] | Unavailable, counter: list[int]) -> str:
    if isinstance(body, Unavailable):
        return not_available(body.reason)
    if isinstance(body, str):
        return body
    figures = body if isinstance(body, list) else [body]
    parts = []
    for fig in figures:
        counter[0] += 1
        div = f"plot-{counter[0]}"
        parts.append(pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div, config=PLOT_CONFIG))
    return "".join(parts)


def render_page(title: str, sections: list[Section]) -> str:
    """A complete, self-contained HTML document (no network at view time)."""
    counter = [0]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>",
        # plotly.js once for every figure of the page.
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.intro:
            parts.append(f"<p>{section.intro}</p>")
        parts.append(_body_html(section.body, counter))
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)
