"""`dsocr analyze` on synthetic runs built to the trace contract, checked with plain loops."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from analyze_helpers import NS_PER_MS, ImageSpec, invoke, plain_stage_figures, plain_stream_ms, write_run

from dsocr import rundir, schema

STAGES = ("vision", "prefill_text", "prefill", "decode")


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Three images: full trace in one chunk, sampled in two chunks, and a failed image."""
    run_dir = tmp_path_factory.mktemp("synthetic") / "gpu"
    specs = [
        ImageSpec(0, generated_tokens=7),
        ImageSpec(1, generated_tokens=12, traced_steps=[1, 2, 3, 8, 9], chunk_every=3),
        ImageSpec(2, status="failed"),
    ]
    rows = write_run(run_dir, specs, seed=7)
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir, rows


def _timings(run_dir: Path) -> dict[tuple[int, str], dict]:
    table = pq.read_table(run_dir / "analysis" / "timings.parquet")
    assert table.schema.metadata[schema.TABLE_KEY] == b"timings"
    return {(row["image_index"], row["stage"]): row for row in table.to_pylist()}


def _ranges(rows: list[dict]) -> dict[tuple[int, str, int | None], dict]:
    return {
        (r["image_index"], r["range_stage"], r.get("range_step")): r
        for r in rows
        if r["cat"] == "user_annotation" and r.get("range_stage")
    }


def test_gpu_figures_match_a_plain_loop_attribution(gpu_run: tuple[Path, list[dict]]) -> None:
    run_dir, rows = gpu_run
    timings = _timings(run_dir)
    expected = plain_stage_figures(rows)
    assert {key for key in timings} == {(image, stage) for image in (0, 1) for stage in STAGES}
    for key, figures in expected.items():
        row = timings[key]
        assert row["gpu_busy_ms_traced"] == pytest.approx(figures["gpu_busy_ms"], abs=1e-9), key
        assert row["gpu_span_ms_traced"] == pytest.approx(figures["gpu_span_ms"], abs=1e-9), key
        assert row["kernel_count_traced"] == figures["kernel_count"], key
    for key, stream_ms in plain_stream_ms(rows).items():
        assert timings[key]["gpu_range_ms_traced"] == pytest.approx(stream_ms, abs=1e-9), key


def test_cpu_figures_and_the_check_against_the_reference(gpu_run: tuple[Path, list[dict]]) -> None:
    run_dir, rows = gpu_run
    timings, ranges = _timings(run_dir), _ranges(rows)
    for image in (0, 1):
        vision = ranges[(image, "vision", None)]["dur_ns"] / NS_PER_MS
        prefill = ranges[(image, "prefill", None)]["dur_ns"] / NS_PER_MS
        steps = [
            r["dur_ns"] / NS_PER_MS for (i, stage, _), r in ranges.items() if i == image and stage == "decode_step"
        ]
        assert timings[(image, "vision")]["cpu_ms_traced"] == pytest.approx(vision)
        assert timings[(image, "prefill")]["cpu_ms_traced"] == pytest.approx(prefill)
        assert timings[(image, "prefill_text")]["cpu_ms_traced"] == pytest.approx(prefill - vision)
        assert timings[(image, "decode")]["cpu_ms_traced"] == pytest.approx(sum(steps))
        # The synthetic reference is each traced range's duration plus 1%, untraced steps included
        # in the list; only the traced ones may enter the decode reference.
        decode = timings[(image, "decode")]
        assert decode["reference_traced_ms"] == pytest.approx(sum(steps) * 1.01)
        assert decode["check_measure"] == "gpu_range_ms_traced"
        expected = (decode["gpu_range_ms_traced"] - decode["reference_traced_ms"]) / decode["reference_traced_ms"]
        assert decode["reference_rel_diff"] == pytest.approx(expected)
    assert timings[(0, "decode")]["steps_traced"] == 6 and timings[(0, "decode")]["steps_total"] == 6
    assert timings[(1, "decode")]["steps_traced"] == 5 and timings[(1, "decode")]["steps_total"] == 11


