"""Per-image and per-step tables written to disk as batches of images complete, read back at the end.

analyze computes ``analysis/timings.parquet`` (and the other per-image and per-step tables) a
batch of images at a time (analyze/runner.py). Each batch's rows are added to a spool, which
writes them to a Parquet part file (temp file, then rename: a part on disk is whole) in a hidden
temp folder as soon as ``PART_ROWS`` rows are pending, so between batches a spool holds fewer
than that in memory, whatever the run's size. ``finish`` reads the parts back (analyze/ordered.py)
and writes the final files atomically; the folder is removed whether analyze ends or fails (no
reader reads ``.*.tmp`` names).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dsocr import rundir

#: A part file's name: its number, zero-padded so that names sort in the order written.
_PART = "part-{:07d}.parquet"
#: Rows a spool holds before it writes them as one part. Writing a Parquet file costs about 9 ms
#: whatever its size (a column's set-up, compression), and every pass at the end reads each part:
#: an untraced chunk's 512 timings rows a part made 80 parts at 10,000 pages, 5 with this. At about
#: 200 bytes a row, 1.6 MB pending at most per spool.
PART_ROWS = 8192


class TableSpool:
    """Tables of one schema, written to part files ``PART_ROWS`` rows or more at a time, in the
    order added. State: the tables added since the last part was written."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self.folder = folder
        self.schema = schema
        #: Parts written (their names follow from their numbers: nothing kept per part).
        self.count = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, table: pa.Table) -> None:
        """Add ``table`` (one batch's rows); write the pending rows as the next part, atomically,
        once there are ``PART_ROWS`` of them."""
        if table.num_rows == 0:
            return
        self._pending.append(table.cast(self.schema))
        self._pending_rows += table.num_rows
        if self._pending_rows >= PART_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the pending rows (if any) as the next part: before the parts are read."""
        if not self._pending:
            return
        rundir.write_table_atomic(pa.concat_tables(self._pending), self._part(self.count))
        self.count += 1
        self._pending, self._pending_rows = [], 0

    def _part(self, number: int) -> Path:
        return self.folder / _PART.format(number)

    def read_part(self, number: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Part ``number``'s rows (of ``columns`` only, when given)."""
        path = self._part(number)
        with rundir.reading(path), pq.ParquetFile(path, page_checksum_verification=rundir.PAGE_CHECKSUMS) as part:
            return part.read(columns=None if columns is None else list(columns))

    def tables(self) -> Iterator[pa.Table]:
        """Each part's rows, in the order added, one part at a time."""
        self.flush()
        for number in range(self.count):
            yield self.read_part(number)


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


def kept_spool(schema: pa.Schema) -> TableSpool:
    """A spool in a new hidden temp folder of the system's temp folder that lives as long as the
    spool object (removed when it is collected, or at exit): rows read again after analyze returns
    (summary.json's lists per image, ``Analysis.timings``)."""
    folder = Path(tempfile.mkdtemp(prefix=".dsocr-rows-", suffix=".tmp"))
    spool = TableSpool(folder, schema)
    weakref.finalize(spool, shutil.rmtree, folder, ignore_errors=True)
    return spool
