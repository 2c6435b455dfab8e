"""Roofline, peaks and findings on the committed H200 capture, on old runs, and on small tables."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analyze_helpers import gpu_run_or_skip, invoke
from dsocr.analyze import findings as findings_module
from dsocr.analyze.flops import architecture, decode_step_cost, tiles_from_image_tokens
from dsocr.analyze.gpu_figures import COPY_PATTERN
from dsocr.analyze.ordered import Slices
from dsocr.analyze.peaks import PEAKS, device_peak, find_peak
from dsocr.analyze.roofline import roofline_table
from dsocr.analyze.steps import STEPS
from trace_helpers import read_trace

from dsocr import rundir
from dsocr.errors import BadInputError

ROOT = Path(__file__).resolve().parents[1]
FULL_CONFIG = ROOT / "bench" / "configs" / "deepseek-ocr2-full.json"
H200 = "NVIDIA H200"
STAGES = ("vision", "prefill_text", "prefill", "decode")
FIELDS = ("flops", "bytes", "achieved_tflops", "achieved_gbps", "mfu", "mbu", "mfu_wall", "mbu_wall", "bound")


def full_architecture() -> dict:
    config = json.loads(FULL_CONFIG.read_text())
    config.pop("_comment")
    return config


def copy_run(source: Path, target: Path, *, with_architecture: bool) -> Path:
    """A copy of a run without its analysis/. Without ``with_architecture``, run.json loses
    ``model.architecture`` and ``model.device_name`` (keeping the top-level device name older runs
    wrote), as in a run captured before dsocr recorded them."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(rundir.ANALYSIS_DIR))
    run = json.loads((target / rundir.RUN_JSON).read_text())
    if with_architecture:
        assert run["model"]["architecture"] and run["model"]["device_name"] == H200  # what the fixture records
    else:
        del run["model"]["architecture"], run["model"]["device_name"]
        (target / rundir.RUN_JSON).write_text(json.dumps(run))
    return target


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = copy_run(gpu_run_or_skip(), tmp_path_factory.mktemp("roofline") / "run", with_architecture=True)
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "analysis" / "summary.json").read_text())


# ---------------------------------------------------------------- peaks


@pytest.mark.parametrize(
    ("device", "row"),
    [
        ("NVIDIA H200", "NVIDIA H200 SXM"),
        ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40GB"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB SXM"),
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100 80GB PCIe"),
        ("NVIDIA A10", "NVIDIA A10"),
        ("NVIDIA L40S", "NVIDIA L40S"),
        ("NVIDIA L4", "NVIDIA L4"),
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
        ("NVIDIA A10G", None),
        ("x86_64", None),
    ],
)
def test_device_names_find_their_row(device: str, row: str | None) -> None:
    found = find_peak(device)
    assert (found.name if found else None) == row


def test_every_peak_is_documented_with_its_figures() -> None:
    documented = (ROOT / "docs" / "analysis.md").read_text()
    for peak in PEAKS:
        line = next((line for line in documented.splitlines() if line.startswith(f"| {peak.name} |")), None)
        assert line is not None, peak.name
        assert f"{peak.gbps:,.0f}" in line and "http" in line, line


def test_overrides_replace_the_table_and_bad_values_are_refused() -> None:
    peak = device_peak(H200, "bfloat16", peak_tflops=500.0)
    assert (peak.tflops, peak.gbps, peak.source, peak.reason) == (500.0, 4800.0, "override", None)
    unknown = device_peak("Mystery GPU", "bfloat16")
    assert unknown.tflops is None and "not in the peaks table" in unknown.reason
    assert device_peak("Mystery GPU", "bfloat16", peak_tflops=10, peak_gbps=100).reason is None
    assert device_peak("NVIDIA T4", "bfloat16").reason.startswith("no dense bfloat16 rate")
    with pytest.raises(BadInputError, match="--peak-gbps 0: must be a positive number"):
        device_peak(H200, "bfloat16", peak_gbps=0)


# ---------------------------------------------------------------- FLOPs from the config


def test_tiles_follow_the_image_token_count() -> None:
    arch = architecture(full_architecture())
    assert arch is not None
    assert [tiles_from_image_tokens(arch, 257 + 144 * tiles) for tiles in range(7)] == list(range(7))
    assert tiles_from_image_tokens(arch, 300) is None
    assert tiles_from_image_tokens(arch, None) is None


