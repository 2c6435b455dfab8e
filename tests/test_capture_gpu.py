"""Capture on a CUDA device: real kernels in the trace, CUDA-event reference timings.

Skipped without CUDA; run on the lent GPU machine (see docs/performance.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

torch = pytest.importorskip("torch")

from capture_helpers import run_capture_process  # noqa: E402
from trace_helpers import read_trace  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from dsocr._app import app  # noqa: E402
from dsocr.rundir import read_predictions, read_run_json  # noqa: E402

GPU_OP_CATS = ["kernel", "gpu_memcpy", "gpu_memset"]
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_capture_has_kernels_linked_to_launches(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = tmp_path / "run"
    result = run_capture_process(
        sample_pages[0],
        "--out",
        run_dir,
        "--device",
        "cuda",
        "--max-new-tokens",
        "6",
        "--profile",
        "full",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = read_predictions(run_dir).to_pylist()[0]
    assert row["timing_clock"] == "cuda_event"
    assert row["generated_tokens"] == 6
    trace = read_trace(run_dir)
    categories = set(trace.column("cat").to_pylist())
    assert {"kernel", "cuda_runtime", "gpu_user_annotation", "user_annotation"} <= categories
    kernels = trace.filter(pc.equal(trace["cat"], "kernel"))
    # cuBLAS/cutlass kernels are launched through the driver API (cuLaunchKernelEx).
    launches = trace.filter(pc.is_in(trace["cat"], pa.array(["cuda_runtime", "cuda_driver"])))
    kernel_ids = set(kernels.column("correlation").to_pylist())
    assert None not in kernel_ids
    assert kernel_ids <= set(launches.column("correlation").to_pylist())
    gpu_ranges = trace.filter(pc.equal(trace["cat"], "gpu_user_annotation"))
    assert "dsocr.prefill" in set(gpu_ranges.column("name").to_pylist())


def test_cuda_sampled_sessions_trace_only_the_planned_steps(tmp_path: Path, sample_pages: list[Path]) -> None:
    """One profiler session per window: kernels in traced steps only; kernels whose recorded start
    precedes their launch (CUPTI re-initialized per session, pytorch/pytorch#192021) are counted by
    analyze and left out of its GPU figures."""
    run_dir = tmp_path / "run"
    arguments = ["--out", run_dir, "--device", "cuda", "--max-new-tokens", "12", "--profile", "sampled"]
    result = run_capture_process(
        sample_pages[0], *arguments, "--first-steps", "2", "--window-every", "6", "--window-steps", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = read_predictions(run_dir).to_pylist()[0]
    traced = [step for step, on in enumerate(row["decode_step_traced"], start=1) if on]
    assert traced == [1, 2, 6, 7]
    trace = read_trace(run_dir)
    step_ranges = trace.filter(pc.equal(trace["cat"], "gpu_user_annotation"))
    steps_on_gpu = {step for step in step_ranges.column("range_step").to_pylist() if step is not None}
    assert steps_on_gpu == set(traced)
    # Joined per flush chunk: CUPTI restarts its correlation ids when torn down between sessions.
    kernels = trace.filter(pc.equal(trace["cat"], "kernel"))
    launches = trace.filter(pc.is_in(trace["cat"], pa.array(["cuda_runtime", "cuda_driver"])))
    launch_ts = {
        (chunk, corr): ts
        for chunk, corr, ts in zip(
            launches["chunk"].to_pylist(), launches["correlation"].to_pylist(), launches["ts_ns"].to_pylist(),
            strict=True,
        )
    }  # fmt: skip
    early = [
        ts
        for chunk, corr, ts in zip(
            kernels["chunk"].to_pylist(), kernels["correlation"].to_pylist(), kernels["ts_ns"].to_pylist(),
            strict=True,
        )
        if ts < launch_ts[(chunk, corr)]
    ]  # fmt: skip
    analyzed = CliRunner().invoke(app, ["analyze", str(run_dir), "--json"])
    assert analyzed.exit_code == 0, analyzed.output
    coverage = json.loads(analyzed.output)["coverage"]
    assert coverage["kernels_start_before_launch"] == len(early)
    assert coverage["gpu_ops"] == trace.filter(pc.is_in(trace["cat"], pa.array(GPU_OP_CATS))).num_rows - len(early)


def test_cuda_full_mode_keeps_kernels_in_every_session(tmp_path: Path, sample_pages: list[Path]) -> None:
    """Back-to-back full-mode sessions each record their GPU side: with CUPTI torn down at every
    stop, each image's sessions after the first recorded no kernel (docs/performance.md)."""
    run_dir = tmp_path / "run"
    result = run_capture_process(
        *sample_pages[:2], "--out", run_dir, "--device", "cuda", "--max-new-tokens", "13",
        "--profile", "full", "--full-chunk-steps", "4",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_run_json(run_dir).profiler_env["TEARDOWN_CUPTI"] == "0"
    trace = read_trace(run_dir, columns=["image_index", "chunk", "cat"])
    sessions = set(zip(trace["image_index"].to_pylist(), trace["chunk"].to_pylist(), strict=True))
    kernels = trace.filter(pc.equal(trace["cat"], "kernel"))
    with_kernels = set(zip(kernels["image_index"].to_pylist(), kernels["chunk"].to_pylist(), strict=True))
    assert len(sessions) >= 2 * 3  # two images, at least three sessions each
    assert sessions == with_kernels
    analyzed = CliRunner().invoke(app, ["analyze", str(run_dir), "--json"])
    assert analyzed.exit_code == 0, analyzed.output
    assert json.loads(analyzed.output)["coverage"]["chunks_without_device_work"] == 0
