"""`--cache static --compile auto` on a CUDA device: compiled decode with CUDA graphs, profiled.

Skipped without CUDA. Both passed on the lent H200 on 2026-12-07 (torch 2.11.0+cu130,
transformers 5.17.0; bench/results/h200-pytest-gpu.xml, docs/performance.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from capture_helpers import run_capture_process  # noqa: E402
from trace_helpers import read_trace  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from dsocr._app import app  # noqa: E402
from dsocr.rundir import read_predictions, read_run_json  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_compiled_decode_under_many_profiler_windows_does_not_crash(tmp_path: Path, sample_pages: list[Path]) -> None:
    """CUDA graphs replayed under a fresh profiler session per window (CUPTI set up and torn down
    each time): every image completes, nothing recompiles, and the graphs' kernels land in steps."""
    run_dir = tmp_path / "run"
    result = run_capture_process(
        *sample_pages[:2], "--out", run_dir, "--device", "cuda", "--max-new-tokens", "24",
        "--cache", "static", "--compile", "auto", "--profile", "sampled",
        "--first-steps", "2", "--window-steps", "2", "--window-every", "5",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = read_run_json(run_dir)
    assert record.static_cache is not None and record.static_cache.compiled
    assert record.static_cache.compile_seconds > 0
    rows = read_predictions(run_dir).to_pylist()
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert [row["compiled_graphs"] for row in rows] == [0, 0]
    trace = read_trace(run_dir, columns=["cat", "name"])
    runtime = trace.filter(pc.equal(trace["cat"], "cuda_runtime"))
    assert "cudaGraphLaunch" in set(runtime["name"].to_pylist())
    analyzed = CliRunner().invoke(app, ["analyze", str(run_dir)])
    assert analyzed.exit_code == 0, analyzed.output
    coverage = json.loads((run_dir / "analysis" / "summary.json").read_text())["coverage"]
    assert coverage["gpu_ops_shared_launch"] > 0
    steps = pq.read_table(run_dir / "analysis" / "steps.parquet").to_pylist()
    assert steps and all(row["kernel_count"] > 0 for row in steps)


def test_static_uncompiled_matches_the_dynamic_text(tmp_path: Path, sample_pages: list[Path]) -> None:
    texts = {}
    for cache in ("dynamic", "static"):
        run_dir = tmp_path / cache
        result = run_capture_process(
            sample_pages[0], "--out", run_dir, "--device", "cuda", "--max-new-tokens", "16", "--profile", "off",
            "--cache", cache, "--compile", "off", "--dtype", "fp32",
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        texts[cache] = read_predictions(run_dir).to_pylist()[0]["text_raw"]
    assert texts["static"] == texts["dynamic"]


def test_compiled_decode_in_full_mode_keeps_kernels_in_every_session(tmp_path: Path, sample_pages: list[Path]) -> None:
    """CUDA graph replays in back-to-back full-mode sessions: each session records its kernels."""
    run_dir = tmp_path / "run"
    result = run_capture_process(
        sample_pages[0], "--out", run_dir, "--device", "cuda", "--max-new-tokens", "13",
        "--cache", "static", "--compile", "auto", "--profile", "full", "--full-chunk-steps", "4",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    trace = read_trace(run_dir, columns=["chunk", "cat"])
    sessions = set(trace["chunk"].to_pylist())
    with_kernels = set(trace.filter(pc.equal(trace["cat"], "kernel"))["chunk"].to_pylist())
    assert len(sessions) >= 3
    assert sessions == with_kernels