def test_decode_floor_is_the_active_weights_at_hbm_speed() -> None:
    """The issue's anchor: the H200's HBM floor for the decoder's active weights is about 0.25 ms/token."""
    arch = architecture(full_architecture())
    step = decode_step_cost(arch, 1157, 2)
    assert 0.2 < step.bytes / 4800e9 * 1e3 < 0.3
    # Per key position each layer reads K and V of every KV head.
    text = full_architecture()["text_config"]
    per_key = decode_step_cost(arch, 1001, 2).bytes - decode_step_cost(arch, 1000, 2).bytes
    assert per_key == 2 * 2 * text["num_key_value_heads"] * 128 * text["num_hidden_layers"]


# ---------------------------------------------------------------- the H200 capture


def test_roofline_per_stage_on_the_gpu_capture(gpu_run: Path) -> None:
    roofline = _summary(gpu_run)["roofline"]
    assert roofline["reason"] is None
    row = find_peak(H200)
    assert roofline["device"]["peak_tflops"] == row.tflops["bfloat16"] and roofline["device"]["peak_gbps"] == row.gbps
    for stage in STAGES:
        figures = roofline[stage]
        assert all(figures[name] is not None for name in FIELDS), (stage, figures)
        assert figures["mfu"] == pytest.approx(figures["achieved_tflops"] / row.tflops["bfloat16"])
        assert figures["mbu_wall"] == pytest.approx(figures["bytes"] / (figures["wall_ms"] / 1e3) / (row.gbps * 1e9))
    assert roofline["prefill"]["flops"] == pytest.approx(
        roofline["vision"]["flops"] + roofline["prefill_text"]["flops"]
    )
    # Full profiling makes every stage wait on the host: the GPU is busy under half the wall time.
    assert roofline["decode"]["bound"] == "host"
    assert roofline["decode_step"]["steps"] == _summary(gpu_run)["coverage"]["steps_traced"] > 0


def test_decode_steps_add_up_to_the_stage(gpu_run: Path) -> None:
    table = pq.read_table(gpu_run / "analysis" / "roofline.parquet")
    timings = [row for row in pq.read_table(gpu_run / "analysis" / "timings.parquet").to_pylist()
               if row["stage"] == "decode"]  # fmt: skip
    prompts = {row["image_index"]: row["prompt_tokens"] for row in rundir.read_predictions(gpu_run).to_pylist()}
    assert len(timings) == len(prompts) > 1  # the fixture holds the same page twice
    for decode in timings:
        image = decode["image_index"]
        rows = table.filter(pc.equal(table["stage"], "decode_step"))
        steps = rows.filter(pc.equal(rows["image_index"], image)).to_pylist()
        assert [row["tokens"] for row in steps] == [prompts[image] + row["step"] for row in steps]
        assert sum(row["gpu_busy_ms"] for row in steps) == pytest.approx(decode["gpu_busy_ms_traced"])
        assert sum(row["wall_ms"] for row in steps) == pytest.approx(decode["cpu_ms_traced"])
        assert sum(row["kernel_count"] for row in steps) == decode["kernel_count_traced"]
        # The image's decode point is per token: the mean of its traced steps, not their sum.
        per_image = table.filter(pc.and_(pc.equal(table["stage"], "decode"), pc.equal(table["image_index"], image)))
        (point,) = per_image.to_pylist()
        assert point["bytes"] == pytest.approx(sum(row["bytes"] for row in steps) / len(steps))
        assert point["wall_ms"] == pytest.approx(decode["cpu_ms_traced"] / len(steps))
        # Attention grows with the cache: each step costs a little more than the one before.
        flops = [row["flops"] for row in steps]
        assert flops == sorted(flops) and flops[0] < flops[-1]


