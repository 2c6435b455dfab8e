"""Per-image tables written to disk as each batch of images completes, read back once at the end.

analyze computes ``analysis/timings.parquet`` a batch of images at a time (analyze/runner.py).
Each batch's rows go to a Parquet part file of their own as soon as the batch is done (temp
file, then rename: a part on disk is whole), in a hidden temp folder beside the final file, so
between batches no timings row is held in memory. ``finish`` reads the parts back in the order
they were written, puts the rows in prediction order and writes the final file atomically; the
folder is removed whether analyze ends or fails (no reader reads ``.*.tmp`` names).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dsocr import rundir

#: A part file's name: its number, zero-padded so that names sort in the order written.
_PART = "part-{:07d}.parquet"


class TableSpool:
    """Tables of one schema, each written to its own part file when added."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self.folder = folder
        self.schema = schema
        #: Parts written (their names follow from their numbers: nothing kept per part).
        self.count = 0

    def add(self, table: pa.Table) -> None:
        """Write ``table`` (one batch's rows) to the next part file, atomically (an empty one: none)."""
        if table.num_rows == 0:
            return
        rundir.write_table_atomic(table.cast(self.schema), self._part(self.count))
        self.count += 1

    def _part(self, number: int) -> Path:
        return self.folder / _PART.format(number)

    def tables(self) -> Iterator[pa.Table]:
        """Each part's rows, in the order added, one part at a time."""
        for number in range(self.count):
            path = self._part(number)
            with rundir.reading(path):
                yield pq.read_table(path, schema=self.schema)

    def read(self) -> pa.Table:
        """Every row added, in the order added (an empty table of the schema when none was)."""
        return pa.concat_tables([self.schema.empty_table(), *self.tables()])


@contextmanager
def table_spool(beside: Path | None, schema: pa.Schema) -> Iterator[TableSpool]:
    """A spool in a new hidden temp folder beside the file ``beside`` (in the system's temp
    folder when None: an analysis that writes nothing into the run), removed on exit."""
    parent = tempfile.gettempdir() if beside is None else beside.parent
    prefix = ".dsocr-spool-" if beside is None else f".{beside.name}."
    if beside is not None:
        rundir.make_folder(beside.parent)
    with rundir.writing(beside or Path(parent)):
        folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    try:
        yield TableSpool(folder, schema)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
