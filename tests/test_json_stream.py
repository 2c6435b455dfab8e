"""summary.json is written as it is encoded, its per-image lists made a slice at a time: the same bytes."""

from __future__ import annotations

import io
import json
import math
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from analyze_helpers import gpu_run_or_skip
from dsocr.analyze import table_rows
from dsocr.analyze.ordered import Slices
from dsocr.analyze.roofline import BY_IMAGE, image_rooflines
from dsocr.analyze.runner import analyze_run
from dsocr.analyze.spool import TableSpool
from dsocr.analyze.summary import to_json
from dsocr.analyze.table_rows import SliceRows

from dsocr import rundir, schema
from dsocr.json_stream import RowStream, iter_json, write_json

FIXTURES = Path(__file__).parent / "data"


def _value(rng: random.Random, depth: int) -> object:
    scalars = [None, True, False, 0, -7, 2**70, 1.5, -0.0, 1e300, math.inf, math.nan, "", 'é ü \n "q" \\ \t']
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(scalars)
    if rng.random() < 0.5:
        return {f"k{index}": _value(rng, depth - 1) for index in range(rng.randrange(4))}
    items = [_value(rng, depth - 1) for _ in range(rng.randrange(4))]
    return tuple(items) if rng.random() < 0.2 else items


def test_iter_json_gives_json_dumps_bytes() -> None:
    rng = random.Random(11)
    for _ in range(300):
        value = _value(rng, 5)
        assert "".join(iter_json(value)) == json.dumps(value, ensure_ascii=False, indent=2)


def test_a_row_stream_is_written_as_the_list_it_makes() -> None:
    rows = [{"image_index": index, "steps": [1.5] * index, "nested": {"a": []}} for index in range(5)]
    made: list[int] = []

    def items():
        for row in rows:
            made.append(row["image_index"])
            yield row

    value = {"before": 1, "images": RowStream(len(rows), items), "empty": RowStream(0, lambda: iter(())), "after": {}}
    buffer = io.StringIO()
    write_json(value, buffer)
    expected = {"before": 1, "images": rows, "empty": [], "after": {}}
    assert buffer.getvalue() == json.dumps(expected, ensure_ascii=False, indent=2) + "\n"
    assert made == list(range(5))  # made while written, once


def test_a_non_string_key_is_refused() -> None:
    with pytest.raises(TypeError, match="keys are strings"):
        "".join(iter_json({1: "a"}))
    with pytest.raises(TypeError, match="not JSON serializable"):
        "".join(iter_json({"a": object()}))


def test_slice_rows_make_items_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_rows, "SLICE_ITEMS", 3)
    table = pa.table({"image_index": list(range(8)), "value": [index / 2 for index in range(8)]})
    rows = SliceRows(Slices.of(table))
    assert len(rows) == 8
    assert list(rows) == table.to_pylist()
    assert rows == table.to_pylist()
    assert rows[-1] == {"image_index": 7, "value": 3.5}
    assert rows[2:5] == table.to_pylist()[2:5]
    with pytest.raises(IndexError):
        rows[8]
    assert list(SliceRows(Slices.of(table.slice(0, 0)))) == []


def test_slice_rows_group_an_items_rows_across_slices() -> None:
    """An image's rows split between two slices still make one item."""
    halves = [
        pa.table({"rank": [0, 0, 0], "image_index": [1, 1, 2], "stage": ["a", "b", "a"]}),
        pa.table({"rank": [0, 1], "image_index": [2, 2], "stage": ["b", "a"]}),
    ]
    slices = Slices(
        lambda columns: [t if columns is None else t.select(list(columns)) for t in halves], halves[0].schema
    )
    rows = SliceRows(slices, group=("rank", "image_index"), make=lambda rows: [row["stage"] for row in rows])
    assert list(rows) == [["a", "b"], ["a", "b"], ["a"]]
    assert len(rows) == 3
    # An item over three tables, one of them wholly its own.
    thirds = [
        pa.table({"rank": [0, 0], "image_index": [1, 1], "stage": ["a", "b"]}),
        pa.table({"rank": [0], "image_index": [1], "stage": ["c"]}),
        pa.table({"rank": [0, 0], "image_index": [1, 3], "stage": ["d", "a"]}),
    ]
    slices = Slices(
        lambda columns: [t if columns is None else t.select(list(columns)) for t in thirds], thirds[0].schema
    )
    rows = SliceRows(slices, group=("rank", "image_index"), make=lambda rows: [row["stage"] for row in rows])
    assert list(rows) == [["a", "b", "c", "d"], ["a"]]


def test_image_rooflines_group_each_images_rows_by_rank_and_image(tmp_path: Path) -> None:
    """One object per image (sorted by rank, then image), its stage rows first, from parts added
    in another order (as a run's batches and untraced chunks add them)."""
    spool = TableSpool(tmp_path, schema.ROOFLINE)
    parts = [
        [(1, 4, "vision", 1.0), (0, 2, "vision", 2.0), (1, 4, "decode", 4.0), (0, 2, "prefill", 3.0)],
        [(0, 0, "decode", 6.0), (0, 0, "vision", 5.0)],
    ]
    for part in parts:
        spool.add(
            pa.Table.from_pylist(
                [{"rank": r, "image_index": i, "stage": stage, "flops": flops} for r, i, stage, flops in part],
                schema=schema.ROOFLINE,
            )
        )
    images = list(image_rooflines(Slices.spooled(spool, BY_IMAGE)))
    assert [(image["rank"], image["image_index"], list(image)[2:]) for image in images] == [
        (0, 0, ["vision", "decode"]),
        (0, 2, ["vision", "prefill"]),
        (1, 4, ["vision", "decode"]),
    ]
    assert images[1]["prefill"].flops == 3.0
    assert list(image_rooflines(Slices.of(schema.ROOFLINE.empty_table()))) == []


@pytest.mark.parametrize("fixture", ["gpu-run", "gpu-flops-run"])
def test_summary_json_is_the_json_module_text_of_the_summary(tmp_path: Path, fixture: str) -> None:
    gpu_run_or_skip()
    run_dir = shutil.copytree(FIXTURES / fixture, tmp_path / "run")
    analysis = analyze_run(run_dir)
    written = (run_dir / rundir.ANALYSIS_DIR / "summary.json").read_text(encoding="utf-8")
    summary = to_json(analysis.summary)
    assert summary["images"] and summary["roofline"]["images"]
    assert written == json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
