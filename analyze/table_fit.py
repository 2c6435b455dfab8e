"""Tables that fit the terminal without cutting a number or a header.

Rich fits a table that is too wide by cutting cells (``ca…``, ``13…``). Here every column keeps
its natural width except one name column, which takes the width the others leave: its names
are shortened in the middle (analyze/names.py); with ``--wide`` they are printed whole, one
line per row. A table that does not fit even so is printed at its natural width, and the
terminal wraps its lines: nothing is cut.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from dsocr.analyze.names import demangle_all, short_name
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table

#: Names get at least this many characters, whatever the terminal width.
MIN_NAME_WIDTH = 16
#: Wide enough that rich measures a table's natural width without constraint.
_MEASURE_WIDTH = 100_000

#: Builds the table with each name rendered by the given function.
TableBuilder = Callable[[Callable[[str], str]], Table]


def natural_width(table: Table) -> int:
    """The width ``table`` takes when nothing constrains it."""
    console = Console(width=_MEASURE_WIDTH, file=io.StringIO(), color_system=None)
    return Measurement.get(console, console.options, table).maximum


def title_on_one_line(table: Table, max_width: int) -> Table:
    """Widen ``table`` to its title and caption where they are wider than its columns: rich wraps
    a title at the table's own width (a 42-column table split its 44-character title in two),
    however wide the terminal. Never past ``max_width``."""
    texts = [text for text in (table.title, table.caption) if isinstance(text, str)]
    widest = max((len(text) for text in texts), default=0)
    table.min_width = min(max(table.min_width or 0, widest), max_width)
    return table


def _keep_whole(table: Table, max_width: int) -> Table:
    """No column is ever cut; a table wider than ``max_width`` renders at its own width."""
    for column in table.columns:
        column.no_wrap = True
    needed = natural_width(table)
    if needed > max_width:
        table.width = needed
    return title_on_one_line(table, max_width)


@dataclass(frozen=True)
class Whole:
    """A table of figures, printed without cutting any cell."""

    table: Table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield _keep_whole(self.table, options.max_width)


@dataclass(frozen=True)
class NamedTable:
    """A table with one column of kernel or operator names that takes the width the other
    columns leave; built when printed, for the width it is printed at."""

    build: TableBuilder
    names: tuple[str, ...]
    name_column: int
    wide: bool = False

    def _fixed_width(self) -> int:
        """The table's width without its names (the name column as wide as its header)."""
        table = self.build(lambda name: "")
        header = len(str(table.columns[self.name_column].header))
        return natural_width(table) - header

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.wide:  # one line per row, as long as its name: the terminal (or less -S) shows it
            full = demangle_all(self.names)
            yield _keep_whole(self.build(lambda name: full.get(name, name)), options.max_width)
            return
        width = max(options.max_width - self._fixed_width(), MIN_NAME_WIDTH)
        yield _keep_whole(self.build(lambda name: short_name(name, width)), options.max_width)
