"""`capture --trace-images N`: every Nth image traced, every image timed; analyze shows the coverage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from analyze_helpers import capture_run, invoke

from dsocr.rundir import read_predictions, read_run_json, trace_files

pytest.importorskip("torch", reason="dsocr capture needs the [capture] extra")


def test_every_nth_image_is_traced_and_every_image_timed(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = capture_run(tmp_path / "run", sample_pages, "--max-new-tokens", "3", "--trace-images", "2")
    run = read_run_json(run_dir)
    assert run.config is not None and run.config.trace_images == 2
    traced = sorted(
        {int(pq.read_table(path, columns=["image_index"])["image_index"][0].as_py()) for path in trace_files(run_dir)}
    )
    assert traced == [0, 2]  # the first always, then every second
    rows = {row["image_index"]: row for row in read_predictions(run_dir).to_pylist()}
    assert all(rows[index]["decode_ms"] is not None and rows[index]["vision_ms"] is not None for index in range(3))
    assert not any(rows[1]["decode_step_traced"])
    assert any(rows[0]["decode_step_traced"])
    result = invoke("analyze", run_dir, "--json")
    assert result.exit_code == 0, result.output
    coverage = json.loads(result.output)["coverage"]
    assert (coverage["images_with_trace"], coverage["images_ok"], coverage["trace_images_every"]) == (2, 3, 2)
    text = invoke("analyze", run_dir)
    assert "images traced: 2 of 3 (--trace-images 2)" in text.output
    report = invoke("report", run_dir)
    assert report.exit_code == 0, report.output
    page = (run_dir / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "<th>images traced</th><td>2 of 3 (--trace-images 2)</td>" in page


def test_resume_keeps_the_recorded_trace_images(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = capture_run(tmp_path / "run", sample_pages[:1], "--max-new-tokens", "2", "--trace-images", "3")
    result = invoke("capture", "--resume", "--out", run_dir, "--trace-images", "2")
    assert result.exit_code == 1
    assert "differs in trace_images" in result.output


def test_trace_images_needs_a_trace(tmp_path: Path, sample_pages: list[Path]) -> None:
    result = invoke("capture", sample_pages[0], "--out", tmp_path / "run", "--profile", "off", "--trace-images", "2")
    assert result.exit_code == 1
    assert "Error: --trace-images needs a trace" in result.output
    result = invoke("capture", sample_pages[0], "--out", tmp_path / "run2", "--trace-images", "0")
    assert result.exit_code == 1
    assert "Error: --trace-images must be between 1" in result.output
