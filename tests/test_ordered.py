"""Spooled rows read back in order by a k-way merge of runs of parts (analyze/ordered.py): real
Parquet part files, the order analyze adds images in, and random ones."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from dsocr.analyze import ordered as ordered_module
from dsocr.analyze import spool as spool_module
from dsocr.analyze.ordered import BY_RANK_AND_IMAGE, Order, Slices, ordered
from dsocr.analyze.spool import TableSpool, kept_spool

ROWS = pa.schema([("rank", pa.int32()), ("image_index", pa.int32()), ("stage", pa.string()), ("value", pa.float64())])
STAGES = ("vision", "prefill_text", "decode", "other")


def _image_rows(rank: int, image: int) -> list[dict[str, object]]:
    return [
        {"rank": rank, "image_index": image, "stage": stage, "value": image + n / 10} for n, stage in enumerate(STAGES)
    ]


def _spool(folder: Path, parts: list[list[tuple[int, int]]]) -> TableSpool:
    folder.mkdir(parents=True, exist_ok=True)
    spool = TableSpool(folder, ROWS)
    for part in parts:
        spool.add(pa.Table.from_pylist([row for rank, image in part for row in _image_rows(rank, image)], schema=ROWS))
    return spool


def _by_image(table: pa.Table) -> np.ndarray:
    return table["image_index"].to_numpy().astype(np.int64)


BY_IMAGE = Order(("image_index",), _by_image)


@pytest.fixture(autouse=True)
def part_per_add(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each table added is a part of its own (what the runs below are made of)."""
    monkeypatch.setattr(spool_module, "PART_ROWS", 1)


def _expected(parts: list[list[tuple[int, int]]], key: str) -> list[dict[str, object]]:
    rows = [row for part in parts for rank, image in part for row in _image_rows(rank, image)]
    if key == "image":
        return sorted(rows, key=lambda row: row["image_index"])  # stable: an image's rows in their order
    return sorted(rows, key=lambda row: (row["rank"], row["image_index"]))


def _analyze_order(ranks: int, images: int, traced_every: int, batch: int, chunk: int) -> list[list[tuple[int, int]]]:
    """The parts in the order analyze adds them: traced batches by rank and image, then untraced chunks by image."""
    rank_of = {image: image % ranks for image in range(images)}
    traced = sorted((rank_of[image], image) for image in range(images) if image % traced_every == 0)
    untraced = [(rank_of[image], image) for image in range(images) if image % traced_every]
    return [traced[i : i + batch] for i in range(0, len(traced), batch)] + [
        untraced[i : i + chunk] for i in range(0, len(untraced), chunk)
    ]


def test_analyze_s_parts_merge_to_prediction_order_holding_a_part_per_run(tmp_path: Path) -> None:
    """2 ranks, every 3rd image traced: 4 runs (rank 0's batches, the batch that holds both
    ranks' images, rank 1's batches, the untraced chunks)."""
    parts = _analyze_order(ranks=2, images=60, traced_every=3, batch=4, chunk=8)
    spool = _spool(tmp_path, parts)
    runs = len(ordered_module._runs(spool, BY_IMAGE))
    assert runs == 4
    tables = list(ordered(spool, BY_IMAGE))
    assert pa.concat_tables(tables).to_pylist() == _expected(parts, "image")
    # Never more than a part per run in memory: each table yielded is at most a part per run.
    largest_part = max(len(part) for part in parts) * len(STAGES)
    assert max(table.num_rows for table in tables) <= runs * largest_part
    by_rank = pa.concat_tables(list(ordered(spool, BY_RANK_AND_IMAGE))).to_pylist()
    assert by_rank == _expected(parts, "rank")


