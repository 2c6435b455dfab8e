"""predictions.parquet is version 2 since PDF pages; version 1 files (images only) are still read."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsocr import schema
from dsocr.errors import SchemaMismatchError
from dsocr.rundir import read_checked

V1_COLUMNS = ("image_index", "image_path", "image_md5", "status")


def _write(path: Path, version: bytes) -> Path:
    fields = [schema.PREDICTIONS.field(name) for name in V1_COLUMNS]
    metadata = {schema.TABLE_KEY: b"predictions", schema.VERSION_KEY: version}
    table = pa.table({"image_index": [0], "image_path": ["/a.png"], "image_md5": ["0" * 32], "status": ["ok"]})
    pq.write_table(table.cast(pa.schema(fields, metadata=metadata)), path)
    return path


def test_predictions_are_written_as_version_2_and_other_tables_stay_1() -> None:
    assert schema.PREDICTIONS.metadata[schema.VERSION_KEY] == b"2"
    assert schema.TRACE.metadata[schema.VERSION_KEY] == str(schema.SCHEMA_VERSION).encode() == b"1"


def test_a_version_1_predictions_file_is_read_with_the_new_columns_null(tmp_path: Path) -> None:
    table = read_checked(_write(tmp_path / "predictions.parquet", b"1"), "predictions")
    row = table.to_pylist()[0]
    assert row["image_path"] == "/a.png"
    assert (row["page"], row["source_path"], row["loop_start_step"]) == (None, None, None)


def test_a_later_predictions_version_is_refused_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "predictions.parquet", b"3")
    with pytest.raises(SchemaMismatchError, match=r"predictions schema version 3, this dsocr reads version 1 and 2$"):
        read_checked(path, "predictions")
