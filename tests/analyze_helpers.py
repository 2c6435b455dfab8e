"""Helpers for the analyze tests: the real CLI, a synthetic run built to the trace contract,
real captures (session fixtures), and plain-loop computations to check the vectorized ones."""

from __future__ import annotations

import bisect
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from capture_helpers import with_fast_model
from typer.testing import CliRunner, Result

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr import rundir, schema
from dsocr._app import app
from dsocr.records import ImageCounts, ModelRecord, RunRecord
from dsocr.vocab import ImageStatus, RunKind, RunStatus

GPU_RUN = Path(__file__).parent / "data" / "gpu-run"
NS_PER_MS = 1_000_000
BASE_NS = 1_795_900_000_000_000_000
PID = 4242
MAIN_TID = 4242
OTHER_TID = 4300
DEVICE = 0
STREAMS = (7, 13)
#: A kernel name that needs JSON escaping.
ODD_NAME = 'void gemm<"q\\k">(ünï)'


def invoke(*args: str | Path) -> Result:
    """`dsocr ARGS...` through the real CLI, in-process (a capture on the fastest model unless it names one)."""
    arguments = list(map(str, args))
    if arguments[:1] == ["capture"]:
        arguments = ["capture", *with_fast_model(arguments[1:])]
    return CliRunner().invoke(app, arguments)


# ---------------------------------------------------------------- synthetic runs


@dataclass
class ImageSpec:
    """One synthetic image: how many tokens, which steps are traced, how many flush chunks."""

    image_index: int
    generated_tokens: int = 6
    gpu: bool = True
    traced_steps: list[int] | None = None  # None: every step
    chunk_every: int | None = None  # flush after this many decode steps
    status: str = "ok"


@dataclass
class _Trace:
    spec: ImageSpec
    rng: random.Random
    now: int
    correlation: int = 1000
    external: int = 1
    chunk: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def event(self, cat: str, name: str, ts: int, dur: int, **extra: Any) -> dict[str, Any]:
        row = {
            "image_index": self.spec.image_index,
            "rank": 0,
            "chunk": self.chunk,
            "cat": cat,
            "name": name,
            "ts_ns": ts,
            "dur_ns": dur,
            "pid": PID,
            "tid": MAIN_TID,
            **extra,
        }
        self.rows.append(row)
        return row

    def range_(self, stage: str, ts: int, dur: int, step: int | None = None) -> None:
        name = f"dsocr.{stage}" if step is None else f"dsocr.{stage}#{step}"
        self.event("user_annotation", name, ts, dur, range_stage=stage, range_step=step)

    def op_with_kernels(self, kernels: int, *, tid: int = MAIN_TID, launch: bool = True) -> None:
        """A cpu_op that launches ``kernels`` kernels (and sometimes a memcpy) on two streams."""
        start = self.now
        self.external += 1
        op_duration = 0
        for index in range(kernels):
            launch_ts = start + 2_000 + index * 5_000
            self.correlation += 1
            if launch:
                self.event(
                    "cuda_runtime", "cudaLaunchKernel", launch_ts, 3_000, tid=tid,
                    correlation=self.correlation, external_id=self.external,
                )  # fmt: skip
            if self.spec.gpu:
                cat = "gpu_memcpy" if index == kernels - 1 and kernels > 2 else "kernel"
                name = (
                    "Memcpy HtoD (Pageable -> Device)"
                    if cat == "gpu_memcpy"
                    else self.rng.choice(("gemm_bf16", "flash_fwd", ODD_NAME, "rmsnorm"))
                )
                self.event(
                    cat, name, launch_ts + 4_000 + self.rng.randrange(0, 3_000), self.rng.randrange(1_000, 40_000),
                    pid=DEVICE, tid=STREAMS[index % 2], device=DEVICE, stream=STREAMS[index % 2],
                    correlation=self.correlation, external_id=self.external,
                )  # fmt: skip
            op_duration = launch_ts + 3_000 - start + 1_000
        self.event("cpu_op", self.rng.choice(("aten::mm", "aten::add")), start, op_duration, tid=tid,
                   external_id=self.external)  # fmt: skip
        self.now = start + op_duration + self.rng.randrange(500, 3_000)


