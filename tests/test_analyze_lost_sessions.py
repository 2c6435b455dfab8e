"""A profiler session that recorded the CPU side only, in a GPU trace: counted and warned about;
and the host-bound decode finding of a compiled static-cache run.

On the H200 (docs/performance.md, 2026-12-07) every `--profile full` image's second session held
CPU operators and dsocr's ranges but no kernel, runtime call or GPU annotation. A synthetic trace
built to the trace contract: chunk 0 holds prefill and decode steps 1-2 with their kernels,
chunk 1 decode steps 3-4, with their kernels (control) or without any GPU event (lost).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from analyze_helpers import BASE_NS, DEVICE, MAIN_TID, PID, invoke

from dsocr import rundir, schema
from dsocr.records import ImageCounts, ModelRecord, RunRecord, StaticCacheRecord
from dsocr.vocab import NS_PER_MS, RangeStage, RunKind, RunStatus, range_name

STREAM = 7
STEP_NS = 300_000
KERNELS_PER_STEP = 3
#: Steps per flush chunk (full mode's --full-chunk-steps).
CHUNK_STEPS = 2
STEPS = 4


class _Chunk:
    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.rows: list[dict[str, Any]] = []

    def add(self, cat: str, name: str, ts: int, dur: int, **extra: Any) -> None:
        row = {"image_index": 0, "rank": 0, "chunk": self.chunk, "pid": PID, "tid": MAIN_TID}
        self.rows.append({**row, "cat": cat, "name": name, "ts_ns": ts, "dur_ns": dur, **extra})

    def range_(self, stage: RangeStage, ts: int, dur: int, step: int | None = None) -> None:
        self.add("user_annotation", range_name(stage, step), ts, dur, range_stage=stage, range_step=step)

    def launches(self, start: int, correlation: int) -> None:
        for index in range(KERNELS_PER_STEP):
            launch = start + 10_000 + index * 20_000
            self.add("cuda_runtime", "cudaLaunchKernel", launch, 5_000, correlation=correlation + index)
            self.add(
                "kernel", "gemm", launch + 8_000, 6_000,
                pid=DEVICE, tid=STREAM, device=DEVICE, stream=STREAM, correlation=correlation + index,
            )  # fmt: skip


def _write_run(run_dir: Path, *, lost: bool, compiled: bool = False) -> None:
    first, second = _Chunk(0), _Chunk(1)
    first.range_(RangeStage.prefill, BASE_NS, 200_000)
    first.launches(BASE_NS, correlation=100)
    for step in range(1, STEPS + 1):
        chunk = first if step <= CHUNK_STEPS else second
        start = BASE_NS + 250_000 + (step - 1) * STEP_NS
        chunk.range_(RangeStage.decode_step, start, STEP_NS - 20_000, step)
        chunk.add("cpu_op", "aten::mm", start + 5_000, 50_000)
        if chunk is first or not lost:  # correlation ids restart with each session
            chunk.launches(start, correlation=200 + 10 * step)
        if step % CHUNK_STEPS == 0:
            chunk.range_(RangeStage.session_end, start + STEP_NS - 10_000, 1_000)
    for chunk in (first, second):
        path = run_dir / "trace" / "rank=0" / f"image0000000-chunk{chunk.chunk:04d}.parquet"
        rundir.write_table_atomic(rundir.rows_to_table(chunk.rows, schema.TRACE), path)
    record = RunRecord(
        kind=RunKind.capture,
        status=RunStatus.complete,
        model=ModelRecord(id="synthetic"),
        images=ImageCounts(total=1, ok=1),
        static_cache=StaticCacheRecord(
            length=320, length_source="largest_prompt_plus_max_new_tokens", compiled=True, compile_backend="inductor"
        )
        if compiled
        else None,
    )
    rundir.write_run_json(run_dir, record)
    step_ms = [(STEP_NS - 20_000) / NS_PER_MS] * STEPS
    rundir.write_prediction_part(
        run_dir,
        {
            "image_index": 0, "image_path": "/pages/0.png", "image_md5": "0" * 32, "status": "ok", "rank": 0,
            "profile_mode": "full", "timing_clock": "cuda_event", "prompt_tokens": 300,
            "generated_tokens": STEPS + 1, "stop_reason": "max_new_tokens", "prefill_ms": 0.2,
            "decode_ms": sum(step_ms), "decode_step_ms": step_ms,
        },
    )  # fmt: skip


@pytest.mark.parametrize("lost", [False, True], ids=["control", "lost"])
def test_a_session_without_gpu_events_is_counted_and_warned_about(tmp_path: Path, lost: bool) -> None:
    run_dir = tmp_path / "run"
    _write_run(run_dir, lost=lost)
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    coverage = json.loads((run_dir / "analysis" / "summary.json").read_text())["coverage"]
    assert coverage["flush_chunks"] == 2
    assert coverage["chunks_without_device_work"] == (1 if lost else 0)
    assert coverage["ranges_without_device_work"] == (STEPS - CHUNK_STEPS if lost else 0)
    warned = "1 of 2 profiler sessions recorded dsocr ranges but no GPU activity" in " ".join(result.output.split())
    assert warned is lost


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_host_bound_decode_suggests_cuda_graphs_only_to_a_run_without_them(tmp_path: Path, compiled: bool) -> None:
    """Each 0.28 ms step keeps the GPU busy 18 µs: host-bound either way. A run whose decode already
    replayed compiled CUDA graphs over a static cache (run.json static_cache) is not told to try them."""
    run_dir = tmp_path / "run"
    _write_run(run_dir, lost=False, compiled=compiled)
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    findings = json.loads((run_dir / "analysis" / "summary.json").read_text())["findings"]
    (host,) = [finding for finding in findings if finding["id"] == "host_bound_decode"]
    assert ("cache_implementation='static'" in host["message"]) is not compiled
    assert ("already replays compiled CUDA graphs" in host["message"]) is compiled
