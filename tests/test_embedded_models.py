"""The models that ship inside dsocr, by name: ``--model embedded:NAME``, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch", reason="dsocr capture needs the [capture] extra")

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr._app import app
from dsocr.rundir import read_run_json


def test_the_random_tiny_model_is_available_by_name(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = tmp_path / "run"
    arguments = [str(sample_pages[0]), "--out", str(run_dir), "--max-new-tokens", "2", "--profile", "off"]
    result = CliRunner().invoke(app, ["capture", *arguments, "--model", "embedded:tiny-deepseek-ocr2"])
    assert result.exit_code == 0, result.output
    record = read_run_json(run_dir)
    assert (record.model.id, record.model.source, record.model.about) == (
        "embedded:tiny-deepseek-ocr2",
        "random-weights",
        None,
    )
    assert record.config.model == "embedded:tiny-deepseek-ocr2"  # the name, not a path under the cwd


def test_an_unknown_embedded_name_is_one_error_line(tmp_path: Path, sample_pages: list[Path]) -> None:
    arguments = [str(sample_pages[0]), "--out", str(tmp_path / "run"), "--model", "embedded:nope"]
    result = CliRunner().invoke(app, ["capture", *arguments])
    assert result.exit_code == 1
    assert result.output == (
        "Error: --model embedded:nope: no such embedded model (embedded: layout-deepseek-ocr2, tiny-deepseek-ocr2)\n"
    )