def _image_events(spec: ImageSpec, rng: random.Random, start_ns: int) -> list[dict[str, Any]]:
    trace = _Trace(spec, rng, start_ns)
    steps = spec.generated_tokens - 1
    traced = set(range(1, steps + 1) if spec.traced_steps is None else spec.traced_steps)
    # ProfilerStep#0, prefill (vision inside), with one op before vision and two after.
    profiler_start = trace.now
    prefill_start = trace.now = trace.now + 1_000
    trace.op_with_kernels(2)
    vision_start = trace.now
    for _ in range(3):
        trace.op_with_kernels(4)
    trace.range_("vision", vision_start, trace.now - vision_start)
    trace.event("gpu_user_annotation", "dsocr.vision", vision_start + 5_000, trace.now - vision_start,
                pid=DEVICE, tid=STREAMS[0], range_stage="vision")  # fmt: skip
    trace.op_with_kernels(3)
    trace.op_with_kernels(1, tid=OTHER_TID)  # another thread: not in the main thread's ranges
    trace.range_("prefill", prefill_start, trace.now - prefill_start)
    trace.event("user_annotation", "ProfilerStep#0", profiler_start, trace.now - profiler_start + 2_000)
    trace.now += 5_000
    trace.op_with_kernels(1)  # between prefill and step 1: outside every dsocr range
    in_chunk = 0
    for step in range(1, steps + 1):
        if step not in traced:
            trace.now += 50_000  # untraced step: no events at all
            continue
        step_start = trace.now
        trace.op_with_kernels(2 + step % 3)
        if step == 2:
            trace.op_with_kernels(1, launch=False)  # a kernel whose launch is not in the trace
        trace.range_("decode_step", step_start, trace.now - step_start, step)
        trace.event("user_annotation", f"ProfilerStep#{step}", step_start - 500, trace.now - step_start + 1_000)
        trace.now += 1_000
        in_chunk += 1
        if spec.chunk_every and in_chunk == spec.chunk_every:
            trace.chunk += 1
            in_chunk = 0
            trace.now += 200_000  # the profiler restarting: a gap with no events
    whole_decode = spec.traced_steps is None and not spec.chunk_every
    first_step = min((row for row in trace.rows if row.get("range_step") == 1), key=lambda r: r["ts_ns"], default=None)
    if whole_decode and first_step is not None:
        trace.range_("decode", first_step["ts_ns"], trace.now - first_step["ts_ns"])
    return trace.rows


