"""Rich tables for ``dsocr analyze``: the only module that prints (the CLI passes a Console)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from dsocr.analyze.report_insights import finding_lines, roofline_lines, roofline_table
from dsocr.analyze.summary import Spread, Summary
from dsocr.analyze.table_fit import NamedTable, Whole
from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from dsocr.vocab import IMAGE, OTHER, OTHER_MEANING, TIME_STAGES, KernelKind, Stage

DASH = "–"
TOP_SHOWN = 5
# Per-rank columns: the clock stages; TTFT (vision + prefill_text) + decode is the model's time.
RANK_STAGES = TIME_STAGES
PERCENT = 100
#: Where the top table's names are: the column that takes the width the others leave.
NAME_COLUMN = 1


def _num(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def _short(value: float | None) -> str:
    """A duration in few characters: 1 decimal from 100 up, 3 below 1."""
    if value is None:
        return DASH
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def _pair(figure: Spread) -> str:
    return f"{_short(figure.median)}/{_short(figure.p90)}"


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{value * PERCENT:+.2f}%"


def _share(value: float | None) -> str:
    return DASH if value is None else f"{value * PERCENT:.1f}%"


_MEASURE_LABEL = {"gpu_range_ms_traced": "GPU range vs CUDA events", "cpu_ms_traced": "CPU vs perf_counter"}
#: The clock table's columns: the parts of an image, then the image.
CLOCK_COLUMNS = (*TIME_STAGES, OTHER, IMAGE)


def _check_caption(summary: Summary) -> str | None:
    checks = [summary.stages[stage].trace.check.measure for stage in TIME_STAGES if summary.stages[stage].trace]
    labels = sorted({_MEASURE_LABEL.get(str(measure), str(measure)) for measure in checks if measure is not None})
    return f"check: median relative difference, {', '.join(labels)}, same traced steps" if labels else None


def _clock_table(summary: Summary) -> Table:
    """Where the time goes: the stages of each image on the reference clock, every decode step,
    in every profile mode; the parts add up to the image."""
    clocks = ", ".join(summary.trace.timing_clocks) or "reference clock"
    table = Table(
        title=f"where the time goes: ms per image, median/p90 across images ({clocks}, every decode step)",
        caption=f"TTFT = vision + prefill_text; {OTHER_MEANING}",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("")
    for column in CLOCK_COLUMNS:
        table.add_column(column, justify="right")
    stages = [summary.stages[column] for column in CLOCK_COLUMNS]
    table.add_row("images", *[str(figures.images) for figures in stages])
    table.add_row("ms", *[_pair(figures.clock_ms) for figures in stages])
    table.add_row("run total ms", *[_num(figures.total_ms, 1) for figures in stages])
    table.add_row("share of image", *[_share(figures.share) for figures in stages])
    return table


def _stage_table(summary: Summary) -> Table | None:
    """What the trace saw: per image for vision and prefill_text (traced whole), per traced step
    for decode (N of M steps); None without a trace."""
    traced = {stage: summary.stages[stage].trace for stage in TIME_STAGES}
    if not summary.trace.present or not any(traced.values()):
        return None
    device = summary.trace.device_time
    decode = traced[Stage.decode]
    coverage = f"{decode.steps_traced} of {decode.steps_total} steps traced" if decode else "no decode step traced"
    table = Table(
        title=f"trace: ms per image (decode: per traced step, {coverage}), median/p90 across images",
        caption=_check_caption(summary),
        box=box.SIMPLE_HEAD,
    )
    table.add_column("")
    for stage in TIME_STAGES:
        table.add_column(stage if stage != Stage.decode else "decode per step", justify="right")
    stages = [traced[stage] for stage in TIME_STAGES]
    table.add_row("images", *[str(figures.images) if figures else DASH for figures in stages])
    rows = [("CPU", "cpu_ms")]
    if device:
        rows += [("GPU busy", "gpu_busy_ms"), ("GPU span", "gpu_span_ms"), ("GPU range", "gpu_range_ms")]
    for label, name in rows:
        table.add_row(label, *[_pair(getattr(figures, name)) if figures else DASH for figures in stages])
    if device:
        # GPU busy is the union of all three kinds: each is shown.
        for label, name in (("kernels", "kernel_count"), ("memcpy", "memcpy_count"), ("memset", "memset_count")):
            table.add_row(label, *[_num(getattr(figures, name).median, 0) if figures else DASH for figures in stages])
    table.add_row("check", *[_pct(figures.check.rel_diff.median) if figures else DASH for figures in stages])
    return table


def _latency_table(summary: Summary) -> Table:
    latency = summary.latency
    table = Table(title="latency per image: median/p90 across images", box=box.SIMPLE_HEAD)
    table.add_column("figure")
    table.add_column("median", justify="right")
    table.add_column("p90", justify="right")
    rows = [
        ("TTFT ms", "ttft_ms"),
        ("TPOT mean ms", "tpot_mean_ms"),
        ("TPOT p50 ms", "tpot_p50_ms"),
        ("TPOT p99 ms", "tpot_p99_ms"),
        ("decode tokens/s", "decode_tokens_per_s"),
    ]
    for label, name in rows:
        figure = getattr(latency, name)
        table.add_row(label, _num(figure.median), _num(figure.p90))
    decode = summary.stages[Stage.decode].trace
    idle = decode.gpu_idle_share if decode is not None else None
    if summary.trace.device_time and idle is not None:
        table.add_row("decode GPU idle share", _share(idle.median), _share(idle.p90))
    return table


def _top_table(summary: Summary) -> NamedTable | None:
    kind = KernelKind.kernel if summary.trace.device_time else KernelKind.cpu_operator
    rows = [row for row in summary.top if row.kind == kind]
    if not rows:
        return None
    label = "GPU time" if kind == KernelKind.kernel else "CPU self time"
    traced, total = _decode_coverage(summary)
    title = f"top {kind.replace('_', ' ')}s per stage ({label}, traced: decode {traced} of {total} steps)"
    shown = [row for stage in TIME_STAGES for row in [row for row in rows if row.stage == stage][:TOP_SHOWN]]

    def build(name_cell: Callable[[str], str]) -> Table:
        table = Table(title=title, box=box.SIMPLE_HEAD)
        table.add_column("stage")
        table.add_column("name")
        for header in ("calls", "total ms", "mean µs", "share"):
            table.add_column(header, justify="right")
        for row in shown:
            table.add_row(
                row.stage, escape(name_cell(row.name)), str(row.calls), _num(row.total_ms_traced), _num(row.mean_us, 1),
                _share(row.share),
            )  # fmt: skip
        return table

    return NamedTable(build, tuple(row.name for row in shown), name_column=NAME_COLUMN)


def _decode_coverage(summary: Summary) -> tuple[int, int]:
    decode = summary.stages[Stage.decode].trace
    return (decode.steps_traced or 0, decode.steps_total or 0) if decode else (0, 0)


def coverage_lines(summary: Summary) -> list[str]:
    """Plain sentences about what the trace could not see (always printed, never dropped)."""
    trace, coverage = summary.trace, summary.coverage
    if not trace.present:
        return [f"trace missing: {trace.missing_reason}; figures are the capture's reference timings"]
    lines = []
    if not trace.device_time:
        lines.append("no device time: the trace has no GPU activity (CPU-only); GPU columns are omitted")
    lines.append(
        f"decode steps traced: {coverage.steps_traced} of {coverage.steps_total}"
        f" ({coverage.steps_not_traced} not traced); flush chunks {coverage.flush_chunks},"
        f" gaps between them {coverage.flush_gaps}"
    )
    if coverage.trace_images_every > 1:
        lines.append(
            f"images traced: {coverage.images_with_trace} of {coverage.images_ok}"
            f" (--trace-images {coverage.trace_images_every}); every image keeps its reference-clock timings"
        )
    elif coverage.images_ok > coverage.images_with_trace:
        lines.append(f"images without trace: {coverage.images_ok - coverage.images_with_trace}")
    if coverage.images_failed:
        lines.append(f"failed images (not analyzed): {coverage.images_failed}")
    if coverage.ranges_cut_by_flush or coverage.duplicate_ranges:
        lines.append(
            f"ranges left out: {coverage.ranges_cut_by_flush} cut by a flush window,"
            f" {coverage.duplicate_ranges} repeated"
        )
    if trace.device_time:
        lines.append(
            f"GPU activities: {coverage.gpu_ops}; launched outside any dsocr range:"
            f" {coverage.gpu_ops_outside_ranges} ({_num(coverage.gpu_ops_outside_ranges_ms)} ms);"
            f" with no launch call in the trace: {coverage.gpu_ops_without_launch};"
            f" ranges with no device work: {coverage.ranges_without_device_work}"
        )
        if coverage.chunks_without_device_work:
            lines.append(
                f"WARNING {coverage.chunks_without_device_work} of {coverage.flush_chunks} profiler sessions"
                " recorded dsocr ranges but no GPU activity: their steps have no GPU figures and every GPU"
                " total leaves them out (docs/performance.md, full mode's later sessions)"
            )
        if coverage.kernels_start_before_launch:
            lines.append(
                f"WARNING {coverage.kernels_start_before_launch} GPU activities start before their own launch"
                " (corrupt CUPTI timestamps, pytorch/pytorch#192021): left out of every GPU figure"
            )
    return lines


def cold_lines(summary: Summary) -> list[str]:
    """A warning per image whose TPOT cold steps (decode lengths new to the process) raise by
    more than the flag share, with the CPU operators that grow most on cold steps."""
    cold = summary.cold
    if cold is None or not cold.flagged_images:
        return []
    lines = [
        f"WARNING cold steps: {cold.cold_steps} decode steps ran at a length new to the process; they add"
        f" {_num(cold.cold_added_ms, 1)} ms over the warm median step ({_num(cold.warm_step_p50_ms)} ms;"
        f" up to {_num(cold.cold_added_upper_ms, 1)} ms counting each cold step's own excess)"
    ]
    for image in cold.flagged_images:
        lines.append(
            f"  image {image['image_index']} (rank {image['rank']}): TPOT {_num(image['tpot_ms'])} ms,"
            f" {_num(image['tpot_if_warm_ms'])} ms had its {image['cold_steps']} cold steps run warm"
            f" ({_pct(image['tpot_ms'] / image['tpot_if_warm_ms'] - 1)})"
        )
    if cold.top_operators:
        operators = ", ".join(
            f"{op['name']} {_num(op['cold_ms_per_step'], 3)} vs {_num(op['warm_ms_per_step'], 3)}"
            for op in cold.top_operators
        )
        lines.append(f"  CPU ms per step, cold vs warm traced steps: {operators}")
    lines.append("  try: --warmup-tokens covering the lengths, another --sdpa-backend, or compare images 2..N only")
    return lines


def _rank_table(summary: Summary) -> Table | None:
    ranks = summary.ranks
    if ranks.world_size <= 1:
        return None
    table = Table(title=f"per rank ({ranks.world_size} processes): stage totals, ms", box=None)
    for column in ("rank", "images", *RANK_STAGES, "TTFT+decode", "capture s"):
        table.add_column(column, justify="right")
    for rank in ranks.per_rank:
        totals = [rank.stages[name].total_ms if name in rank.stages else None for name in RANK_STAGES]
        table.add_row(
            str(rank.rank),
            str(rank.images),
            *(_num(total, 1) for total in totals),
            _num(rank.stage_ms, 1),
            _num(rank.capture_seconds, 1),
        )
    table.caption = (
        f"slowest rank {ranks.slowest_rank}; load imbalance (max/mean, by {ranks.imbalance_by}) "
        f"{_num(ranks.imbalance, 3)}"
    )
    return table


def _run_line(summary: Summary) -> str:
    return f"[bold]dsocr analyze[/] {summary.run_dir}"


#: What the terminal report shows, in order: each entry renders one part of the summary, or
#: None when that part has nothing to show. A new summary part that should be seen adds one here.
SECTIONS: tuple[Callable[[Summary], Table | NamedTable | str | list[str] | None], ...] = (
    _run_line,
    _clock_table,
    _stage_table,
    _latency_table,
    _rank_table,
    _top_table,
    coverage_lines,
    cold_lines,
    roofline_table,
    roofline_lines,
    finding_lines,
)


def renderables(summary: Summary, *, wide: bool = False) -> list[RenderableType]:
    """Every section of the report (see SECTIONS), in order, ready to print at any width:
    tables never cut a number or a header; names are shortened in the middle unless ``wide``."""
    items: list[RenderableType] = []
    for section in SECTIONS:
        shown = section(summary)
        if shown is None:
            continue
        for item in shown if isinstance(shown, list) else [shown]:
            if isinstance(item, Table):
                item = Whole(item)
            elif isinstance(item, NamedTable):
                item = replace(item, wide=wide)
            items.append(item)
    return items


def print_report(summary: Summary, console: Console, *, wide: bool = False) -> None:
    """Print the report at the console's width (see renderables)."""
    for item in renderables(summary, wide=wide):
        # crop=False: a table wider than the terminal is wrapped by it, never cut.
        console.print(item, highlight=False, crop=False)
