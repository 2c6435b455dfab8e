"""Rich output of the roofline and the findings for ``dsocr analyze`` (the CLI passes a Console)."""

from __future__ import annotations

from typing import Any

from dsocr.analyze.categories import STAGES
from rich import box
from rich.console import Console
from rich.table import Table

DASH = "–"
TERA, GIGA = 1e12, 1e9
PERCENT = 100


def _fixed(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def _share(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value * PERCENT:.2f}%" if value * PERCENT < 1 else f"{value * PERCENT:.1f}%"


def roofline_table(summary: dict[str, Any]) -> Table | None:
    """Stages as rows: FLOPs, bytes, times, achieved rates, MFU/MBU on busy and wall, floor, bound."""
    roofline = summary.get("roofline") or {}
    rows = [(stage, roofline.get(stage)) for stage in STAGES if roofline.get(stage)]
    if not rows:
        return None
    device = roofline["device"]
    peaks = (
        f"{device['matched'] or device['device_name']}, {device['dtype']}: "
        f"{_fixed(device['peak_tflops'], 0)} TFLOP/s, {_fixed(device['peak_gbps'], 0)} GB/s"
        if device["peak_tflops"] or device["peak_gbps"]
        else "no peaks"
    )
    table = Table(title=f"roofline, all images ({peaks})", box=box.SIMPLE_HEAD)
    table.add_column("")
    for stage, _ in rows:
        table.add_column(stage, justify="right")
    figures = [figures for _, figures in rows]

    def scaled(name: str, unit: float) -> list[str]:
        return [_fixed(f[name] / unit if f[name] is not None else None, 3) for f in figures]

    table.add_row("TFLOP", *scaled("flops", TERA))
    table.add_row("GB moved", *scaled("bytes", GIGA))
    for label, name, digits in (("GPU busy ms", "gpu_busy_ms", 1), ("wall ms", "wall_ms", 1),
                                ("TFLOP/s (busy)", "achieved_tflops", 2), ("GB/s (busy)", "achieved_gbps", 0),
                                ("floor ms", "roofline_ms", 2)):  # fmt: skip
        table.add_row(label, *[_fixed(f[name], digits) for f in figures])
    for label, name in (("MFU busy/wall", "mfu"), ("MBU busy/wall", "mbu")):
        table.add_row(label, *[f"{_share(f[name])}/{_share(f[name + '_wall'])}" for f in figures])
    table.add_row("bound", *[f["bound"] or DASH for f in figures])
    step = roofline.get("decode_step")
    if step:
        table.caption = (
            f"per decode step (median of {step['steps']}): wall {_fixed(step['wall_ms']['median'])} ms,"
            f" GPU busy {_fixed(step['gpu_busy_ms']['median'])} ms, MBU {_share(step['mbu']['median'])}"
        )
    return table


def roofline_lines(summary: dict[str, Any]) -> list[str]:
    """Why roofline figures are missing, and the profiler's own FLOP count against the model's."""
    roofline = summary.get("roofline") or {}
    lines = []
    if roofline.get("reason"):
        lines.append(f"roofline: {roofline['reason']}")
    for stage, check in (roofline.get("profiler_flops") or {}).items():
        if stage in ("vision", "prefill_text", "decode") and check["rel_diff"] is not None:
            lines.append(
                f"profiler FLOPs, {stage}: {check['profiler_flops'] / TERA:.4g} TFLOP of matrix products against the"
                f" model's {check['model_flops'] / TERA:.4g} outside attention ({check['rel_diff'] * PERCENT:+.1f}%)"
            )
    return lines


def print_findings(summary: dict[str, Any], console: Console) -> None:
    findings = summary.get("findings") or []
    if not findings:
        console.print("findings: none", highlight=False)
        return
    console.print("[bold]findings[/] (largest time at stake first)")
    for finding in findings:
        console.print(
            f"- [{finding['severity']}] {finding['id']} ({finding['time_at_stake_ms']:,.1f} ms at stake):"
            f" {finding['message']}",
            highlight=False,
            markup=False,
        )


def print_insights(summary: dict[str, Any], console: Console) -> None:
    table = roofline_table(summary)
    if table is not None:
        console.print(table)
    for line in roofline_lines(summary):
        console.print(line, highlight=False, markup=False)
    print_findings(summary, console)