def plain_stage_figures(rows: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, float]]:
    """Per (image, stage): busy, span and kernel count, with plain loops (no numpy, no Arrow)."""
    launches = {}
    for row in rows:
        if row["cat"] in ("cuda_runtime", "cuda_driver") and row.get("correlation") is not None:
            launches.setdefault((row["image_index"], row["chunk"], row["correlation"]), row)
    # Ranges per thread and stage, sorted by start, searched with bisect (plain Python).
    by_lane: dict[tuple, list[tuple[int, int, int | None]]] = defaultdict(list)
    for r in rows:
        if r["cat"] == "user_annotation" and r.get("range_stage") in ("vision", "prefill", "decode_step"):
            lane = (r["image_index"], r["pid"], r["tid"], r["range_stage"])
            by_lane[lane].append((r["ts_ns"], r["ts_ns"] + r["dur_ns"], r.get("range_step")))
    for intervals in by_lane.values():
        intervals.sort()
    buckets: dict[tuple[int, str], list[tuple[int, int, str]]] = defaultdict(list)
    step_spans: dict[tuple[int, int], list[int]] = {}
    for op in rows:
        if op["cat"] not in ("kernel", "gpu_memcpy", "gpu_memset"):
            continue
        launch = launches.get((op["image_index"], op["chunk"], op.get("correlation")))
        if launch is None:
            continue
        inside = {}
        for stage in ("vision", "prefill", "decode_step"):
            intervals = by_lane.get((launch["image_index"], launch["pid"], launch["tid"], stage), [])
            position = bisect.bisect_right(intervals, (launch["ts_ns"], float("inf"), 0)) - 1
            if position >= 0 and intervals[position][0] <= launch["ts_ns"] < intervals[position][1]:
                inside[stage] = intervals[position][2]
        stages = []
        if "vision" in inside:
            stages.append("vision")
        if "prefill" in inside:
            stages.append("prefill")
            if "vision" not in inside:
                stages.append("prefill_text")
        if "decode_step" in inside:
            stages.append("decode")
            span = step_spans.setdefault((op["image_index"], inside["decode_step"]), [op["ts_ns"], 0])
            span[0] = min(span[0], op["ts_ns"])
            span[1] = max(span[1], op["ts_ns"] + op["dur_ns"])
        for stage in stages:
            buckets[(op["image_index"], stage)].append((op["ts_ns"], op["ts_ns"] + op["dur_ns"], op["cat"]))
    result = {}
    for key, intervals in buckets.items():
        intervals.sort()
        busy, current_start, current_end = 0, None, None
        for start, end, _ in intervals:
            if current_end is None or start > current_end:
                if current_end is not None:
                    busy += current_end - current_start
                current_start, current_end = start, end
            else:
                current_end = max(current_end, end)
        busy += current_end - current_start
        span = max(end for _, end, _ in intervals) - min(start for start, _, _ in intervals)
        if key[1] == "decode":
            span = sum(end - start for (image, _), (start, end) in step_spans.items() if image == key[0])
        result[key] = {
            "gpu_busy_ms": busy / NS_PER_MS,
            "gpu_span_ms": span / NS_PER_MS,
            "kernel_count": sum(1 for *_, cat in intervals if cat == "kernel"),
        }
    for (image, stage), figures in result.items():
        if stage == "prefill_text":  # like its CPU time: prefill's span minus vision's
            figures["gpu_span_ms"] = (
                result[(image, "prefill")]["gpu_span_ms"] - result[(image, "vision")]["gpu_span_ms"]
            )
    return result


def plain_stream_ms(rows: list[dict[str, Any]]) -> dict[tuple[int, str], float]:
    """Per (image, stage): the ranges as a CUDA-event pair around them would see the stream,
    ``max(end, GPU free at end) - max(start, GPU free at start)``, with plain loops."""
    launches = {}
    for row in rows:
        if row["cat"] in ("cuda_runtime", "cuda_driver") and row.get("correlation") is not None:
            launches.setdefault((row["image_index"], row["chunk"], row["correlation"]), row)
    done: dict[int, list[tuple[int, int]]] = defaultdict(list)  # image -> (launch, end)
    for op in rows:
        launch = launches.get((op["image_index"], op["chunk"], op.get("correlation")))
        if op["cat"] in ("kernel", "gpu_memcpy", "gpu_memset") and launch is not None:
            done[op["image_index"]].append((launch["ts_ns"], op["ts_ns"] + op["dur_ns"]))

    def free(image: int, t: int) -> int:
        return max((end for launched, end in done[image] if launched < t), default=t)

    result: dict[tuple[int, str], float] = defaultdict(float)
    names = {"vision": "vision", "prefill": "prefill", "decode_step": "decode"}
    for r in rows:
        if r["cat"] == "user_annotation" and r.get("range_stage") in names:
            start, end = r["ts_ns"], r["ts_ns"] + r["dur_ns"]
            length = max(end, free(r["image_index"], end)) - max(start, free(r["image_index"], start))
            result[(r["image_index"], names[r["range_stage"]])] += length / NS_PER_MS
    for image in {image for image, _ in result}:
        result[(image, "prefill_text")] = result[(image, "prefill")] - result[(image, "vision")]
    return dict(result)


