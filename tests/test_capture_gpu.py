"""Capture on a CUDA device: real kernels in the trace, CUDA-event reference timings.

Skipped without CUDA; run on the lent GPU machine (see docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

torch = pytest.importorskip("torch")

from capture_helpers import run_capture  # noqa: E402

from dsocr.rundir import read_predictions, read_trace  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_capture_has_kernels_linked_to_launches(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = tmp_path / "run"
    result = run_capture(
        sample_pages[0], "--out", run_dir, "--device", "cuda", "--max-new-tokens", "6", "--profile", "full"
    )
    assert result.exit_code == 0, result.output
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
