"""Kernels of CUDA graph launches (a compiled decode, ``--cache static``) in `dsocr analyze`.

A synthetic trace built to the trace contract (dsocr/schema.py TRACE): decode steps 1 and 3
launch their kernels one call each (eager), step 2 launches a CUDA graph: one ``cudaGraphLaunch``
whose correlation id every kernel of the graph carries, as CUPTI records it. The graph's kernels
run on the GPU after step 2's CPU range has closed, over step 3's: they still belong to step 2,
the step whose range was open when the graph was launched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from analyze_helpers import BASE_NS, DEVICE, MAIN_TID, NS_PER_MS, PID, invoke

from dsocr import rundir, schema
from dsocr.records import ImageCounts, ModelRecord, RunRecord
from dsocr.vocab import RunKind, RunStatus

STREAM = 7
GRAPH_KERNELS = 40
GRAPH_KERNEL_NS = 20_000  # each shorter than the graph launch call: no kernel may count as launch-bound
GRAPH_LAUNCH_NS = 30_000
GRAPH_CORRELATION = 5000
EAGER_KERNELS = 3
STEP_NS = 300_000


class _Events:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.correlation = 100

    def add(self, cat: str, name: str, ts: int, dur: int, **extra: Any) -> None:
        row = {"image_index": 0, "rank": 0, "chunk": 0, "cat": cat, "name": name, "ts_ns": ts, "dur_ns": dur}
        self.rows.append({"pid": PID, "tid": MAIN_TID, **row, **extra})

    def range_(self, stage: str, ts: int, dur: int, step: int | None = None) -> None:
        name = f"dsocr.{stage}" if step is None else f"dsocr.{stage}#{step}"
        self.add("user_annotation", name, ts, dur, range_stage=stage, range_step=step)

    def kernel(self, name: str, ts: int, dur: int, correlation: int) -> None:
        self.add("kernel", name, ts, dur, pid=DEVICE, tid=STREAM, device=DEVICE, stream=STREAM, correlation=correlation)

    def eager_launches(self, start: int, count: int) -> None:
        for index in range(count):
            self.correlation += 1
            launch = start + 10_000 + index * 20_000
            self.add("cuda_runtime", "cudaLaunchKernel", launch, 5_000, correlation=self.correlation)
            self.kernel("eager_gemm", launch + 8_000, 6_000, self.correlation)


def _graph_run(run_dir: Path) -> list[dict[str, Any]]:
    events = _Events()
    prefill = BASE_NS
    events.range_("prefill", prefill, 200_000)
    events.eager_launches(prefill, 2)
    for step in (1, 2, 3):
        start = prefill + 250_000 + (step - 1) * STEP_NS
        events.range_("decode_step", start, STEP_NS - 20_000, step)
        if step != 2:
            events.eager_launches(start, EAGER_KERNELS)
            continue
        launch = start + 50_000
        events.add("cuda_runtime", "cudaGraphLaunch", launch, GRAPH_LAUNCH_NS, correlation=GRAPH_CORRELATION)
        # Back to back on the stream, starting late: most of them run after step 2's range closed.
        first = launch + 200_000
        for index in range(GRAPH_KERNELS):
            name = ("graph_gemm", "graph_rmsnorm")[index % 2]
            events.kernel(name, first + index * GRAPH_KERNEL_NS, GRAPH_KERNEL_NS, GRAPH_CORRELATION)
    path = run_dir / "trace" / "rank=0" / "image0000000-chunk0000.parquet"
    rundir.write_table_atomic(rundir.rows_to_table(events.rows, schema.TRACE), path)
    record = RunRecord(
        kind=RunKind.capture,
        status=RunStatus.complete,
        model=ModelRecord(id="synthetic"),
        images=ImageCounts(total=1, ok=1),
    )
    rundir.write_run_json(run_dir, record)
    step_ms = [(STEP_NS - 20_000) / NS_PER_MS] * 3
    rundir.write_prediction_part(
        run_dir,
        {
            "image_index": 0, "image_path": "/pages/0.png", "image_md5": "0" * 32, "status": "ok", "rank": 0,
            "profile_mode": "full", "timing_clock": "cuda_event", "prompt_tokens": 300, "generated_tokens": 4,
            "stop_reason": "max_new_tokens", "prefill_ms": 0.2, "decode_ms": sum(step_ms), "decode_step_ms": step_ms,
        },
    )  # fmt: skip
    return events.rows


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("cuda-graphs") / "run"
    _graph_run(run_dir)
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


def test_every_kernel_of_a_graph_launch_belongs_to_the_step_that_launched_it(graph_run: Path) -> None:
    steps = {row["step"]: row for row in pq.read_table(graph_run / "analysis" / "steps.parquet").to_pylist()}
    assert {step: row["kernel_count"] for step, row in steps.items()} == {1: EAGER_KERNELS, 2: GRAPH_KERNELS, 3: 3}
    # Busy time is the union of the graph's back-to-back kernels; its span runs from the first to the last.
    assert steps[2]["gpu_busy_ms"] == pytest.approx(GRAPH_KERNELS * GRAPH_KERNEL_NS / NS_PER_MS)
    assert steps[2]["gpu_span_ms"] == pytest.approx(GRAPH_KERNELS * GRAPH_KERNEL_NS / NS_PER_MS)
    assert steps[3]["gpu_busy_ms"] == pytest.approx(EAGER_KERNELS * 6_000 / NS_PER_MS)


def test_top_kernels_and_coverage_count_graph_kernels_once_each(graph_run: Path) -> None:
    kernels = pq.read_table(graph_run / "analysis" / "kernels.parquet").to_pylist()
    decode = {row["name"]: row for row in kernels if row["stage"] == "decode" and row["kind"] == "kernel"}
    assert decode["graph_gemm"]["calls"] == decode["graph_rmsnorm"]["calls"] == GRAPH_KERNELS // 2
    assert decode["graph_gemm"]["total_ms_traced"] == pytest.approx(GRAPH_KERNELS // 2 * GRAPH_KERNEL_NS / NS_PER_MS)
    assert decode["eager_gemm"]["calls"] == 2 * EAGER_KERNELS
    summary = json.loads((graph_run / "analysis" / "summary.json").read_text())
    coverage = summary["coverage"]
    assert coverage["gpu_ops_shared_launch"] == GRAPH_KERNELS
    assert coverage["gpu_ops_without_launch"] == 0 and coverage["gpu_ops_outside_ranges"] == 0


def test_graph_kernels_are_not_counted_as_shorter_than_their_launch(graph_run: Path) -> None:
    """The graph launch call (30 µs) is longer than each of its kernels (20 µs), but it is not
    theirs alone: only the eager kernels (6 µs against a 5 µs launch: none shorter) are judged."""
    summary = json.loads((graph_run / "analysis" / "summary.json").read_text())
    findings = json.dumps(summary.get("findings", []))
    assert "shorter than" not in findings and "ran shorter" not in findings