def write_run(
    run_dir: Path, specs: list[ImageSpec], *, seed: int = 0, clock: str = "cuda_event"
) -> list[dict[str, Any]]:
    """Write run.json, predictions parts and trace files for ``specs``; return every trace row."""
    rng = random.Random(seed)
    ok = sum(spec.status == ImageStatus.ok for spec in specs)
    counts = ImageCounts(total=len(specs), ok=ok, failed=len(specs) - ok)
    model = ModelRecord(id="synthetic")
    record = RunRecord(kind=RunKind.capture, status=RunStatus.complete, model=model, images=counts)
    rundir.write_run_json(run_dir, record)
    all_rows: list[dict[str, Any]] = []
    start = BASE_NS
    for spec in specs:
        rows = _image_events(spec, rng, start) if spec.status == "ok" else []
        start += 10**10
        by_chunk: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_chunk[row["chunk"]].append(row)
        for chunk, chunk_rows in by_chunk.items():
            path = run_dir / "trace" / "rank=0" / f"image{spec.image_index:07d}-chunk{chunk:04d}.parquet"
            rundir.write_table_atomic(rundir.rows_to_table(chunk_rows, schema.TRACE), path)
        all_rows.extend(rows)
        rundir.write_prediction_part(run_dir, _prediction(spec, rows, clock))
    return all_rows


def _prediction(spec: ImageSpec, rows: list[dict[str, Any]], clock: str) -> dict[str, Any]:
    """A prediction row whose reference timings are the ranges' CPU durations plus 1%."""
    durations = {(r.get("range_stage"), r.get("range_step")): r["dur_ns"] / NS_PER_MS for r in rows
                 if r["cat"] == "user_annotation" and r.get("range_stage")}  # fmt: skip
    steps = spec.generated_tokens - 1
    step_ms = [durations.get(("decode_step", k), 0.05) * 1.01 for k in range(1, steps + 1)]
    row = {
        "image_index": spec.image_index,
        "image_path": f"/pages/{spec.image_index}.png",
        "image_md5": "0" * 32,
        "status": spec.status,
        "rank": 0,
        "profile_mode": "sampled" if spec.traced_steps is not None else "full",
        "timing_clock": clock,
    }
    if spec.status != "ok":
        return {**row, "error": "unreadable image", "stop_reason": "error"}
    return {
        **row,
        "prompt_tokens": 300 + spec.image_index,
        "generated_tokens": spec.generated_tokens,
        "stop_reason": "max_new_tokens",
        "vision_ms": durations.get(("vision", None), 0) * 1.01,
        "prefill_ms": durations.get(("prefill", None), 0) * 1.01,
        "decode_ms": sum(step_ms),
        "decode_step_ms": step_ms,
    }


# ---------------------------------------------------------------- real captures


def capture_run(out: Path, pages: list[Path], *extra: str) -> Path:
    """`dsocr capture` on the embedded tiny model (CPU); skips when the capture extra is missing."""
    pytest.importorskip("torch", reason="dsocr capture needs the [capture] extra")
    result = invoke("capture", *pages, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def cpu_full_run(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    """A real CPU capture: 2 pages, 8 tokens, every step traced in one chunk."""
    out = tmp_path_factory.mktemp("analyze-cpu") / "full"
    return capture_run(out, sample_pages[:2], "--max-new-tokens", "8", "--profile", "full", "--with-flops")


@pytest.fixture(scope="session")
def cpu_sampled_run(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    """A real CPU capture in sampled mode with several flush windows and untraced steps."""
    out = tmp_path_factory.mktemp("analyze-cpu") / "sampled"
    return capture_run(
        out, sample_pages[:1], "--max-new-tokens", "14", "--profile", "sampled",
        "--first-steps", "2", "--window-steps", "2", "--window-every", "5",
    )  # fmt: skip


def gpu_run_or_skip() -> Path:
    """The committed H200 capture, or a skip that says why."""
    if not (GPU_RUN / rundir.RUN_JSON).is_file():
        pytest.skip(f"no committed GPU capture at {GPU_RUN} (the capture issue adds it)")
    return GPU_RUN