def test_decode_kernel_count_per_token_is_rounded_when_steps_differ(gpu_run: Path) -> None:
    """A compiled run's steps launch different numbers of kernels (graph replays, a few eager
    ops): the per-token mean is fractional and the integer column takes it rounded."""
    run = rundir.read_run_json(gpu_run)
    steps = pq.read_table(gpu_run / "analysis" / "steps.parquet")
    uneven = pa.array([69 + (index % 5 < 3) for index in range(steps.num_rows)], pa.int64())  # mean 69.6
    steps = steps.set_column(steps.schema.get_field_index("kernel_count"), "kernel_count", uneven)
    table = roofline_table(
        architecture(run.model.architecture), run.model.dtype, device_peak(H200, run.model.dtype),
        rundir.read_predictions(gpu_run), pq.read_table(gpu_run / "analysis" / "timings.parquet"), steps,
    )  # fmt: skip
    decode = table.filter(pc.equal(table["stage"], "decode")).to_pylist()
    for point in decode:
        image_steps = [count for image, count in zip(steps["image_index"].to_pylist(), uneven.to_pylist(), strict=True)
                       if image == point["image_index"]]  # fmt: skip
        assert point["kernel_count"] == round(sum(image_steps) / len(image_steps))


def test_findings_on_the_gpu_capture(gpu_run: Path) -> None:
    summary = _summary(gpu_run)
    found = {finding["id"]: finding for finding in summary["findings"]}
    stakes = [finding["time_at_stake_ms"] for finding in summary["findings"]]
    assert stakes == sorted(stakes, reverse=True)
    for finding in summary["findings"]:
        assert set(finding) == {"id", "severity", "time_at_stake_ms", "message", "try", "evidence"}
        assert finding["severity"] in ("high", "medium", "low") and finding["evidence"]["source"]
        # A finding that a sweep can test says so, and carries the sweep; the others say it is not measured.
        assert ("dsocr sweep" in finding["message"]) == (finding["try"] is not None)
        assert (
            "not measured" in finding["message"]
            or "dsocr sweep" in finding["message"]
            or "before changing" in finding["message"]
            or (finding["id"].startswith(("roofline_distance", "outlier", "profiler_overhead")))
        )
    decode = [row for row in pq.read_table(gpu_run / "analysis" / "timings.parquet").to_pylist()
              if row["stage"] == "decode"]  # fmt: skip
    busy, wall = (sum(row[name] for row in decode) for name in ("gpu_busy_ms_traced", "cpu_ms_traced"))
    steps = sum(row["steps_traced"] for row in decode)
    host = found["host_bound_decode"]
    assert host["severity"] == "high"
    # The run used the dynamic cache (run.json before --cache): the sweep adds the static one, on its pages.
    pages = " ".join(rundir.read_run_json(gpu_run).image_paths or ())
    assert host["try"].startswith(f"dsocr sweep {pages} --out {gpu_run}.sweep-cache --model ")
    assert host["try"].endswith("--device cuda --max-new-tokens 16 --vary cache=dynamic,static")
    assert found["cold_steps"]["try"].endswith("--vary sdpa-backend=auto,cudnn,flash,efficient,math")
    assert found["dominant_cpu_operator.decode"]["try"] is None
    assert host["evidence"]["gpu_idle_share"] == pytest.approx(1 - busy / wall)
    assert host["evidence"]["kernels_per_step"] == pytest.approx(
        sum(row["kernel_count_traced"] for row in decode) / steps
    )
    assert found["dominant_cpu_operator.decode"]["evidence"]["name"] == "aten::_cudnn_attention_forward"


def _plain_rows(run_dir: Path) -> list[dict]:
    columns = ["image_index", "chunk", "cat", "name", "ts_ns", "dur_ns", "correlation", "range_stage"]
    trace = read_trace(run_dir, columns=columns)
    return trace.to_pylist()


