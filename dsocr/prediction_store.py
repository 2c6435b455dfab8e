"""A run's prediction rows, read by column and by image: what lets analyze read a 10,000-page run's
predictions without holding them.

A row's bytes are mostly its per-step lists and its output text (``BULK_COLUMNS``: 12.3 bytes per
decode step by the schema's types, 63 MB for 10,000 pages of 512 tokens). ``PredictionStore``
reads some columns of every image at once (``read``, for readers that hold them: emit, compare)
or a slice of rows at a time (``slices``, analyze), with Parquet projection, and whole rows for
a few images at a time (``rows``), a Parquet row group at a time:
predictions.parquet is written in row groups of ``ROW_GROUP_ROWS`` rows
(``rundir.finalize_predictions``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dsocr import rundir, schema
from dsocr.errors import RunDirError

#: The columns that grow with an image's tokens: read per group of images, never for the whole run.
BULK_COLUMNS = ("text_raw", "decode_step_ms", "decode_step_seq_len", "decode_step_cold", "decode_step_traced")
#: Every other column of PREDICTIONS: a few hundred bytes per image whatever its tokens (340 in
#: the 40,000-page run of docs/scale.md).
SCALAR_COLUMNS = tuple(name for name in schema.PREDICTIONS.names if name not in BULK_COLUMNS)
#: Rows per row group of predictions.parquet: what ``rows`` decodes at once (about 1.6 MB of
#: per-step lists at 512 tokens a page), small enough for any run, large enough that the
#: per-row-group overhead of a Parquet file stays negligible.
ROW_GROUP_ROWS = 256
#: Rows of the scalar columns made into one table by ``slices``.
SLICE_ROWS = 4096


@dataclass
class PredictionStore:
    """Where each image's row lives (file, row group, row): the kept row per image, later files
    winning (a part written after the finished file replaces that image's row), sorted by image.
    State: the row group ``rows`` decoded last, kept for the next call (groups of images come in
    image order, so the next group of images usually starts in it)."""

    files: list[Path]
    #: Per kept row, sorted by image_index: its image_index, file, row group and row in that group.
    image_index: np.ndarray
    file_of: np.ndarray
    group_of: np.ndarray
    row_of: np.ndarray
    #: Per kept row: its row in its file (row groups one after another).
    file_row_of: np.ndarray
    _last_group: tuple[tuple[int, int], pa.Table] | None = field(default=None, repr=False)

    @property
    def num_rows(self) -> int:
        return int(self.image_index.size)

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """``columns`` (default: every column) of every kept row, sorted by image; columns a file's
        older schema lacks are nulls. Reads those columns only (Parquet projection)."""
        names = list(schema.PREDICTIONS.names if columns is None else columns)
        fields = [schema.PREDICTIONS.field(name) for name in names]
        if not self.files:
            return pa.schema(fields).empty_table()
        tables = [_read_columns(path, fields) for path in self.files]
        # The kept rows' positions in the files' rows one after another.
        starts = np.cumsum([0] + [table.num_rows for table in tables])[:-1]
        positions = starts[self.file_of] + self.file_row_of
        return pa.concat_tables(tables).take(pa.array(positions, type=pa.int64()))

    def rows(self, image_indexes: np.ndarray | Sequence[int]) -> pa.Table:
        """Whole rows (every column) of these images, in this order, a row group at a time: each
        row group they touch is decoded once per call (the last one is kept for the next call)."""
        wanted = np.asarray(image_indexes, dtype=np.int64)
        if wanted.size == 0:
            return schema.PREDICTIONS.empty_table()
        at = np.searchsorted(self.image_index, wanted)
        found = (at < self.image_index.size) & (self.image_index[np.minimum(at, self.image_index.size - 1)] == wanted)
        if not found.all():
            missing = wanted[~found][:3].tolist()
            raise RunDirError(f"predictions: no row for image_index {missing}")
        return self._take(at, None)

    def slices(self, columns: Sequence[str]) -> Iterator[pa.Table]:
        """``columns`` of every kept row, sorted by image, ``SLICE_ROWS`` rows at a time (Parquet
        projection, a row group at a time): a pass over the run's scalar columns that never holds them all."""
        fields = [schema.PREDICTIONS.field(name) for name in columns]
        if not self.num_rows:
            yield pa.schema(fields).empty_table()
            return
        for start in range(0, self.num_rows, SLICE_ROWS):
            yield self._take(np.arange(start, min(start + SLICE_ROWS, self.num_rows)), fields)

    def _take(self, at: np.ndarray, fields: list[pa.Field] | None) -> pa.Table:
        """The kept rows ``at`` (positions in the store), in this order, of ``fields`` (None: every
        column, a row group at a time; else each file's row groups read together)."""
        groups = np.stack([self.file_of[at], self.group_of[at]], axis=1)
        order = np.lexsort((self.row_of[at], groups[:, 1], groups[:, 0]))
        pieces: list[pa.Table] = []
        piece_rows: list[np.ndarray] = []
        by_file: dict[int, list[tuple[int, np.ndarray]]] = {}
        for key in np.unique(groups[order], axis=0):
            file_id, group = int(key[0]), int(key[1])
            members = order[(groups[order, 0] == file_id) & (groups[order, 1] == group)]
            by_file.setdefault(file_id, []).append((group, members))
        for file_id, wanted in by_file.items():
            if fields is None:
                tables = [self._group(file_id, group) for group, _ in wanted]
            else:
                tables = self._groups_columns(file_id, [group for group, _ in wanted], fields)
            for table, (_, members) in zip(tables, wanted, strict=True):
                pieces.append(table.take(pa.array(self.row_of[at][members], type=pa.int64())))
                piece_rows.append(members)
        table = pa.concat_tables(pieces)
        # Back to the asked order: ``table``'s row k is the asked row ``concatenated[k]``.
        return table.take(pa.array(np.argsort(np.concatenate(piece_rows), kind="stable"), type=pa.int64()))

    def _group(self, file_id: int, group: int) -> pa.Table:
        if self._last_group is not None and self._last_group[0] == (file_id, group):
            return self._last_group[1]
        path = self.files[file_id]
        with rundir.reading(path), pq.ParquetFile(path, page_checksum_verification=rundir.PAGE_CHECKSUMS) as parquet:
            table = rundir.conform(parquet.read_row_group(group), schema.PREDICTIONS, schema.PREDICTIONS.metadata)
        self._last_group = ((file_id, group), table)
        return table

    def _groups_columns(self, file_id: int, groups: list[int], fields: list[pa.Field]) -> list[pa.Table]:
        """``fields`` of these row groups of one file (one open of the file)."""
        path = self.files[file_id]
        with rundir.reading(path), pq.ParquetFile(path, page_checksum_verification=rundir.PAGE_CHECKSUMS) as parquet:
            present = [item.name for item in fields if item.name in parquet.schema_arrow.names]
            return [
                rundir.conform(parquet.read_row_group(group, columns=present), fields, schema.PREDICTIONS.metadata)
                for group in groups
            ]


def open_predictions(files: Sequence[Path]) -> PredictionStore:
    """A store over predictions ``files`` (the finished file first, then the parts by name), each
    already checked to be a predictions table of a version this reader knows."""
    keys, file_ids, group_ids, row_ids, file_rows = [], [], [], [], []
    for file_id, path in enumerate(files):
        with rundir.reading(path), pq.ParquetFile(path, page_checksum_verification=rundir.PAGE_CHECKSUMS) as parquet:
            first_row = 0
            for group in range(parquet.metadata.num_row_groups):
                indexes = parquet.read_row_group(group, columns=["image_index"]).column(0).to_numpy()
                keys.append(indexes.astype(np.int64))
                file_ids.append(np.full(indexes.size, file_id, dtype=np.int32))
                group_ids.append(np.full(indexes.size, group, dtype=np.int32))
                row_ids.append(np.arange(indexes.size, dtype=np.int64))
                file_rows.append(first_row + row_ids[-1])
                first_row += indexes.size
    if not keys:
        empty = np.zeros(0, dtype=np.int64)
        return PredictionStore(list(files), empty, empty.astype(np.int32), empty.astype(np.int32), empty, empty)
    image_index = np.concatenate(keys)
    # The last row per image wins (later files: parts over the finished file), then sorted by image.
    reversed_first = np.unique(image_index[::-1], return_index=True)[1]
    kept = image_index.size - 1 - reversed_first  # sorted by image_index, as np.unique returns
    return PredictionStore(
        list(files),
        image_index[kept],
        np.concatenate(file_ids)[kept],
        np.concatenate(group_ids)[kept],
        np.concatenate(row_ids)[kept],
        np.concatenate(file_rows)[kept],
    )


def _read_columns(path: Path, fields: list[pa.Field]) -> pa.Table:
    with rundir.reading(path), pq.ParquetFile(path, page_checksum_verification=rundir.PAGE_CHECKSUMS) as parquet:
        present = [item.name for item in fields if item.name in parquet.schema_arrow.names]
        return rundir.conform(parquet.read(columns=present), fields, schema.PREDICTIONS.metadata)
