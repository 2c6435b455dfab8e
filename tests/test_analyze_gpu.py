"""`dsocr analyze` on the committed H200 capture (tests/data/gpu-run): the CUDA-event check and
kernel attribution against a plain loop. Skipped, with the reason, until the capture is committed."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analyze_helpers import gpu_run_or_skip, invoke, plain_stage_figures, plain_stream_ms
from dsocr.analyze.report import print_report
from dsocr.analyze.runner import analyze_run
from dsocr.analyze.summary import METRICS, to_json
from rich.console import Console
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
        if row["stage"] in TOLERANCE and row["reference_traced_ms"]:
            assert row["check_measure"] == "gpu_range_ms_traced"
            assert abs(row["reference_rel_diff"]) <= TOLERANCE[row["stage"]], row
            assert 0 < row["gpu_busy_ms_traced"] <= row["gpu_span_ms_traced"] * (1 + 1e-9)
            assert row["gpu_span_ms_traced"] <= row["gpu_range_ms_traced"] * (1 + 1e-9)
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
        assert timings[key]["gpu_busy_ms_traced"] == pytest.approx(figures["gpu_busy_ms"], rel=1e-9), key
        assert timings[key]["gpu_span_ms_traced"] == pytest.approx(figures["gpu_span_ms"], rel=1e-9), key
        assert timings[key]["kernel_count_traced"] == figures["kernel_count"], key
    for key, stream_ms in plain_stream_ms(rows).items():
        assert timings[key]["gpu_range_ms_traced"] == pytest.approx(stream_ms, rel=1e-9), key


#: The terminal report of the committed capture, next to it. After an intended change of the
#: report, regenerate it with `DSOCR_WRITE_EXPECTED=1 pytest tests/test_analyze_gpu.py -k exact`.
EXPECTED_REPORT = Path(__file__).parent / "data" / "gpu-run.report.txt"
REPORT_WIDTH = 100


def test_terminal_report_of_the_committed_capture_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    source = gpu_run_or_skip()
    monkeypatch.chdir(source.parent)  # the report names the run directory as given: keep it relative
    analysis = analyze_run(Path(source.name), write=False)
    buffer = io.StringIO()
    print_report(analysis.summary, Console(file=buffer, width=REPORT_WIDTH, color_system=None, force_terminal=False))
    if os.environ.get("DSOCR_WRITE_EXPECTED"):
        EXPECTED_REPORT.write_text(buffer.getvalue(), encoding="utf-8")
    assert buffer.getvalue() == EXPECTED_REPORT.read_text(encoding="utf-8")


def test_json_and_summary_json_render_the_same_typed_summary(analyzed: Path) -> None:
    printed = invoke("analyze", analyzed, "--json")
    assert printed.exit_code == 0, printed.output
    written = json.loads((analyzed / "analysis" / "summary.json").read_text())
    assert json.loads(printed.output) == written
    summary = analyze_run(analyzed, write=False).summary
    assert written == json.loads(json.dumps(to_json(summary)))
    assert list(written) == [name for name, _ in METRICS]
    decode_trace = written["stages"]["decode"]["trace"]
    assert decode_trace["gpu_idle_share"] == to_json(summary.stages["decode"].trace.gpu_idle_share)
    assert "gpu_idle_share" not in written["stages"]["vision"]["trace"]  # decode-only figures are left out elsewhere


#: A real H200 capture with --with-flops (one page, 8 tokens, --profile full): the profiler's own
#: FLOP counts beside the model's.
GPU_FLOPS_RUN = Path(__file__).parent / "data" / "gpu-flops-run"


def test_profiler_flops_on_the_gpu_name_the_moe_products_it_cannot_count(tmp_path: Path) -> None:
    """On CUDA the MoE experts of prefill run as aten::_grouped_mm, one kernel with no FLOP formula:
    prefill_text's profiler count falls short by their share, and analyze names them; vision and
    decode (no grouped products) agree."""
    shutil.copytree(GPU_FLOPS_RUN, tmp_path / "run")
    analysis = analyze_run(tmp_path / "run")
    checks = analysis.summary.roofline.profiler_flops
    assert checks is not None
    prefill_text = checks["prefill_text"]
    assert prefill_text["uncounted_operators"] == {"aten::_grouped_mm": 22}  # 11 MoE layers x 2 products
    assert -0.6 < prefill_text["rel_diff"] < -0.5
    # The shortfall is the routed experts' work: tokens x experts per token x gate, up and down.
    text = json.loads((GPU_FLOPS_RUN / rundir.RUN_JSON).read_text())["model"]["architecture"]["text_config"]
    tokens = pq.read_table(GPU_FLOPS_RUN / rundir.PREDICTIONS_FILE)["prompt_tokens"][0].as_py()
    sparse_layers = text["mlp_layer_types"].count("sparse")
    routed = 2 * tokens * text["num_experts_per_tok"] * 3 * text["hidden_size"] * text["moe_intermediate_size"]
    shortfall = prefill_text["model_flops"] - prefill_text["profiler_flops"]
    assert shortfall == pytest.approx(routed * sparse_layers, rel=1e-6)
    assert checks["decode"]["uncounted_operators"] == {} and abs(checks["decode"]["rel_diff"]) < 1e-6
    assert checks["vision"]["uncounted_operators"] == {} and abs(checks["vision"]["rel_diff"]) < 0.01