def test_copy_and_launch_shares_match_a_plain_loop(gpu_run: Path) -> None:
    """Vision's copy/cast share and launch-bound share, recomputed event by event: vision kernels are
    those whose launch call lies inside their image's vision range (one thread per image)."""
    rows = _plain_rows(gpu_run)
    vision: dict[int, tuple[int, int]] = {}
    for row in rows:
        if row["range_stage"] == "vision":  # the first is the host's range (then its GPU-track copies)
            vision.setdefault(row["image_index"], (row["ts_ns"], row["ts_ns"] + row["dur_ns"]))
    launches = {(row["image_index"], row["chunk"], row["correlation"]): row for row in rows
                if row["cat"] in ("cuda_runtime", "cuda_driver") and row["correlation"] is not None}  # fmt: skip
    copy_ns = total_ns = kernels = shorter = 0
    for row in rows:
        if row["cat"] not in ("kernel", "gpu_memcpy", "gpu_memset"):
            continue
        launch = launches.get((row["image_index"], row["chunk"], row["correlation"]))
        start, end = vision[row["image_index"]]
        if launch is None or not start <= launch["ts_ns"] < end:
            continue
        total_ns += row["dur_ns"]
        if COPY_PATTERN.search(row["name"]) or row["cat"] != "kernel":
            copy_ns += row["dur_ns"]
        if row["cat"] == "kernel":
            kernels += 1
            shorter += row["dur_ns"] < launch["dur_ns"]
    found = {finding["id"]: finding for finding in _summary(gpu_run)["findings"]}
    copies = found["copy_cast_kernels.vision"]["evidence"]
    assert copies["share"] == pytest.approx(copy_ns / total_ns)
    assert 0.2 < copies["share"] < 0.4  # the "28% of vision GPU time is dtype copies", plus concatenation
    launch = found["launch_bound_kernels.vision"]["evidence"]
    assert (launch["kernels"], launch["shorter_than_launch"]) == (kernels, shorter)


def test_analyze_prints_the_roofline_and_findings(gpu_run: Path) -> None:
    result = invoke("analyze", gpu_run, "--peak-tflops", "500")
    assert result.exit_code == 0, result.output
    # The title wraps over the (narrower) table: compare its words.
    words = " ".join(result.output.split())
    assert "roofline, all images (NVIDIA H200 SXM, bfloat16: 500 TFLOP/s, 4,800 GB/s)" in words
    assert "findings (largest time at stake first)" in result.output
    assert re.search(r"- \[high\] host_bound_decode \([\d,.]+ ms at stake\): decode is host-bound", result.output)
    assert _summary(gpu_run)["roofline"]["device"]["source"] == "override"


def test_bad_peak_is_one_error_line(gpu_run: Path) -> None:
    result = invoke("analyze", gpu_run, "--peak-gbps", "-1")
    assert result.exit_code == 1
    assert result.output == "Error: --peak-gbps -1.0: must be a positive number\n"


def test_run_without_architecture_says_why(tmp_path: Path) -> None:
    run_dir = copy_run(gpu_run_or_skip(), tmp_path / "old", with_architecture=False)
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    roofline = _summary(run_dir)["roofline"]
    assert roofline["reason"].startswith("run.json records no model architecture")
    assert all(roofline[stage] is None for stage in STAGES)
    assert "roofline: run.json records no model architecture" in result.output
    # The findings that need no model config are still there.
    assert "host_bound_decode" in {finding["id"] for finding in _summary(run_dir)["findings"]}


# ---------------------------------------------------------------- detectors on small tables


def _steps(rows: list[tuple[int, int, float]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"rank": 0, "image_index": image, "step": step, "source": "trace", "wall_ms": ms,
          "gpu_busy_ms": None, "kernel_count": None} for image, step, ms in rows],
        schema=STEPS,
    )  # fmt: skip


def _predictions(step_ms: list[list[float]], cold: list[list[bool]] | None = None) -> pa.Table:
    rows = [{"rank": 0, "image_index": i, "status": "ok", "decode_step_ms": ms} for i, ms in enumerate(step_ms)]
    table = pa.Table.from_pylist(rows)
    if cold is not None:
        table = table.append_column("decode_step_cold", pa.array(cold, pa.list_(pa.bool_())))
    return table


def _inputs(predictions: pa.Table, reference: pa.Table, traced: pa.Table) -> findings_module.FindingInputs:
    empty = pa.table({"stage": pa.array([], pa.string()), "cpu_ms": pa.array([], pa.float64())})
    return findings_module.FindingInputs(
        predictions=Slices.of(predictions), timings=Slices.of(empty), top=[], roofline=None,
        reference_steps=reference, traced_steps=traced,
    )  # fmt: skip


