"""The verdicts of ``dsocr compare`` (faster, slower, same within noise) as one HTML table.

Reads the comparison object ``dsocr compare --json`` prints: ``stages.<stage>.figures.<name>``
and ``latency.<name>``, each ``{a, b, delta, rel_delta, noise, verdict}``.
"""

from __future__ import annotations

from typing import Any

from dsocr.report.glance import not_available, table

PERCENT = 100
HEADER = ["stage", "figure", "A (median)", "B (median)", "B − A", "B − A %", "noise", "verdict"]


def _row(group: str, name: str, figure: Any) -> list[Any] | None:
    if not isinstance(figure, dict) or (figure.get("a") is None and figure.get("b") is None):
        return None
    rel = figure.get("rel_delta")
    return [
        group,
        name,
        figure.get("a"),
        figure.get("b"),
        figure.get("delta"),
        None if rel is None else f"{rel * PERCENT:+.1f}%",
        figure.get("noise"),
        figure.get("verdict") or "–",
    ]


def verdicts_html(comparison: dict[str, Any] | None) -> str:
    """Every compared figure with its verdict; a note when no comparison was given."""
    if comparison is None:
        return not_available("verdicts come from `dsocr compare A B --report`")
    rows = []
    for stage, entry in (comparison.get("stages") or {}).items():
        for name, figure in ((entry or {}).get("figures") or {}).items():
            rows.append(_row(stage, name, figure))
    for name, figure in (comparison.get("latency") or {}).items():
        rows.append(_row("latency", name, figure))
    rows = [row for row in rows if row is not None]
    return table(HEADER, rows) if rows else not_available("the comparison holds no figure measured in both runs")
