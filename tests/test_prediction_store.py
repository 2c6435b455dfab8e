"""PredictionStore: a run's prediction rows by column (every image) and by image (whole rows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsocr import prediction_store, rundir, schema
from dsocr.errors import RunDirError
from dsocr.prediction_store import BULK_COLUMNS, SCALAR_COLUMNS


def _row(image_index: int, tokens: int, text: str = "page") -> dict:
    return {
        "image_index": image_index,
        "image_path": f"/pages/{image_index}.png",
        "image_md5": f"{image_index:032x}",
        "status": "ok",
        "text_raw": f"{text} {image_index}",
        "generated_tokens": tokens,
        "decode_step_ms": [float(image_index) + step / 100 for step in range(tokens - 1)],
        "decode_step_cold": [step == 0 for step in range(tokens - 1)],
    }


def _run(
    run_dir: Path, images: int, row_group_rows: int, monkeypatch: pytest.MonkeyPatch, *, shuffled: bool = True
) -> list[dict]:
    """A finished predictions.parquet of ``images`` rows (in shuffled or image order, row groups
    of ``row_group_rows``), as ``rundir.write_predictions`` writes it."""
    order = np.random.default_rng(7).permutation(images).tolist() if shuffled else list(range(images))
    rows = [_row(index, 3 + index % 5) for index in order]
    monkeypatch.setattr(prediction_store, "ROW_GROUP_ROWS", row_group_rows)
    rundir.write_predictions(rundir.rows_to_table(rows, schema.PREDICTIONS), run_dir)
    return rows


def test_finished_file_is_written_in_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tmp_path, 23, 5, monkeypatch)
    metadata = pq.ParquetFile(tmp_path / rundir.PREDICTIONS_FILE).metadata
    assert [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)] == [5, 5, 5, 5, 3]


def test_rows_are_whole_rows_of_the_asked_images_in_the_asked_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, 23, 5, monkeypatch)
    whole = rundir.read_predictions(tmp_path)
    assert whole["image_index"].to_pylist() == list(range(23))  # sorted by image
    store = rundir.open_predictions(tmp_path)
    asked = [17, 2, 3, 22, 0, 9]  # across row groups, out of order
    assert store.rows(asked).to_pylist() == [whole.to_pylist()[index] for index in asked]
    assert store.rows(asked).schema == schema.PREDICTIONS
    assert store.rows([]).num_rows == 0
    with pytest.raises(RunDirError, match="no row for image_index \\[40\\]"):
        store.rows([3, 40])


def _all(store: prediction_store.PredictionStore, columns: list[str] | tuple[str, ...]) -> pa.Table:
    return pa.concat_tables(store.slices(columns))


def test_slices_read_the_asked_columns_a_slice_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tmp_path, 12, 5, monkeypatch)
    monkeypatch.setattr(prediction_store, "SLICE_ROWS", 5)
    store = rundir.open_predictions(tmp_path)
    slices = list(store.slices(SCALAR_COLUMNS))
    assert [table.num_rows for table in slices] == [5, 5, 2]
    scalars = pa.concat_tables(slices)
    assert scalars.column_names == list(SCALAR_COLUMNS)
    assert not set(BULK_COLUMNS) & set(scalars.column_names)
    assert scalars.equals(rundir.read_predictions(tmp_path).select(list(SCALAR_COLUMNS)))  # sorted by image
    # Parquet projection: the bulk columns' pages are not decoded (their bytes are most of the file).
    read_columns: list[list[str] | None] = []
    read_row_group = pq.ParquetFile.read_row_group

    def spy(parquet: pq.ParquetFile, group: int, columns: list[str] | None = None, **kwargs: object):
        read_columns.append(columns)
        return read_row_group(parquet, group, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    _all(store, SCALAR_COLUMNS)
    assert read_columns and all(
        columns is not None and not set(BULK_COLUMNS) & set(columns) for columns in read_columns
    )
    assert next(iter(rundir.open_predictions(tmp_path / "none").slices(["image_index"]))).num_rows == 0


def test_rows_decode_each_row_group_they_touch_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tmp_path, 40, 8, monkeypatch, shuffled=False)  # as finalize_predictions writes it
    store = rundir.open_predictions(tmp_path)
    decoded: list[int] = []
    read_row_group = pq.ParquetFile.read_row_group

    def spy(parquet: pq.ParquetFile, group: int, *args: object, **kwargs: object):
        decoded.append(group)
        return read_row_group(parquet, group, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    store.rows([1, 2, 3, 9])  # groups 0 and 1
    assert decoded == [0, 1]
    store.rows([10, 15])  # group 1 again: the last decoded group is kept
    assert decoded == [0, 1]
    store.rows(list(range(39, -1, -1)))  # every group, each decoded once in this call
    assert decoded[2:] == [0, 1, 2, 3, 4]


def test_a_part_replaces_the_finished_rows_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed run: a part written after the finished file wins, by column and by image."""
    _run(tmp_path, 10, 4, monkeypatch)
    rundir.write_prediction_part(tmp_path, _row(6, 9, text="again"))
    rundir.write_prediction_part(tmp_path, _row(12, 4, text="new"))
    store = rundir.open_predictions(tmp_path)
    whole = _all(store, schema.PREDICTIONS.names)
    assert whole["image_index"].to_pylist() == [*range(10), 12]
    assert whole.to_pylist()[6]["text_raw"] == "again 6"
    assert store.rows([12, 6]).to_pylist() == [whole.to_pylist()[10], whole.to_pylist()[6]]
    assert store.rows([6])["decode_step_ms"].to_pylist() == [_row(6, 9)["decode_step_ms"]]


def test_an_older_file_lacking_columns_reads_them_as_nulls(tmp_path: Path) -> None:
    table = rundir.rows_to_table([_row(0, 4), _row(1, 5)], schema.PREDICTIONS)
    older = table.drop_columns(["image_sha256", "loop_ms"]).replace_schema_metadata(schema.PREDICTIONS.metadata)
    rundir.write_table_atomic(older, tmp_path / rundir.PREDICTIONS_FILE)
    store = rundir.open_predictions(tmp_path)
    assert _all(store, ["image_index", "loop_ms"]).to_pylist() == [
        {"image_index": 0, "loop_ms": None},
        {"image_index": 1, "loop_ms": None},
    ]
    assert store.rows([1]).to_pylist()[0]["image_sha256"] is None