def test_cold_steps_finding_counts_the_excess_over_warm_steps() -> None:
    predictions = _predictions([[50.0, 10.0, 12.0, 48.0, 11.0]], [[True, False, False, True, False]])
    found = findings_module.cold_steps(_inputs(predictions, _steps([]), _steps([])))
    assert len(found) == 1
    evidence = found[0]["evidence"]
    assert (evidence["cold_steps"], evidence["warm_steps"], evidence["warm_p50_ms"]) == (2, 3, 11.0)
    assert found[0]["time_at_stake_ms"] == pytest.approx((50 - 11) + (48 - 11))
    assert "enable_cudnn_sdp(False)" in found[0]["message"]
    # Cold steps no slower than warm ones by their median: one slow cold step is not cold cost.
    spiky = _predictions([[10.0, 10.0, 300.0, 10.0, 11.0]], [[True, True, True, False, False]])
    assert findings_module.cold_steps(_inputs(spiky, _steps([]), _steps([]))) == []
    # Without the capture's cold flags there is no such finding.
    assert findings_module.cold_steps(_inputs(_predictions([[50.0, 10.0]]), _steps([]), _steps([]))) == []


def test_profiler_overhead_compares_traced_with_untraced_steps() -> None:
    ms = [20.0, 20.0, 10.0, 10.0, 10.0, 20.0]  # steps 1, 2 and 6 traced
    reference = _steps([(0, step, value) for step, value in enumerate(ms, start=1)])
    traced = _steps([(0, step, 0.0) for step in (1, 2, 6)])
    found = findings_module.profiler_overhead(_inputs(_predictions([ms]), reference, traced))
    assert len(found) == 1
    assert (found[0]["evidence"]["traced_p50_ms"], found[0]["evidence"]["untraced_p50_ms"]) == (20.0, 10.0)
    assert found[0]["time_at_stake_ms"] == pytest.approx(30.0)
    # Every step traced: nothing to compare with.
    all_traced = _steps([(0, step, 0.0) for step in range(1, 7)])
    assert findings_module.profiler_overhead(_inputs(_predictions([ms]), reference, all_traced)) == []


def test_outlier_steps_are_measured_against_their_own_image() -> None:
    steps = _steps([(0, 1, 10.0), (0, 2, 10.0), (0, 3, 40.0), (1, 1, 30.0), (1, 2, 30.0), (1, 3, 31.0)])
    found = findings_module.outlier_steps(_inputs(_predictions([]), steps, _steps([])))
    assert len(found) == 1
    assert (found[0]["evidence"]["steps"], found[0]["time_at_stake_ms"]) == (1, 30.0)


def test_outlier_steps_cover_untraced_steps_and_name_those_after_a_trace_window() -> None:
    """Every step counts (the reference clock), not only the traced ones; slow untraced steps right
    after a traced window are counted apart, with their time."""
    ms = [2.0] * 30
    ms[8], ms[9], ms[24] = 64.0, 60.0, 30.0  # steps 9 and 10 follow the window 1-8; step 25 does not
    reference = _steps([(0, step, value) for step, value in enumerate(ms, start=1)])
    traced = _steps([(0, step, ms[step - 1]) for step in range(1, 9)])
    inputs = findings_module.FindingInputs(
        predictions=Slices.of(_predictions([ms])), timings=_inputs(_predictions([]), reference, traced).timings,
        top=[], roofline=None, reference_steps=reference, traced_steps=traced,
    )  # fmt: skip
    (found,) = findings_module.outlier_steps(inputs)
    evidence = found["evidence"]
    assert (evidence["steps"], evidence["step_numbers"]) == (3, [9, 10, 25])
    assert found["time_at_stake_ms"] == pytest.approx(62 + 58 + 28)
    assert (evidence["after_trace_window"], evidence["after_trace_window_excess_ms"]) == (2, pytest.approx(62 + 58))
    assert "2 of them (120 ms) are untraced steps within 10 steps after a traced window" in found["message"]
    # The traced steps alone (what the finding read before) hold no outlier at all.
    traced_only = findings_module.FindingInputs(
        predictions=Slices.of(_predictions([])), timings=inputs.timings, top=[], roofline=None,
        reference_steps=_steps([]), traced_steps=traced,
    )  # fmt: skip
    assert findings_module.outlier_steps(traced_only) == []