def test_each_part_is_read_once_for_its_keys_and_once_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = _analyze_order(ranks=1, images=40, traced_every=2, batch=3, chunk=5)
    assert len(ordered_module._runs(_spool(tmp_path / "runs", parts), BY_IMAGE)) == 2  # traced, untraced
    spool = _spool(tmp_path / "spool", parts)
    reads: list[tuple[int, tuple[str, ...] | None]] = []
    read_part = TableSpool.read_part

    def spy(self: TableSpool, number: int, columns: list[str] | None = None) -> pa.Table:
        reads.append((number, None if columns is None else tuple(columns)))
        return read_part(self, number, columns)

    monkeypatch.setattr(TableSpool, "read_part", spy)
    rows = [table for table in Slices.spooled(spool, BY_IMAGE).columns("value")]
    assert all(table.column_names == ["value"] for table in rows)
    assert sorted(reads) == sorted(
        [(number, ("image_index",)) for number in range(len(parts))]
        + [(number, ("value", "image_index")) for number in range(len(parts))]
    )


@pytest.mark.parametrize("seed", range(20))
def test_random_parts_come_back_sorted(tmp_path: Path, seed: int) -> None:
    """Images in random parts, in random order: the merge is the stable sort by key."""
    rng = random.Random(seed)
    images = [(rng.randrange(3), image) for image in rng.sample(range(1000), rng.randrange(1, 120))]
    parts: list[list[tuple[int, int]]] = []
    while images:
        size = rng.randrange(1, 12)
        part, images = images[:size], images[size:]
        parts.append(sorted(part, key=lambda item: item[1]) if rng.random() < 0.5 else part)
    spool = _spool(tmp_path, parts)
    assert pa.concat_tables(list(ordered(spool, BY_IMAGE))).to_pylist() == _expected(parts, "image")
    by_rank = pa.concat_tables([ROWS.empty_table(), *ordered(spool, BY_RANK_AND_IMAGE)]).to_pylist()
    assert by_rank == _expected(parts, "rank")


def test_where_selects_rows_and_then_orders_an_image_s_rows(tmp_path: Path) -> None:
    spool = _spool(tmp_path, [[(0, 5), (0, 1)], [(0, 3)]])

    def decode(table: pa.Table) -> np.ndarray:
        return np.array([stage == "decode" for stage in table["stage"].to_pylist()])

    selected = Order(("image_index", "stage"), _by_image, where=decode)
    rows = pa.concat_tables(list(ordered(spool, selected))).to_pylist()
    assert [(row["image_index"], row["stage"]) for row in rows] == [(1, "decode"), (3, "decode"), (5, "decode")]
    decode_last = Order(("image_index", "stage"), _by_image, then=decode)
    rows = pa.concat_tables(list(ordered(spool, decode_last))).to_pylist()
    assert [row["stage"] for row in rows[:4]] == ["vision", "prefill_text", "other", "decode"]


def test_an_empty_spool_reads_as_no_rows(tmp_path: Path) -> None:
    slices = Slices.spooled(TableSpool(tmp_path, ROWS), BY_IMAGE)
    assert list(slices) == []
    assert slices.read().num_rows == 0
    assert slices.count() == 0


def test_a_kept_spool_lives_as_long_as_its_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spool = kept_spool(ROWS)
    spool.add(pa.Table.from_pylist(_image_rows(0, 0), schema=ROWS))
    slices = Slices.spooled(spool, BY_IMAGE)
    del spool
    gc.collect()
    assert slices.count() == len(STAGES)  # still readable: the Slices holds the spool
    del slices
    gc.collect()
    assert not list(tmp_path.iterdir())


def test_a_spool_writes_a_part_once_part_rows_are_pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "PART_ROWS", 10)
    spool = TableSpool(tmp_path, ROWS)
    for image in range(5):  # 4 rows an image: a part at 12 rows, then 8 pending
        spool.add(pa.Table.from_pylist(_image_rows(0, image), schema=ROWS))
    assert spool.count == 1
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1
    assert spool.read_part(0).num_rows == 12
    # Reading writes what is pending first: every row comes back, in order.
    rows = pa.concat_tables(list(ordered(spool, BY_IMAGE))).to_pylist()
    assert rows == [row for image in range(5) for row in _image_rows(0, image)]
    assert spool.count == 2
