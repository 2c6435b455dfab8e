"""The sweep table in the terminal: the baseline's figures, then each variant as ratios to them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

#: A verdict as the table shows it beside a ratio.
SHORT_VERDICT = {
    "faster": "faster",
    "slower": "slower",
    "same within noise": "same",
    "higher": "higher",
    "lower": "lower",
}


#: Marks a band that is compare's noise floor alone: one value a side, no spread measured.
FLOOR_MARK = "*"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    digits = 0 if abs(value) >= 100 else 2
    return f"{value:,.{digits}f} {unit}"


def _ratio_cell(figure: dict[str, Any]) -> str:
    ratio, band = figure.get("ratio"), figure.get("band")
    if ratio is None:
        return "-"
    word = SHORT_VERDICT.get(figure.get("verdict") or "", "")
    floor = "" if figure.get("band_measured") else FLOOR_MARK
    return f"{ratio:.3f}x ±{band:.3f}{floor} {word}".rstrip() if band is not None else f"{ratio:.3f}x"


def _cells(row: dict[str, Any], figures: list[dict[str, Any]]) -> list[str]:
    if row["baseline"]:
        cells = [_value(row["figures"].get(f["name"], {}).get("baseline"), f["unit"]) for f in figures]
        return [*cells, "(baseline)"]
    cells = [_ratio_cell(row["figures"].get(f["name"], {})) for f in figures]
    verdict = row["verdict"] or "no baseline to compare with"
    if row["failed_runs"]:
        verdict += f" ({len(row['failed_runs'])} run(s) failed)"
    return [*cells, verdict]


def sweep_lines(table: dict[str, Any]) -> list[str]:
    """The table as plain lines, one per variant: the baseline in its own units, every other
    variant as ratios with their noise band and verdict. A variant that could not run is one line
    with its reason in place of its figures (never wrapped into a column)."""
    figures = table["figures"]
    header = ["variant", "runs", *(figure["label"] for figure in figures), "verdict"]
    rows = [
        [row["variant"], str(len(row["runs"])), *_cells(row, figures)] for row in table["variants"] if not row["reason"]
    ]
    widths = [max(len(line[index]) for line in [header, *rows]) for index in range(len(header))]
    widths[0] = max(widths[0], *(len(row["variant"]) for row in table["variants"]))

    def line(cells: list[str]) -> str:
        left = [cells[0].ljust(widths[0])]
        return "  ".join(left + [cell.rjust(width) for cell, width in zip(cells[1:-1], widths[1:-1], strict=True)]
                         + [cells[-1]]).rstrip()  # fmt: skip

    lines = [line(header)]
    for row in table["variants"]:
        if row["reason"]:
            prefix = f"{row['variant'].ljust(widths[0])}  {'0'.rjust(widths[1])}  "
            lines.append(f"{prefix}cannot run: {row['reason']}")
        else:
            lines.append(line([row["variant"], str(len(row["runs"])), *_cells(row, figures)]))
    return lines


def print_sweep(table: dict[str, Any], console: Console) -> None:
    """The sweep table and how to read it."""
    console.print(f"dsocr sweep {table['sweep_dir']}", markup=False, highlight=False)
    for line in sweep_lines(table):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"ratios: variant / baseline (medians); ± the noise band (dsocr compare's rule) from "
        f"{table['repeats']} repeat(s) x {table['images']} page(s); capture --profile {table['profile']}; "
        f"run order: {escape(', '.join(table['order']))}",
        highlight=False,
    )
    if any(
        cell.get("ratio") is not None and not cell.get("band_measured")
        for row in table["variants"]
        if not row["baseline"]
        for cell in row["figures"].values()
    ):
        console.print(
            f"{FLOOR_MARK} one value a side: the band is the noise floor alone, no spread was measured "
            "(more pages or --repeats measure one)",
            highlight=False,
            markup=False,
        )
