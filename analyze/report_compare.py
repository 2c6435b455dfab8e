"""Rich output of ``dsocr compare`` (the CLI passes a Console)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from dsocr.analyze.noise import NOT_COMPARABLE
from dsocr.analyze.table_fit import NamedTable, Whole
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

DASH = "–"
PERCENT = 100
NAME_COLUMN = 1
PER_IMAGE_SHOWN = 20
_FIGURE_LABELS = {
    "vision_ms": "vision ms",
    "prefill_text_ms": "prefill_text ms",
    "decode_ms": "decode ms",
    "other_ms": "other ms",
    "image_ms": "image ms",
    "cpu_ms": "CPU ms",
    "gpu_busy_ms": "GPU busy ms",
    "kernel_count": "kernels",
    "ttft_ms": "TTFT ms",
    "tpot_p50_ms": "TPOT p50 ms",
    "tpot_mean_ms": "TPOT mean ms",
    "decode_tokens_per_s": "tokens/s",
}


_KIND_LABELS = {
    "kernel": "kernels",
    "operator": "operators by GPU time",
    "cpu_operator": "operators by CPU self time",
}


def _num(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def _short(value: float | None) -> str:
    """A figure in few characters: no decimals from 1,000 up, 1 from 100, 2 below."""
    if value is None:
        return DASH
    digits = 0 if abs(value) >= 1000 else 1 if abs(value) >= 100 else 2
    return f"{value:,.{digits}f}"


def _rel(value: float | None) -> str:
    return DASH if value is None else f"{value * PERCENT:+.1f}%"


def _noise(value: float | None) -> str:
    return DASH if value is None else f"±{value * PERCENT:.1f}%"


def _figure_table(title: str, rows: list[tuple[str, str, dict[str, Any]]], caption: str) -> Table:
    """One row per figure: both medians, the relative change, the noise it had to exceed, the verdict."""
    table = Table(title=title, box=box.SIMPLE_HEAD, caption=caption, pad_edge=False)
    for column in ("group", "figure", "A", "B", "change ±noise", "verdict"):
        table.add_column(column, justify="left" if column in ("group", "figure", "verdict") else "right", no_wrap=True)
    for group, label, figure in rows:
        table.add_row(
            group, label, _short(figure["a"]), _short(figure["b"]),
            f"{_rel(figure['rel_delta'])} {_noise(figure['noise'])}", figure["verdict"] or DASH,
        )  # fmt: skip
    return table


def _options_lines(comparison: dict[str, Any]) -> list[str]:
    options = comparison["differing_options"]
    if not options:
        return ["options: the same (capture options, model, device, packages)"]
    return ["differing options (A -> B):"] + [
        f"  {row['option']}: {_text(row['a'])} -> {_text(row['b'])}" for row in options
    ]


def _text(value: Any) -> str:
    """An option's value as the user typed it: words bare, None as a dash, never a repr."""
    return DASH if value is None else str(getattr(value, "value", value))


def _top_tables(comparison: dict[str, Any]) -> list[NamedTable]:
    """One table per kind (kernels, operators by GPU time, operators by CPU self time)."""
    tables = []
    for kind, label in _KIND_LABELS.items():
        rows = [row for row in comparison["top"] if row["kind"] == kind]
        if not rows:
            continue

        def build(name_cell: Callable[[str], str], rows: list[dict[str, Any]] = rows, label: str = label) -> Table:
            title = f"{label}: largest changes (ms per image; decode: ms per traced step)"
            table = Table(title=title, box=box.SIMPLE_HEAD)
            for column in ("stage", "name", "A ms", "B ms", "B-A ms"):
                table.add_column(column, justify="right" if column.endswith("ms") else "left")
            for row in rows:
                table.add_row(
                    row["stage"], escape(name_cell(row["name"])), _short(row["ms_a"]),
                    _short(row["ms_b"]), _short(row["delta_ms"]),
                )  # fmt: skip
            return table

        tables.append(NamedTable(build, tuple(row["name"] for row in rows), name_column=NAME_COLUMN))
    return tables


def _per_image_table(comparison: dict[str, Any]) -> Table | None:
    rows = comparison["per_image"]
    if not rows:
        return None
    table = Table(title=f"per image (paired; first {PER_IMAGE_SHOWN})", box=box.SIMPLE_HEAD)
    names = ("ttft_ms", "decode_ms", "decode_tokens_per_s")
    for column in ("image A/B", "TTFT A", "TTFT B", "decode A", "decode B", "tok/s A", "tok/s B"):
        table.add_column(column, justify="right")
    for row in rows[:PER_IMAGE_SHOWN]:
        table.add_row(f"{row['image_a']}/{row['image_b']}", *(_num(row[name][side]) for name in names for side in "ab"))
    return table


def print_comparison(comparison: dict[str, Any], console: Console, *, wide: bool = False) -> None:
    """Differing options first, then stages, latency, per image, top changes and findings; tables
    never cut a number or a header (names shortened in the middle unless ``wide``)."""
    console.print("[bold]dsocr compare[/]")
    for line in [f"A: {comparison['run_a']}", f"B: {comparison['run_b']}", *_options_lines(comparison)]:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    images = comparison["images"]
    by = images["paired_by"]
    console.print(
        f"images: A {images['a']}, B {images['b']}; paired {images['paired']}"
        f" ({by['content']} by content hash, {by['path']} by path)",
        highlight=False,
    )
    noise = comparison["noise_model"]
    caption = (
        f"change: paired mean ratio (else ratio of medians); a change counts beyond the noise:"
        f" max({noise['floor'] * PERCENT:.0f}%, {noise['se_multiple']:.0f} standard errors) (docs/analysis.md)"
    )
    rows = [("clock", _FIGURE_LABELS[name], figure) for name, figure in comparison["clock"].items()]
    console.print(Whole(_figure_table("reference clock, every step: median across images", rows, caption)), crop=False)
    rows = [
        (f"{stage}/step" if entry["per"] == "traced step" else stage, _FIGURE_LABELS[name], figure)
        for stage, entry in comparison["trace"].items()
        for name, figure in entry["figures"].items()
    ]
    if all(figure["verdict"] == NOT_COMPARABLE for _, _, figure in rows):
        reasons = sorted({figure.get("reason") or "" for _, _, figure in rows})
        console.print(f"trace figures: {NOT_COMPARABLE}: {'; '.join(reasons)}", highlight=False, markup=False)
    else:
        title = "trace: median across images (decode: per traced step)"
        console.print(Whole(_figure_table(title, rows, caption)), crop=False)
    per_image = _per_image_table(comparison)
    if per_image is not None:
        console.print(Whole(per_image), crop=False)
    if comparison.get("top_note"):
        console.print(f"kernels and operators: {comparison['top_note']}", highlight=False, markup=False)
    for table in _top_tables(comparison):
        console.print(replace(table, wide=wide), crop=False)
    findings = comparison["findings"]
    for label, key in (("appeared in B", "appeared"), ("vanished in B", "vanished")):
        ids = ", ".join(finding["id"] for finding in findings[key]) or "none"
        console.print(f"findings {label}: {ids}", highlight=False, markup=False)