def test_summary_counts_what_the_trace_cannot_see(gpu_run: tuple[Path, list[dict]]) -> None:
    run_dir, rows = gpu_run
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    coverage = summary["coverage"]
    gpu_ops = [r for r in rows if r["cat"] in ("kernel", "gpu_memcpy", "gpu_memset")]
    launched = {(r["image_index"], r["correlation"]) for r in rows if r["cat"] == "cuda_runtime"}
    without_launch = [r for r in gpu_ops if (r["image_index"], r["correlation"]) not in launched]
    assert summary["schema_version"] == schema.ANALYSIS_SCHEMA_VERSION
    assert summary["trace"]["device_time"] is True
    assert coverage["gpu_ops"] == len(gpu_ops)
    assert coverage["gpu_ops_without_launch"] == len(without_launch) == 2
    # Per image: one op between prefill and step 1, one launched from another thread.
    assert coverage["gpu_ops_outside_ranges"] == 2 * 2 + len(without_launch)
    assert coverage["steps_traced"] == 11 and coverage["steps_total"] == 17 and coverage["steps_not_traced"] == 6
    assert coverage["flush_chunks"] == 3 and coverage["flush_gaps"] == 1
    assert coverage["images_failed"] == 1 and coverage["images_ok"] == 2
    assert coverage["ranges_cut_by_flush"] == 0 and coverage["ranges_without_device_work"] == 0


def test_latency_per_image_is_whole_image_and_trace_figures_carry_coverage(gpu_run: tuple[Path, list[dict]]) -> None:
    """images[] holds the reference clock over every step; the trace's steps only under their own keys."""
    run_dir, rows = gpu_run
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    ranges = _ranges(rows)
    predictions = {row["image_index"]: row for row in rundir.read_predictions(run_dir).to_pylist()}
    images = {row["image_index"]: row for row in summary["images"]}
    for image in (0, 1):
        traced = sorted(r["dur_ns"] / NS_PER_MS for (i, s, _), r in ranges.items() if i == image and s == "decode_step")
        every = predictions[image]["decode_step_ms"]
        got = images[image]
        assert got["source"] == "reference"
        assert got["ttft_ms"] == pytest.approx(predictions[image]["prefill_ms"])
        assert got["tpot_mean_ms"] == pytest.approx(statistics.mean(every))
        assert got["tpot_p50_ms"] == pytest.approx(statistics.median(every))
        assert got["tpot_max_ms"] == pytest.approx(max(every))
        assert got["decode_tokens_per_s"] == pytest.approx(len(every) / sum(every) * 1000)
        assert got["steps_total"] == len(every)
        assert got["steps_traced"] == len(traced)
        assert got["tpot_traced_p50_ms"] == pytest.approx(statistics.median(traced))
        assert got["prompt_tokens"] == 300 + image and got["stop_reason"] == "max_new_tokens"
    ttfts = [images[i]["ttft_ms"] for i in (0, 1)]
    assert summary["latency"]["ttft_ms"]["median"] == pytest.approx(statistics.median(ttfts))


