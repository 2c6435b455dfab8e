"""`dsocr report`: the page's figures hold the run's numbers, and real Chromium draws every plot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from analyze_helpers import GPU_RUN, ImageSpec, cpu_full_run, cpu_sampled_run, invoke, write_run  # noqa: F401
from dsocr.report import build_report
from dsocr.report.gpu_steps_fig import gpu_steps_figure
from dsocr.report.inputs import load_run
from dsocr.report.latency_fig import latency_figure
from dsocr.report.roofline_fig import roofline_figure
from dsocr.report.series import bucket_mean, min_max
from dsocr.report.stages_fig import stage_figure
from dsocr.report.steps_data import windows
from dsocr.report.top_fig import top_figures
from dsocr.report.verdicts import verdicts_html
from emit_helpers import draw_page, write_jsonl
from plotly.offline import get_plotlyjs
from report_helpers import browser_or_skip, load, screenshot

from dsocr import rundir, schema

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: summary.json `roofline` as the roofline work (issue 11) writes it: device peaks, per stage over
#: the run, per image. Figures here are made up; the test checks they land where they should.
ROOFLINE = {
    "device": {"device_name": "NVIDIA H200", "matched": "NVIDIA H200 (SXM)", "peak_tflops": 989.0, "peak_gbps": 4800.0},
    "reason": None,
    "vision": {"flops": 4.0e12, "bytes": 2.0e10, "achieved_tflops": 80.0, "achieved_tflops_wall": 40.0},
    "decode": {"flops": 1.0e11, "bytes": 1.0e11, "achieved_tflops": 1.5, "achieved_tflops_wall": 0.1},
    "decode_step": {"steps": 15, "flops": {"median": 1.0, "p90": 2.0}},
    "images": [{"rank": 0, "image_index": 0, "decode": {"flops": 1.0e11, "bytes": 1.0e11, "achieved_tflops": 1.5}}],
}
#: A string that occurs once in plotly.min.js's own header: the library is embedded exactly once.
PLOTLY_BANNER = "plotly.js v"


def _copy(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def _report(*args: str | Path):
    result = invoke("report", *args)
    assert result.exit_code == 0, result.output
    return result


def _assert_drawn(page: Path) -> None:
    """No console message at all, and plotly drew into every plot container."""
    loaded = load(page)
    assert loaded.console == []
    assert loaded.plot_ids(), "the page has no plot container"
    assert loaded.drawn_ids() == loaded.plot_ids()


@pytest.fixture
def gpu_run(tmp_path: Path) -> Path:
    if not (GPU_RUN / rundir.RUN_JSON).is_file():
        pytest.skip(f"no committed GPU capture at {GPU_RUN}")
    return _copy(GPU_RUN, tmp_path / "gpu-run")


def test_gpu_fixture_report_is_drawn_offline(gpu_run: Path, tmp_path: Path) -> None:
    result = _report(gpu_run)
    page = gpu_run / "analysis" / "report.html"
    assert result.output.splitlines()[0] == f"analyzed {gpu_run} (its analysis was missing or older than the run)"
    assert result.output.splitlines()[1].startswith(f"wrote {page} (")
    text = page.read_text(encoding="utf-8")
    assert text.count(PLOTLY_BANNER) == 1
    # Nothing fetched at view time: outside plotly.js itself, no remote address and no external script.
    page_only = text.replace(get_plotlyjs(), "")
    assert "http://" not in page_only and "https://" not in page_only and "<script src=" not in page_only
    # The fixture records its architecture and device: analyze writes the roofline and findings.
    assert "not available: this analysis has no roofline" not in text and "host_bound_decode" in text
    assert "not available: no viz/&lt;md5&gt;/result_with_boxes.jpg" in text
    _assert_drawn(page)
    png = screenshot(page, tmp_path / "report.png")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000


def test_gpu_fixture_figures_hold_the_run_numbers(gpu_run: Path) -> None:
    invoke("analyze", gpu_run)
    run = load_run(gpu_run)
    step_ms = run.predictions["decode_step_ms"][0].as_py()
    cold = run.predictions["decode_step_cold"].to_pylist()
    latency = latency_figure(run)
    assert latency.data[0].y.tolist() == pytest.approx(step_ms, rel=1e-6)  # float32 on the page
    # Every step is traced in this full-mode fixture: one shaded window over all of them.
    assert [(s["x0"], s["x1"]) for s in latency.layout.shapes] == [(0.5, len(step_ms) + 0.5)]
    # The fixture runs one page twice: the first image's steps are cold, the second's warm.
    assert latency.data[1].x.tolist() == [k + 1 for k, flag in enumerate(cold[0]) if flag] != []
    last = latency.layout.updatemenus[0].buttons[-1].args[0]
    assert last["x"][1] == [k + 1 for k, flag in enumerate(cold[-1]) if flag]
    busy_idle = gpu_steps_figure(run)
    steps = [
        row for row in pq.read_table(gpu_run / "analysis" / "steps.parquet").to_pylist() if row["image_index"] == 0
    ]
    timings = pq.read_table(gpu_run / "analysis" / "timings.parquet").to_pylist()
    decode = next(row for row in timings if row["stage"] == "decode" and row["image_index"] == 0)
    assert float(np.sum(busy_idle.data[0].y)) == pytest.approx(decode["gpu_busy_ms_traced"], rel=1e-5)
    busy_plus_idle = np.asarray(busy_idle.data[0].y, dtype=float) + np.asarray(busy_idle.data[1].y, dtype=float)
    expected = [max(row["wall_ms"], row["gpu_busy_ms"]) for row in steps]
    assert busy_plus_idle == pytest.approx(expected, rel=1e-5)
    kinds = [fig.layout.title.text.split(" (")[0] for fig in top_figures(run)]
    assert kinds == [
        "Top kernels per stage",
        "Top operators per stage by the GPU time they launched",
        "Top CPU operators per stage",
    ]


#: Test-only: apply each dropdown's last button the way plotly does on a click, then record the
#: number of points per trace in the DOM.
CLICK_LAST_BUTTON = """<script>
for (const gd of document.querySelectorAll('.js-plotly-plot')) {
  const menus = gd.layout.updatemenus || [];
  if (!menus.length) continue;
  const buttons = menus[0].buttons;
  const last = buttons[buttons.length - 1];
  Plotly.update(gd, last.args[0], last.args[1]);
  gd.setAttribute('data-switched', gd.data.map(trace => trace.x.length).join(','));
}
</script>"""


def test_dropdown_swaps_in_each_images_own_steps(tmp_path: Path) -> None:
    specs = [ImageSpec(0, generated_tokens=9), ImageSpec(1, generated_tokens=5), ImageSpec(2, generated_tokens=7)]
    write_run(tmp_path / "run", specs)
    invoke("analyze", tmp_path / "run")
    run = load_run(tmp_path / "run")
    step_ms = {row["image_index"]: row["decode_step_ms"] for row in run.predictions.to_pylist()}
    latency = latency_figure(run)
    assert len(latency.data) == 1  # one line swapped per image, not one trace per image
    buttons = latency.layout.updatemenus[0].buttons
    assert [button.label for button in buttons] == ["img 0: 0.png", "img 1: 1.png", "img 2: 2.png"]
    for image, button in enumerate(buttons):
        data, layout = button.args
        assert data["x"] == [list(range(1, len(step_ms[image]) + 1))]
        assert data["y"][0] == pytest.approx(step_ms[image], abs=1e-3)
        assert layout["title"]["text"].startswith(f"Per-token latency, img {image}: {image}.png")
    # In the browser, each figure's last button (as plotly applies a click) swaps in that image's steps.
    _report(tmp_path / "run")
    page = tmp_path / "run" / "analysis" / "report.html"
    clicked = tmp_path / "clicked.html"
    clicked.write_text(page.read_text(encoding="utf-8").replace("</body>", f"{CLICK_LAST_BUTTON}</body>"))
    loaded = load(clicked)
    assert loaded.console == []
    assert re.findall(r'data-switched="([^"]*)"', loaded.dom) == ["6", "6,6"]  # img 2: 7 tokens, 6 steps (img 0: 8)
    busy_idle = gpu_steps_figure(run).layout.updatemenus[0].buttons
    steps = rundir.read_checked(tmp_path / "run" / "analysis" / "steps.parquet", "steps").to_pylist()
    for image, button in enumerate(busy_idle):
        rows = [row for row in steps if row["image_index"] == image]
        busy, idle = button.args[0]["y"]
        assert busy == pytest.approx([row["gpu_busy_ms"] for row in rows], abs=1e-3)
        # idle is the rest of the step, never negative (work launched in a step may outlast it)
        expected = [max(row["wall_ms"], row["gpu_busy_ms"]) for row in rows]
        assert np.add(busy, idle) == pytest.approx(expected, abs=2e-3)


def test_finding_evidence_is_a_short_table_with_units_and_three_significant_digits() -> None:
    from dsocr.report.glance import evidence_html

    evidence = {
        "gpu_idle_share": 0.95432,
        "wall_ms_per_step": 57.8312,
        "kernels_per_step": 751.0,
        "steps_traced": 30,
        "step_numbers": [3, 9],
        "source": "analysis/timings.parquet",
    }
    text = evidence_html(evidence)
    assert "<th>gpu idle share</th><td>95.4%</td>" in text
    assert "<th>wall ms per step</th><td>57.8 ms</td>" in text
    assert "<th>kernels per step</th><td>751</td>" in text
    assert "<th>steps traced</th><td>30</td>" in text and "<th>step numbers</th><td>3, 9</td>" in text
    assert "<caption>evidence (source: analysis/timings.parquet)</caption>" in text
    assert "{" not in text  # never raw JSON


def test_roofline_points_sit_under_the_device_roofs() -> None:
    fig = roofline_figure({"roofline": ROOFLINE})
    roof, *points = fig.data
    ridge = 989.0 / 4.8  # FLOP/byte where the bandwidth roof meets the compute roof
    assert roof.x[0] < 1.0 < 200.0 < ridge < roof.x[-1]
    assert np.max(roof.y) == pytest.approx(989.0)
    assert np.interp(1.0, roof.x, roof.y) == pytest.approx(4.8, rel=0.05)
    placed = {trace.name: (trace.x[0], trace.y[0]) for trace in points}
    assert placed == {
        "vision, all images, on GPU busy time": (200.0, 80.0),
        "vision, all images, on wall time": (200.0, 40.0),
        "decode per token, all images, on GPU busy time": (1.0, 1.5),
        "decode per token, all images, on wall time": (1.0, 0.1),
        "decode, per image": (1.0, 1.5),
    }
    no_section = roofline_figure({})
    assert no_section.reason.startswith("this analysis has no roofline section")
    unknown = roofline_figure({"roofline": {"device": {"reason": "no device name recorded"}, "reason": "old run.json"}})
    assert unknown.reason.startswith("no roofline: the device's peaks are unknown (no device name recorded)")
    # A CPU run (no peaks) gets the same one line, not an empty chart.
    cpu = roofline_figure({"roofline": {**ROOFLINE, "device": {"reason": "CPU run: the peaks table holds GPUs"}}})
    assert cpu.reason.startswith("no roofline: the device's peaks are unknown (CPU run")


def test_steps_table_adds_up_to_the_stage_totals(tmp_path: Path) -> None:
    specs = [ImageSpec(0, generated_tokens=9), ImageSpec(1, generated_tokens=12, traced_steps=[1, 2, 6, 7, 8])]
    write_run(tmp_path / "run", specs)
    assert invoke("analyze", tmp_path / "run").exit_code == 0
    steps = rundir.read_checked(tmp_path / "run" / "analysis" / "steps.parquet", "steps").to_pylist()
    timings = rundir.read_checked(tmp_path / "run" / "analysis" / "timings.parquet", "timings").to_pylist()
    for image, expected_steps in ((0, list(range(1, 9))), (1, [1, 2, 6, 7, 8])):
        rows = [row for row in steps if row["image_index"] == image]
        decode = next(row for row in timings if row["image_index"] == image and row["stage"] == "decode")
        assert [row["step"] for row in rows] == expected_steps
        assert sum(row["wall_ms"] for row in rows) == pytest.approx(decode["cpu_ms_traced"])
        assert sum(row["gpu_span_ms"] for row in rows) == pytest.approx(decode["gpu_span_ms_traced"])
        assert sum(row["kernel_count"] for row in rows) == decode["kernel_count_traced"]
        assert sum(row["gpu_busy_ms"] for row in rows) >= decode["gpu_busy_ms_traced"] - 1e-9  # steps' unions add up
    assert windows(np.array([1, 2, 6, 7, 8])) == [(1, 2), (6, 8)]


@pytest.mark.slow
def test_cpu_run_report_with_renders(tmp_path: Path, cpu_sampled_run: Path) -> None:  # noqa: F811
    run_dir = _copy(cpu_sampled_run, tmp_path / "sampled")
    assert invoke("emit", run_dir, "--jobs", "1").exit_code == 0
    result = invoke("analyze", run_dir, "--report")
    assert result.exit_code == 0, result.output
    page = run_dir / "analysis" / "report.html"
    assert f"wrote {page} (" in result.output
    text = page.read_text(encoding="utf-8")
    assert "not available: the trace has no GPU activity (a CPU run)" in text
    md5 = rundir.read_predictions(run_dir)["image_md5"][0].as_py()
    link = f'href="../viz/{md5}/result_with_boxes.jpg"'
    assert link in text and (run_dir / "viz" / md5 / "result_with_boxes.jpg").is_file()
    assert 'src="data:image/jpeg;base64,' in text
    # Sampled capture: the shaded windows are exactly the traced steps analyze found.
    run = load_run(run_dir)
    traced = pq.read_table(run_dir / "analysis" / "steps.parquet")["step"].to_numpy()
    shapes = latency_figure(run).layout.shapes
    shaded = sorted(step for s in shapes for step in range(int(s["x0"] + 0.5), int(s["x1"] + 0.5)))
    assert shaded == traced.tolist() and len(shapes) >= 2
    # A roofline section (as the roofline work writes it) is drawn too; the analysis stays fresh.
    summary_path = run_dir / "analysis" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "roofline": ROOFLINE}))
    assert not _report(run_dir).output.startswith("analyzed ")
    assert "not available: this analysis has no roofline" not in page.read_text(encoding="utf-8")
    _assert_drawn(page)


@pytest.mark.slow
def test_report_against_a_second_run(tmp_path: Path, cpu_full_run: Path, cpu_sampled_run: Path) -> None:  # noqa: F811
    a, b = _copy(cpu_full_run, tmp_path / "full"), _copy(cpu_sampled_run, tmp_path / "sampled")
    result = _report(a, "--against", b)
    page = a / "analysis" / "compare-sampled.html"
    assert result.output.splitlines()[-1].startswith(f"wrote {page} (")
    text = page.read_text(encoding="utf-8")
    assert "dsocr compare: full (A) vs sampled (B)" in text
    assert "<b>option max_new_tokens</b>" in text  # 8 vs 14: a differing option, listed first in bold
    assert "not available: verdicts come from `dsocr compare A B --report`" in text
    _assert_drawn(page)


@pytest.mark.slow
def test_compare_report_carries_the_verdicts(tmp_path: Path, cpu_full_run: Path, cpu_sampled_run: Path) -> None:  # noqa: F811
    a, b = _copy(cpu_full_run, tmp_path / "full"), _copy(cpu_sampled_run, tmp_path / "sampled")
    result = invoke("compare", a, b, "--json", "--report")
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.stdout)
    page = a / "analysis" / "compare-sampled.html"
    assert f"wrote {page} (" in result.stderr
    text = page.read_text(encoding="utf-8")
    assert "not available: verdicts come from" not in text
    verdict = comparison["clock"]["decode_ms"]["verdict"]
    assert "<td>clock</td><td>decode_ms</td>" in text and verdict in text
    traced = comparison["trace"]["decode"]["figures"]["cpu_ms"]["verdict"]
    assert "<td>trace: decode per traced step</td><td>cpu_ms</td>" in text and traced in text
    _assert_drawn(page)


def test_imported_run_without_trace_shows_the_reference_clock(tmp_path: Path) -> None:
    pages = [draw_page(tmp_path / f"p{index}.png", shade=index * 10) for index in range(2)]
    outputs = write_jsonl(
        tmp_path / "outputs.jsonl",
        [{"image": str(page), "text": "x", "timings_ms": {"vision": 10.0 + i, "prefill": 30.0, "decode": 500.0}}
         for i, page in enumerate(pages)] + [{"image": str(tmp_path / "gone.png"), "error": "unreadable"}],
    )  # fmt: skip
    assert invoke("import", outputs, "--out", tmp_path / "run").exit_code == 0
    _report(tmp_path / "run")
    text = (tmp_path / "run" / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "Where the time goes: ms per image" in text
    assert "3 total, 2 ok, 1 failed" in text
    assert "not available: no processed image has decode steps" in text
    assert "not available: the analysis has no kernel or operator rows (no trace)" in text
    assert "not available: analysis/steps.parquet" not in text  # analyze wrote it, empty
    run = load_run(tmp_path / "run")
    bars = stage_figure(run).data
    assert [bar.name for bar in bars] == ["vision", "prefill_text", "decode", "other"]
    assert list(bars[0].y) == [10.0, 11.0] and list(bars[1].y) == [20.0, 19.0] and list(bars[2].y) == [500.0, 500.0]
    assert list(bars[3].y) == [None, None]  # an import records no wall time: no remainder to show
    _assert_drawn(tmp_path / "run" / "analysis" / "report.html")


def test_report_reanalyzes_only_a_stale_run(tmp_path: Path) -> None:
    write_run(tmp_path / "run", [ImageSpec(0)])
    first = _report(tmp_path / "run")
    assert first.output.startswith("analyzed ")
    assert not _report(tmp_path / "run").output.startswith("analyzed ")
    later = (tmp_path / "run" / "analysis" / "summary.json").stat().st_mtime + 5
    part = next((tmp_path / "run" / "predictions.parts").glob("*.parquet"))
    os.utime(part, (later, later))
    assert _report(tmp_path / "run").output.startswith("analyzed ")


def test_bad_inputs_give_one_error_line(tmp_path: Path) -> None:
    result = invoke("report", tmp_path / "nothing")
    assert (
        result.exit_code == 1
        and result.output == f"Error: {tmp_path / 'nothing'}: not a dsocr run directory (no run.json)\n"
    )
    write_run(tmp_path / "run", [ImageSpec(0)])
    _report(tmp_path / "run")
    summary = tmp_path / "run" / "analysis" / "summary.json"
    summary.write_text(json.dumps({"schema_version": 99}))
    result = invoke("report", tmp_path / "run")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {summary}: schema version 99, this dsocr reads version {schema.ANALYSIS_SCHEMA_VERSION}"
        " (run `dsocr analyze` again)\n"
    )


def test_missing_extra_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_run(tmp_path / "run", [ImageSpec(0)])
    monkeypatch.setitem(sys.modules, "plotly", None)  # what an install without [report] looks like
    for name in [name for name in sys.modules if name.startswith("dsocr.report")]:
        monkeypatch.delitem(sys.modules, name)
    result = invoke("report", tmp_path / "run")
    assert result.exit_code == 1
    assert result.output == "Error: dsocr report needs the [report] extra (plotly): pip install 'dsocr[report]'\n"


def test_report_never_imports_torch(tmp_path: Path) -> None:
    write_run(tmp_path / "run", [ImageSpec(0)])
    invoke("analyze", tmp_path / "run")
    code = (
        "import sys; from pathlib import Path; from dsocr.report import build_report; "
        f"build_report(Path({str(tmp_path / 'run')!r})); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers') "
        "or m.startswith(('dsocr.analyze', 'dsocr.capture', 'dsocr.emit'))); print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_downsampling_keeps_spikes_and_totals() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(10, 1, 50_000)
    y[12_345] = 99.0
    y[40_000] = -5.0
    series = min_max(np.arange(y.size), y, max_points=2000)
    assert series.downsampled and series.x.size <= 2000 and series.total == 50_000
    assert 12_345 in series.x and 40_000 in series.x and series.y.max() == 99.0
    short = min_max(np.arange(10), y[:10], max_points=2000)
    assert not short.downsampled and short.y.tolist() == y[:10].tolist()
    x, (means,), total = bucket_mean(np.arange(y.size), [y], max_points=1000)
    assert x.size == 1000 and total == 50_000
    assert float(np.mean(means)) == pytest.approx(float(np.mean(y)), rel=1e-3)


def test_cold_steps_are_marked_when_the_capture_records_them(tmp_path: Path, cpu_sampled_run: Path) -> None:  # noqa: F811
    run_dir = _copy(cpu_sampled_run, tmp_path / "sampled")
    invoke("analyze", run_dir)
    run = load_run(run_dir)
    cold = run.predictions["decode_step_cold"][0].as_py()
    assert cold is not None and any(cold), "a fresh capture process runs its first decode lengths cold"
    figure = latency_figure(run)
    assert figure.data[1].name == "step latency: cold steps"
    assert figure.data[1].x.tolist() == [index + 1 for index, flag in enumerate(cold) if flag]
    page = build_report(run_dir)
    text = page.path.read_text(encoding="utf-8")
    cold_figures = json.loads((run_dir / "analysis" / "summary.json").read_text())["cold"]
    assert f"<td>{cold_figures['cold_steps']}</td>" in text.split("<h3>Cold decode steps</h3>")[1].split("</table>")[0]


def test_browser_is_available_or_the_skip_says_why() -> None:
    browser_or_skip()  # the skip message names the package to install


def test_every_report_option_is_documented() -> None:
    help_text = invoke("report", "--help").output
    options = set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text)) - {"--help"}
    documented = (Path(__file__).resolve().parents[1] / "docs" / "report.md").read_text()
    assert options and sorted(option for option in options if f"`{option}" not in documented) == []


def test_verdicts_table_lists_every_compared_figure() -> None:
    # Shaped like `dsocr compare --json`: clock figures, and trace figures per stage.
    figure = {"a": 10.0, "b": 8.0, "delta": -2.0, "rel_delta": -0.2, "noise": 0.05, "verdict": "faster"}
    comparison = {
        "clock": {
            "decode_ms": figure,
            "ttft_ms": {**figure, "verdict": "same within noise", "rel_delta": 0.001},
            "image_ms": {"a": None, "b": None},
        },
        "trace": {
            "decode": {
                "per": "traced step",
                "figures": {"cpu_ms": {"a": None, "b": None, "verdict": "not comparable", "reason": "B has no trace"}},
            }
        },
    }
    rows = verdicts_html(comparison).split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == 3  # the clock figure neither run measured is left out; "not comparable" is kept
    assert "<td>clock</td><td>decode_ms</td><td>10.000</td><td>8.000</td><td>-2.000</td><td>-20.0%</td>" in rows[0]
    assert rows[0].endswith("<td>±5.0%</td><td>faster</td>")
    assert "<td>clock</td><td>ttft_ms</td>" in rows[1] and "+0.1%" in rows[1] and "same within noise" in rows[1]
    assert "<td>trace: decode per traced step</td><td>cpu_ms</td>" in rows[2] and "not comparable" in rows[2]
