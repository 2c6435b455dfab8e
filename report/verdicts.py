"""The verdicts of ``dsocr compare`` (faster, slower, same within noise) as one HTML table.

Reads the comparison object ``dsocr compare --json`` prints: ``clock.<name>`` and
``trace.<stage>.figures.<name>``, each ``{a, b, delta, rel_delta, noise, verdict}`` (analyze.noise).
"""

from __future__ import annotations

from typing import Any

from dsocr.report.glance import not_available, table

PERCENT = 100
HEADER = ["group", "figure", "A (median)", "B (median)", "B − A", "change", "noise", "verdict"]


def _row(group: str, name: str, figure: Any, *, keep: bool = False) -> list[Any] | None:
    """One figure's row; a figure neither run has is left out unless ``keep`` (not comparable)."""
    if not isinstance(figure, dict):
        return None
    if figure.get("a") is None and figure.get("b") is None and not (keep and figure.get("verdict")):
        return None
    rel = figure.get("rel_delta")
    return [
        group,
        name,
        figure.get("a"),
        figure.get("b"),
        figure.get("delta"),
        None if rel is None else f"{rel * PERCENT:+.1f}%",
        None if figure.get("noise") is None else f"±{figure['noise'] * PERCENT:.1f}%",
        figure.get("verdict") or "–",
    ]


def verdicts_html(comparison: dict[str, Any] | None) -> str:
    """Every compared figure with its verdict; a note when no comparison was given."""
    if comparison is None:
        return not_available("verdicts come from `dsocr compare A B --report`")
    rows = [_row("clock", name, figure) for name, figure in (comparison.get("clock") or {}).items()]
    for stage, entry in (comparison.get("trace") or {}).items():
        for name, figure in ((entry or {}).get("figures") or {}).items():
            rows.append(_row(f"trace: {stage} per {entry.get('per')}", name, figure, keep=True))
    rows = [row for row in rows if row is not None]
    return table(HEADER, rows) if rows else not_available("the comparison holds no figure measured in both runs")
