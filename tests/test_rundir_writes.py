"""Atomic writes publish files with the mode a plain open() gives, and leave no temp file behind."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsocr import rundir, schema

UMASK = 0o027


@pytest.fixture
def umask() -> Iterator[int]:
    previous = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_published_files_get_the_mode_open_gives(tmp_path: Path, umask: int) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    json_file, parquet_file = tmp_path / "a" / "run.json", tmp_path / "b" / "t.parquet"
    rundir.write_json_atomic(json_file, {"k": 1})
    rundir.write_table_atomic(schema.KERNELS.empty_table(), parquet_file)
    assert _mode(json_file) == _mode(parquet_file) == _mode(plain) == rundir.FILE_MODE & ~umask
    # Nothing but the published files: every temp file was renamed or removed.
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["plain.txt", "run.json", "t.parquet"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    rundir.write_table_atomic(schema.KERNELS.empty_table(), target)
    before = target.read_bytes()
    with pytest.raises((TypeError, AttributeError)):  # fails while writing the temp file
        rundir.write_table_atomic("not a table", target)  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["t.parquet"]
