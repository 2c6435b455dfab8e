"""Read a run's whole trace as one table: for tests that check what capture wrote."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dsocr import schema
from dsocr.rundir import trace_files


def read_trace(run_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """The whole trace of a run, schema-checked (columns: a subset to read)."""
    files = trace_files(run_dir)
    if not files:
        empty = schema.TRACE.empty_table()
        return empty if columns is None else empty.select(columns)
    for path in files:
        schema.check_table(pq.read_schema(path), "trace", source=str(path))
    dataset = ds.dataset([str(path) for path in files], format="parquet", schema=schema.TRACE)
    return dataset.to_table(columns=columns)
