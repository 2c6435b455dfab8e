"""The roofline and findings sections of ``dsocr analyze``'s report (analyze/report.py SECTIONS)."""

from __future__ import annotations

from dsocr.analyze.summary import Summary
from rich import box
from rich.markup import escape
from rich.table import Table

from dsocr.vocab import TIME_STAGES, Stage

DASH = "–"
TERA, GIGA = 1e12, 1e9
PERCENT = 100
#: Stages whose profiler FLOP count is compared (prefill is vision plus prefill_text).
PROFILER_STAGES = ("vision", "prefill_text", "decode")


def _fixed(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def _share(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value * PERCENT:.2f}%" if value * PERCENT < 1 else f"{value * PERCENT:.1f}%"


def roofline_table(summary: Summary) -> Table | None:
    """Stages as columns: FLOPs, bytes, times, achieved rates, MFU/MBU on busy and wall, floor, bound."""
    roofline = summary.roofline
    rows = [(stage, roofline.stage(stage)) for stage in TIME_STAGES]
    figures = [figure for _, figure in rows if figure is not None]
    if not figures:
        return None
    device = roofline.device
    peaks = (
        f"{device.matched or device.device_name}, {device.dtype}: "
        f"{_fixed(device.tflops, 0)} TFLOP/s, {_fixed(device.gbps, 0)} GB/s"
        if device.tflops or device.gbps
        else "no peaks"
    )
    table = Table(title=f"roofline, all images ({peaks})", box=box.SIMPLE_HEAD)
    table.add_column("")
    for stage, figure in rows:
        if figure is not None:
            table.add_column("decode per token" if stage == Stage.decode else stage, justify="right")

    def scaled(name: str, unit: float) -> list[str]:
        values = [getattr(figure, name) for figure in figures]
        return [_fixed(value / unit if value is not None else None, 3) for value in values]

    table.add_row("TFLOP", *scaled("flops", TERA))
    table.add_row("GB moved", *scaled("bytes", GIGA))
    for label, name, digits in (("GPU busy ms", "gpu_busy_ms", 1), ("wall ms", "wall_ms", 1),
                                ("TFLOP/s (busy)", "achieved_tflops", 2), ("GB/s (busy)", "achieved_gbps", 0),
                                ("floor ms", "roofline_ms", 2)):  # fmt: skip
        table.add_row(label, *[_fixed(getattr(figure, name), digits) for figure in figures])
    for label, name in (("MFU busy/wall", "mfu"), ("MBU busy/wall", "mbu")):
        table.add_row(
            label, *[f"{_share(getattr(figure, name))}/{_share(getattr(figure, name + '_wall'))}" for figure in figures]
        )
    table.add_row("bound", *[figure.bound or DASH for figure in figures])
    step = roofline.decode_step
    if step:
        table.caption = (
            f"per decode step (median of {step['steps']}): wall {_fixed(step['wall_ms']['median'])} ms,"
            f" GPU busy {_fixed(step['gpu_busy_ms']['median'])} ms, MBU {_share(step['mbu']['median'])}"
        )
    return table


def roofline_lines(summary: Summary) -> list[str]:
    """Why roofline figures are missing, and the profiler's own FLOP count against the model's."""
    roofline = summary.roofline
    lines = []
    if roofline.reason:
        lines.append(escape(f"roofline: {roofline.reason}"))
    for stage, check in (roofline.profiler_flops or {}).items():
        if stage in PROFILER_STAGES and check["rel_diff"] is not None:
            uncounted = ", ".join(f"{name} x{calls:,}" for name, calls in check.get("uncounted_operators", {}).items())
            lines.append(
                escape(
                    f"profiler FLOPs, {stage}: {check['profiler_flops'] / TERA:.4g} TFLOP of matrix products against"
                    f" the model's {check['model_flops'] / TERA:.4g} outside attention"
                    f" ({check['rel_diff'] * PERCENT:+.1f}%)"
                    + (f"; not counted by the profiler: {uncounted}" if uncounted else "")
                )
            )
    return lines


def finding_lines(summary: Summary) -> list[str]:
    """One line per finding, largest time at stake first (messages are printed as written, not as markup)."""
    if not summary.findings:
        return ["findings: none"]
    lines = ["[bold]findings[/] (largest time at stake first)"]
    for finding in summary.findings:
        lines.append(
            escape(
                f"- [{finding.severity}] {finding.id} ({finding.time_at_stake_ms:,.1f} ms at stake): {finding.message}"
            )
        )
        if finding.try_command:
            lines.append(escape(f"  try: {finding.try_command}"))
    return lines
