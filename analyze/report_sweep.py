"""The sweep table in the terminal: the baseline's figures, then each variant as ratios to them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: A verdict as the table shows it beside a ratio.
SHORT_VERDICT = {
    "faster": "faster",
    "slower": "slower",
    "same within noise": "same",
    "higher": "higher",
    "lower": "lower",
}


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
    return f"{ratio:.3f}x ±{band:.3f} {word}".rstrip() if band is not None else f"{ratio:.3f}x"


def sweep_rich_table(table: dict[str, Any]) -> Table:
    """One row per variant: the baseline in its own units, every other variant as ratios with
    their noise band and verdict; a variant that could not run shows its reason."""
    figures = table["figures"]
    grid = Table(title=f"dsocr sweep {escape(table['sweep_dir'])}", title_justify="left")
    grid.add_column("variant")
    grid.add_column("runs", justify="right")
    for figure in figures:
        grid.add_column(figure["label"], justify="right")
    grid.add_column("verdict")
    for row in table["variants"]:
        name = escape(row["variant"]) + (" (baseline)" if row["baseline"] else "")
        runs = str(len(row["runs"]))
        if row["reason"] is not None:
            grid.add_row(name, runs, *["-"] * len(figures), escape(f"cannot run: {row['reason']}"))
            continue
        if row["baseline"]:
            cells = [_value(row["figures"].get(f["name"], {}).get("baseline"), f["unit"]) for f in figures]
        else:
            cells = [_ratio_cell(row["figures"].get(f["name"], {})) for f in figures]
        verdict = row["verdict"] or ("" if row["baseline"] else "no baseline to compare with")
        if row["failed_runs"]:
            verdict += f" ({len(row['failed_runs'])} run(s) failed)"
        grid.add_row(name, runs, *cells, verdict)
    return grid


def print_sweep(table: dict[str, Any], console: Console) -> None:
    """The sweep table and how to read it."""
    console.print(sweep_rich_table(table))
    console.print(
        f"ratios: variant / baseline (medians); ± the noise band (dsocr compare's rule) from "
        f"{table['repeats']} repeat(s) x {table['images']} page(s); capture --profile {table['profile']}; "
        f"run order: {escape(', '.join(table['order']))}",
        highlight=False,
    )
