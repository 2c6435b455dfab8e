"""`capture --keep-kineto`: torch's own chrome-trace JSON kept beside the Parquet made from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from analyze_helpers import capture_run, invoke

from dsocr.rundir import KINETO_DIR, PENDING_DIR, TRACE_DIR, read_run_json, trace_files

pytest.importorskip("torch", reason="dsocr capture needs the [capture] extra")

PARQUET_NAME = re.compile(r"image(\d{7})-chunk(\d{4})\.parquet")


def test_every_chunk_keeps_the_json_its_parquet_was_made_from(tmp_path: Path, sample_pages: list[Path]) -> None:
    from dsocr.capture.trace_convert import events_to_table

    run_dir = capture_run(
        tmp_path / "run", sample_pages[:2], "--max-new-tokens", "5", "--profile", "full",
        "--full-chunk-steps", "2", "--keep-kineto",
    )  # fmt: skip
    run = read_run_json(run_dir)
    assert run.config is not None and run.config.keep_kineto is True
    parquet_files = trace_files(run_dir)
    assert len(parquet_files) >= 4  # two images, several flush chunks each
    kept = sorted((run_dir / TRACE_DIR / KINETO_DIR).iterdir())
    assert len(kept) == len(parquet_files)
    for path in parquet_files:
        image, chunk = (int(group) for group in PARQUET_NAME.fullmatch(path.name).groups())
        json_path = run_dir / TRACE_DIR / KINETO_DIR / f"rank0-image{image:07d}-chunk{chunk:04d}.json"
        trace = json.loads(json_path.read_text(encoding="utf-8"))
        assert trace["traceEvents"], json_path
        # Converting the kept file again gives exactly the rows of the Parquet: it is the source.
        again = events_to_table(trace, image_index=image, rank=0, chunk=chunk)
        assert again.equals(pq.read_table(path).cast(again.schema))
    assert not (run_dir / TRACE_DIR / PENDING_DIR).exists()
    result = invoke("analyze", run_dir, "--json")  # analyze reads the Parquet alone
    assert result.exit_code == 0, result.output


def test_without_the_option_no_json_is_kept(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = capture_run(tmp_path / "run", sample_pages[:1], "--max-new-tokens", "2", "--profile", "full")
    assert trace_files(run_dir)
    assert not (run_dir / TRACE_DIR / KINETO_DIR).exists()
    run = read_run_json(run_dir)
    assert run.config is not None and run.config.keep_kineto is False


def test_keep_kineto_needs_a_trace(tmp_path: Path, sample_pages: list[Path]) -> None:
    result = invoke("capture", sample_pages[0], "--out", tmp_path / "run", "--profile", "off", "--keep-kineto")
    assert result.exit_code == 1
    assert "Error: --keep-kineto needs a trace" in result.output
    assert "Traceback" not in result.output
