"""`dsocr analyze` on the committed H200 capture (tests/data/gpu-run): the CUDA-event check and
kernel attribution against a plain loop. Skipped, with the reason, until the capture is committed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analyze_helpers import gpu_run_or_skip, invoke, plain_stage_figures, plain_stream_ms
from trace_helpers import read_trace

from dsocr import rundir

#: GPU range against CUDA events: 2% for prefill and decode, 5% for vision (the issue's bar).
TOLERANCE = {"vision": 0.05, "prefill": 0.02, "decode": 0.02}
GPU_COLUMNS = ["image_index", "rank", "chunk", "cat", "name", "ts_ns", "dur_ns", "pid", "tid", "correlation",
               "range_stage", "range_step"]  # fmt: skip
KEPT_CATS = ("kernel", "gpu_memcpy", "gpu_memset", "cuda_runtime", "cuda_driver", "user_annotation")


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = gpu_run_or_skip()
    # Analyze a copy: the committed fixture stays untouched.
    run_dir = tmp_path_factory.mktemp("gpu") / "run"
    for path in source.rglob("*"):
        if path.is_file() and rundir.ANALYSIS_DIR not in path.relative_to(source).parts:
            target = run_dir / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


def _timings(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "analysis" / "timings.parquet").to_pylist()


def test_gpu_span_matches_the_cuda_events(analyzed: Path) -> None:
    summary = json.loads((analyzed / "analysis" / "summary.json").read_text())
    assert summary["trace"]["device_time"] is True
    assert summary["trace"]["timing_clocks"] == ["cuda_event"]
    checked = 0
    for row in _timings(analyzed):
        if row["stage"] in TOLERANCE and row["reference_ms"]:
            assert row["check_measure"] == "gpu_range_ms"
            assert abs(row["reference_rel_diff"]) <= TOLERANCE[row["stage"]], row
            assert 0 < row["gpu_busy_ms"] <= row["gpu_span_ms"] * (1 + 1e-9)
            assert row["gpu_span_ms"] <= row["gpu_range_ms"] * (1 + 1e-9)
            checked += 1
    assert checked >= 3


def test_kernel_attribution_matches_a_plain_loop(analyzed: Path) -> None:
    trace = read_trace(analyzed, columns=GPU_COLUMNS)
    trace = trace.filter(pc.is_in(trace["cat"].cast(pa.string()), value_set=pa.array(KEPT_CATS)))
    rows = trace.to_pylist()
    expected = plain_stage_figures(rows)
    timings = {(row["image_index"], row["stage"]): row for row in _timings(analyzed)}
    assert expected
    for key, figures in expected.items():
        assert timings[key]["gpu_busy_ms"] == pytest.approx(figures["gpu_busy_ms"], rel=1e-9), key
        assert timings[key]["gpu_span_ms"] == pytest.approx(figures["gpu_span_ms"], rel=1e-9), key
        assert timings[key]["kernel_count"] == figures["kernel_count"], key
    for key, stream_ms in plain_stream_ms(rows).items():
        assert timings[key]["gpu_range_ms"] == pytest.approx(stream_ms, rel=1e-9), key
