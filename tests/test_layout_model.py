"""The embedded default, the shipped layout model (``embedded:layout-deepseek-ocr2``,
docs/layout-model.md), on a sample page through the real capture path on CPU: it stops at EOS and
its boxes land on drawn blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr._app import app
from dsocr.rundir import read_predictions, read_run_json
from train import evaluate

LAYOUT_MODEL = "embedded:layout-deepseek-ocr2"
TABLE_PAGE = 1  # index in dsocr.capture.samples; the page run 3 placed two boxes on, on GPU and CPU


@pytest.mark.slow
def test_layout_model_stops_at_eos_with_boxes_on_the_drawn_blocks(tmp_path: Path, sample_pages: list[Path]) -> None:
    page = sample_pages[TABLE_PAGE]
    assert page.name == "table-page.png"
    run_dir = tmp_path / "run"
    # No --model: the default is what the README demo runs.
    result = CliRunner().invoke(app, ["capture", str(page), "--out", str(run_dir), "--profile", "off"])
    assert result.exit_code == 0, result.output
    assert read_run_json(run_dir).model.id == LAYOUT_MODEL
    (row,) = read_predictions(run_dir).to_pylist()
    assert row["stop_reason"] == "eos"
    _, drawn = evaluate.sample_page(TABLE_PAGE)
    predicted = evaluate.predicted_blocks(row["text_raw"])
    assert predicted, row["text_raw"]
    assert len(evaluate.match(predicted, drawn)) >= 1  # IoU >= 0.5 with a drawn block
    # run.json says what the model is: its card, with the evaluation figures it shipped with.
    about = read_run_json(run_dir).model.about
    assert about is not None and "synthetic pages" in about["what"]
    assert about["evaluation"]["held_out"]["pages"] == 100