def test_top_kernels_match_a_plain_sum_by_name(gpu_run: tuple[Path, list[dict]]) -> None:
    run_dir, rows = gpu_run
    kernels = pq.read_table(run_dir / "analysis" / "kernels.parquet").to_pylist()
    launches = {(r["image_index"], r["chunk"], r["correlation"]): r for r in rows if r["cat"] == "cuda_runtime"}
    steps = [r for r in rows if r.get("range_stage") == "decode_step" and r["cat"] == "user_annotation"]
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for op in rows:
        launch = launches.get((op["image_index"], op["chunk"], op.get("correlation")))
        if op["cat"] not in ("kernel", "gpu_memcpy") or launch is None:
            continue
        # Counted when its launch lies in a decode step of the launching thread (not another thread's).
        if any(
            s["image_index"] == op["image_index"] and s["tid"] == launch["tid"]
            and s["ts_ns"] <= launch["ts_ns"] < s["ts_ns"] + s["dur_ns"]
            for s in steps
        ):  # fmt: skip
            totals[op["name"]] += op["dur_ns"] / NS_PER_MS
            calls[op["name"]] += 1
    decode = {row["name"]: row for row in kernels if row["stage"] == "decode" and row["kind"] == "kernel"}
    assert set(decode) == set(totals)
    for name, total in totals.items():
        assert decode[name]["total_ms_traced"] == pytest.approx(total)
        assert decode[name]["calls"] == calls[name]
    assert sum(row["share"] for row in decode.values()) == pytest.approx(1.0)
    operators = {row["name"] for row in kernels if row["kind"] == "operator"}
    assert operators <= {"aten::mm", "aten::add", "(no cpu_op)"}


def test_terminal_report_and_json(gpu_run: tuple[Path, list[dict]]) -> None:
    run_dir, _ = gpu_run
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0
    for text in ("GPU busy", "decode GPU idle share", "top kernels per stage", "6 not traced", "TTFT ms"):
        assert text in result.output
    as_json = invoke("analyze", run_dir, "--json")
    assert as_json.exit_code == 0
    payload = json.loads(as_json.output)
    assert payload["stages"]["decode"]["trace"]["images"] == 2
    assert 0 < payload["stages"]["decode"]["trace"]["gpu_idle_share"]["median"] < 1


def test_cpu_only_trace_says_there_is_no_device_time(tmp_path: Path) -> None:
    write_run(tmp_path, [ImageSpec(0, gpu=False)], clock="perf_counter")
    result = invoke("analyze", tmp_path)
    assert result.exit_code == 0, result.output
    assert "no device time" in result.output and "GPU busy" not in result.output
    timings = _timings(tmp_path)
    assert timings[(0, "decode")]["gpu_busy_ms_traced"] is None
    assert timings[(0, "decode")]["check_measure"] == "cpu_ms_traced"
    assert timings[(0, "decode")]["reference_rel_diff"] == pytest.approx(1 / 1.01 - 1)


def test_run_without_trace_reports_the_reference(tmp_path: Path) -> None:
    write_run(tmp_path, [ImageSpec(0), ImageSpec(1)])
    for path in (tmp_path / "trace").rglob("*.parquet"):
        path.unlink()
    result = invoke("analyze", tmp_path)
    assert result.exit_code == 0, result.output
    assert "trace missing: no trace files under trace/" in result.output
    timings = _timings(tmp_path)
    assert timings[(0, "decode")]["cpu_ms_traced"] is None
    assert timings[(0, "prefill")]["clock_ms"] is not None
    assert timings[(0, "decode")]["clock_ms"] is not None
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert summary["trace"]["present"] is False
    assert summary["images"][0]["source"] == "reference"
    assert summary["images"][0]["tpot_mean_ms"] is not None


def test_a_range_cut_by_the_flush_window_is_counted_and_left_out(tmp_path: Path) -> None:
    rows = write_run(tmp_path, [ImageSpec(0, generated_tokens=4)])
    last_end = max(r["ts_ns"] + r["dur_ns"] for r in rows)
    cut = next(r for r in rows if r.get("range_step") == 3 and r["cat"] == "user_annotation")
    cut["dur_ns"] = last_end - cut["ts_ns"] + 10  # the profiler closed it at the cycle's end
    from dsocr import rundir

    path = next((tmp_path / "trace").rglob("*.parquet"))
    rundir.write_table_atomic(rundir.rows_to_table(rows, schema.TRACE), path)
    result = invoke("analyze", tmp_path, "--json")
    payload = json.loads(result.output)
    assert payload["coverage"]["ranges_cut_by_flush"] == 1
    assert payload["stages"]["decode"]["trace"]["steps_traced"] == 2
