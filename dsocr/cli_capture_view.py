"""What `dsocr capture` shows: a progress bar fed by capture's callbacks, warnings, the summary.

The capture library prints nothing; this CLI-edge module is the only place its progress and
result reach a terminal. Imported inside the command (rich is not loaded by ``dsocr --help``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from dsocr.figures import decode_tokens_per_s
from dsocr.options import INF_TOKEN

if TYPE_CHECKING:
    from dsocr.capture.result import CaptureResult
    from dsocr.records import PredictionRow


def _stderr() -> Console:
    return Console(stderr=True)


def image_note(row: PredictionRow) -> str:
    """The progress bar's note about the image just finished (it says which): its tokens and
    decode tokens/s (the glossary's per-image figure, dsocr.figures), or its error."""
    rate = decode_tokens_per_s(row.get("decode_step_ms"))
    if rate is None:
        return row.get("error") or ""
    return f"img {row['image_index']}: {row['generated_tokens']} tok, decode tokens/s {rate:.1f}"


class ProgressView:
    """A rich progress bar on stderr; ``start`` and ``image`` are capture.run's callbacks.

    Used as a context manager: the bar appears at ``start`` and is removed on exit.
    """

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]capture[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            console=console or _stderr(),
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressView:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None:
            self._progress.stop()

    def start(self, total: int, done: int) -> None:
        # Shown from the first callback on: capture calls it on the leader rank only.
        self._progress.start()
        self._task = self._progress.add_task("capture", total=total, completed=done, last="")

    def image(self, row: PredictionRow) -> None:
        if self._task is not None:
            self._progress.update(self._task, advance=1, last=image_note(row))


@contextmanager
def warnings_to(logger: logging.Logger, console: Console | None = None) -> Iterator[None]:
    """Show ``logger``'s warnings on stderr (above the progress bar) while the block runs."""
    handler = RichHandler(console=console or _stderr(), show_time=False, show_path=False, level=logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _ms(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def token_cap(rows: tuple[PredictionRow, ...] | list[PredictionRow]) -> str | None:
    """``--max-new-tokens`` as asked and as each image ran it: ``inf -> 1003`` (or a range when
    prompts differ in length); None when no image got as far as resolving it."""
    resolved = sorted({row["max_new_tokens_resolved"] for row in rows if row.get("max_new_tokens_resolved")})
    if not resolved:
        return None
    asked = {row.get("max_new_tokens_requested") for row in rows if row.get("max_new_tokens_resolved")}
    asked_text = INF_TOKEN if None in asked else ", ".join(str(value) for value in sorted(asked))
    ran = str(resolved[0]) if len(resolved) == 1 else f"{resolved[0]}-{resolved[-1]} (per image)"
    return asked_text if ran == asked_text else f"{asked_text} -> {ran}"


def summary_table(result: CaptureResult) -> Table:
    """The run at a glance: images, tokens, medians, stop reasons, trace events, where it is."""
    figures = result.figures
    title = f"dsocr capture: {result.model_id} on {result.device}"
    # At least as wide as its title: rich wraps a title at the table's width, not the terminal's.
    table = Table(title=title, show_header=False, min_width=len(title))
    table.add_column(no_wrap=True)
    # Folded, never cut: the run directory is what the user copies into the next command.
    table.add_column(overflow="fold")
    table.add_row("images", f"{figures.images_ok} ok, {figures.images_failed} failed")
    if figures.images_ok:
        table.add_row("generated tokens", str(figures.generated_tokens))
        cap = token_cap(result.rows)
        if cap is not None:
            table.add_row("max new tokens", cap)
        for label, value, digits in (
            ("TTFT ms", figures.ttft_ms, 1),
            ("decode ms", figures.decode_ms, 1),
            ("TPOT p50 ms", figures.tpot_p50_ms, 2),
            ("decode tokens/s", figures.decode_tokens_per_s, 1),
            ("image ms", figures.image_ms, 1),
        ):
            if value is not None:
                table.add_row(f"{label} (median across images)", _ms(value, digits))
        table.add_row("stop reasons", ", ".join(figures.stop_reasons))
        if figures.loop_images:
            table.add_row(
                "repetition loops",
                f"{figures.loop_images} image(s): {figures.loop_tokens} tokens, {figures.loop_ms:.0f} ms of decode"
                " (try --no-repeat-ngram 30)",
            )
        events = figures.trace_events
        table.add_row("trace events", str(events) if events is not None else "none (profile off)")
    static = result.static_cache
    if static is not None:
        compiled = f"compiled ({static.compile_backend})" if static.compiled else "not compiled"
        table.add_row("static cache", f"{static.length} positions, {compiled}")
        table.add_row(
            "warm-up s (compile s)", f"{static.warmup_seconds:.1f} ({static.compile_seconds:.1f}), outside timings"
        )
        recompiled = sum(1 for row in result.rows if row.get("compiled_graphs"))
        if recompiled:
            table.add_row("images that recompiled", str(recompiled))
    table.add_row("run directory", str(result.run_dir))
    return table


def print_summary(result: CaptureResult, console: Console | None = None) -> None:
    """Print the summary table on stdout."""
    (console or Console()).print(summary_table(result))
