"""`dsocr analyze` and `export-trace` on real CPU captures of the embedded tiny model."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analyze_helpers import capture_run, cpu_full_run, cpu_sampled_run, invoke  # noqa: F401  (fixtures)
from trace_helpers import assert_range_matches_clock, assert_steps_match_clock, read_trace

from dsocr import rundir
from dsocr.vocab import NS_PER_MS


def _ranges(run_dir: Path) -> dict[tuple[int, str, int | None], float]:
    trace = read_trace(run_dir, columns=["image_index", "cat", "range_stage", "range_step", "dur_ns"])
    rows = trace.filter(pc.equal(trace["cat"], "user_annotation")).to_pylist()
    return {
        (row["image_index"], row["range_stage"], row["range_step"]): row["dur_ns"] / NS_PER_MS
        for row in rows
        if row["range_stage"]
    }


def _timings(run_dir: Path) -> dict[tuple[int, str], dict]:
    rows = pq.read_table(run_dir / "analysis" / "timings.parquet").to_pylist()
    return {(row["image_index"], row["stage"]): row for row in rows}


def test_full_cpu_trace(cpu_full_run: Path) -> None:  # noqa: F811
    result = invoke("analyze", cpu_full_run)
    assert result.exit_code == 0, result.output
    assert "no device time" in result.output
    assert "decode steps traced: 14 of 14 (0 not traced)" in result.output
    timings, ranges = _timings(cpu_full_run), _ranges(cpu_full_run)
    predictions = {row["image_index"]: row for row in rundir.read_predictions(cpu_full_run).to_pylist()}
    for image in (0, 1):
        steps = [ms for (i, stage, _), ms in ranges.items() if i == image and stage == "decode_step"]
        assert timings[(image, "vision")]["cpu_ms_traced"] == pytest.approx(ranges[(image, "vision", None)])
        assert timings[(image, "prefill")]["cpu_ms_traced"] == pytest.approx(ranges[(image, "prefill", None)])
        assert timings[(image, "decode")]["cpu_ms_traced"] == pytest.approx(sum(steps))
        assert timings[(image, "decode")]["steps_traced"] == 7 == timings[(image, "decode")]["steps_total"]
        # Every step traced: the traced reference is the whole stage, the clock's decode.
        assert timings[(image, "decode")]["reference_traced_ms"] == pytest.approx(predictions[image]["decode_ms"])
        assert timings[(image, "decode")]["clock_ms"] == pytest.approx(predictions[image]["decode_ms"])
        for stage in ("vision", "prefill", "decode"):
            row = timings[(image, stage)]
            assert row["check_measure"] == "cpu_ms_traced"
            assert row["gpu_busy_ms_traced"] is None
            if stage != "decode":
                assert_range_matches_clock(row["cpu_ms_traced"], row["reference_traced_ms"], context=row)
        # decode's traced figures are the sums of these (checked above); compare per step.
        step_ranges = [ranges[(image, "decode_step", step)] for step in range(1, len(steps) + 1)]
        assert_steps_match_clock(step_ranges, predictions[image]["decode_step_ms"], context=image)
    kernels = pq.read_table(cpu_full_run / "analysis" / "kernels.parquet")
    assert set(kernels["kind"].to_pylist()) == {"cpu_operator"}
    assert set(kernels["stage"].to_pylist()) == {"vision", "prefill_text", "prefill", "decode"}


def test_sampled_cpu_trace_counts_untraced_steps(cpu_sampled_run: Path) -> None:  # noqa: F811
    result = invoke("analyze", cpu_sampled_run, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    coverage = summary["coverage"]
    ranges = _ranges(cpu_sampled_run)
    traced = sorted(step for (_, stage, step) in ranges if stage == "decode_step")
    assert coverage["steps_total"] == 13 and coverage["steps_traced"] == len(traced) < 13
    assert coverage["flush_gaps"] >= 1 and coverage["ranges_cut_by_flush"] == 0
    assert not any(stage == "decode" for (_, stage, _) in ranges)  # lost across flush cycles
    step_ms = rundir.read_predictions(cpu_sampled_run)["decode_step_ms"][0].as_py()
    decode = _timings(cpu_sampled_run)[(0, "decode")]
    assert decode["reference_traced_ms"] == pytest.approx(sum(step_ms[step - 1] for step in traced))
    # The stage itself is every step on the clock, not the traced ones.
    assert decode["clock_ms"] == pytest.approx(sum(step_ms)) and decode["clock_ms"] > decode["reference_traced_ms"]
    step_ranges = [ranges[(0, "decode_step", step)] for step in traced]
    assert_steps_match_clock(step_ranges, [step_ms[step - 1] for step in traced])


def test_profile_off_run_reports_the_reference(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = capture_run(tmp_path / "off", sample_pages[:1], "--max-new-tokens", "3", "--profile", "off")
    result = invoke("analyze", run_dir)
    assert result.exit_code == 0, result.output
    assert "trace missing: profiling was off (--profile off)" in result.output
    timings = _timings(run_dir)
    assert timings[(0, "prefill")]["cpu_ms_traced"] is None
    assert timings[(0, "prefill")]["clock_ms"] > 0 and timings[(0, "decode")]["clock_ms"] > 0
    assert "where the time goes" in result.output


def test_export_trace_of_a_real_capture(cpu_full_run: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "trace.json"
    result = invoke("export-trace", cpu_full_run, "--out", out)
    assert result.exit_code == 0, result.output
    events = [event for event in json.loads(out.read_text())["traceEvents"] if event["ph"] == "X"]
    trace = read_trace(cpu_full_run, columns=["cat", "name"])
    counts: dict[str, int] = defaultdict(int)
    for cat in trace["cat"].to_pylist():
        counts[cat] += 1
    assert len(events) == trace.num_rows - counts["Trace"]  # the profiler's envelope is left out
    assert sum(1 for event in events if event["cat"] == "cpu_op") == counts["cpu_op"]
