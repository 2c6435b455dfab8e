"""One set of true numbers (issue 20), on real CPU captures of the embedded model.

A sampled capture traces some decode steps only: every output still shows each stage's whole time
from the reference clock under one name, compare pairs pages by their bytes across profile modes
and paths, and no output prints an enum's repr.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from analyze_helpers import invoke
from emit_helpers import read_info
from rich.console import Console

from dsocr import rundir
from dsocr.figures import decode_tokens_per_s, median_across_images, tpot_p50_ms

pytest.importorskip("torch", reason="dsocr capture needs the [capture] extra")
pytestmark = pytest.mark.slow

#: A sampled schedule that leaves steps untraced in 14 tokens: 1-2 traced, then 5-6 and 10-11.
SAMPLED = ("--profile", "sampled", "--first-steps", "2", "--window-steps", "2", "--window-every", "5")
TOKENS = ("--max-new-tokens", "14")
#: "decode equal everywhere" within 1% (the report stores float32; JSON prints repr floats).
SAME_VALUE = 0.01
ENUM_REPR = re.compile(r"<[A-Z]\w*\.\w+: '[^']*'>")


def _capture(out: Path, pages: list[Path], *extra: str) -> str:
    """`dsocr capture` in its own process (as a user runs it); its stdout (the summary table)."""
    dsocr = Path(sys.executable).with_name("dsocr")
    args = [str(dsocr), "capture", *map(str, pages), "--out", str(out), *TOKENS, *extra]
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> dict[str, object]:
    """A sampled run of two pages, and a --profile off run of byte-identical copies stored elsewhere."""
    root = tmp_path_factory.mktemp("clock")
    pages = sample_pages[:2]
    copies = []
    for page in pages:
        copy = root / "elsewhere" / f"copy-of-{page.name}"
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(page, copy)
        copies.append(copy)
    summary = _capture(root / "sampled", pages, *SAMPLED)
    _capture(root / "off", copies, "--profile", "off")
    _capture(root / "full", pages, "--profile", "full")
    for run in ("sampled", "off", "full"):
        assert invoke("analyze", root / run).exit_code == 0
    assert invoke("emit", root / "sampled", "--jobs", "1").exit_code == 0
    return {"sampled": root / "sampled", "off": root / "off", "full": root / "full", "pages": pages, "summary": summary}


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / rundir.ANALYSIS_DIR / "summary.json").read_text(encoding="utf-8"))


def test_sampled_decode_is_the_clock_in_analyze_emit_and_report(runs: dict) -> None:
    from dsocr.report.inputs import load_run
    from dsocr.report.stages_fig import stage_figure

    run_dir = runs["sampled"]
    summary = _summary(run_dir)
    decode = summary["stages"]["decode"]
    # Untraced steps exist: a sum over traced steps would not be the stage.
    assert 0 < decode["trace"]["steps_traced"] < decode["trace"]["steps_total"]
    rows = {row["image_index"]: row for row in rundir.read_predictions(run_dir).to_pylist()}
    images = {row["image_index"]: row for row in summary["images"]}
    bars = {bar.name: bar for bar in stage_figure(load_run(run_dir)).data}
    plotted = dict(zip((int(label.split()[-1]) for label in bars["decode"].x), bars["decode"].y, strict=True))
    timings = pq.read_table(run_dir / rundir.ANALYSIS_DIR / "timings.parquet").to_pylist()
    traced = {row["image_index"]: row for row in timings if row["stage"] == "decode"}
    for index, page in enumerate(runs["pages"]):
        clock = rows[index]["decode_ms"]
        info = read_info(run_dir, page)
        for name, value in (
            ("analyze images[].decode_ms", images[index]["decode_ms"]),
            ("timings clock_ms", traced[index]["clock_ms"]),
            ("info.json timings_ms.decode", info["timings_ms"]["decode"]),
            ("report's plotted decode", plotted[index]),
        ):
            assert value == pytest.approx(clock, rel=SAME_VALUE), name
        # The traced sum is named for what it is, and is not the stage.
        assert traced[index]["steps_traced"] < traced[index]["steps_total"]
        assert traced[index]["cpu_ms_traced"] < clock
        assert info["trace_ms"]["decode"]["cpu_ms_traced"] == pytest.approx(traced[index]["cpu_ms_traced"])
        # The parts add up to the image.
        parts = sum(images[index][name] for name in ("vision_ms", "prefill_text_ms", "decode_ms", "other_ms"))
        assert parts == pytest.approx(images[index]["image_ms"]) and images[index]["other_ms"] >= 0
    assert summary["stages"]["decode"]["clock_ms"]["median"] == pytest.approx(
        median_across_images(row["decode_ms"] for row in rows.values())
    )
    assert sum(summary["stages"][part]["share"] for part in ("vision", "prefill_text", "decode", "other")) == (
        pytest.approx(1.0)
    )


def test_compare_pairs_a_sampled_and_an_off_run_of_the_same_pages_stored_elsewhere(runs: dict) -> None:
    from dsocr.analyze.compare import NOT_COMPARABLE, SAME, compare_runs, verdict

    comparison = compare_runs(runs["sampled"], runs["off"])
    images = len(runs["pages"])
    assert comparison["images"] == {"a": images, "b": images, "paired": images,
                                    "paired_by": {"content": images, "path": 0}}  # fmt: skip
    assert len(comparison["per_image"]) == images
    decode = comparison["clock"]["decode_ms"]
    assert decode["a"] is not None and decode["b"] is not None and decode["noise"] >= 0.02
    # One noise model decides: the verdict is "same within noise" exactly when the change is inside it.
    inside = abs(math.log1p(decode["rel_delta"])) <= math.log1p(decode["noise"])
    assert (decode["verdict"] == SAME) == inside
    pairs = [(row["decode_ms"]["a"], row["decode_ms"]["b"]) for row in comparison["per_image"]]
    again = verdict([a for a, _ in pairs], [b for _, b in pairs], lower_is_faster=True, paired=pairs)
    assert again["verdict"] == decode["verdict"] and again["rel_delta"] == pytest.approx(decode["rel_delta"])
    # The off run has no trace: trace figures are not comparable, never a change of -100%.
    for entry in comparison["trace"].values():
        assert {figure["verdict"] for figure in entry["figures"].values()} == {NOT_COMPARABLE}
    assert comparison["top"] == [] and "B has no trace" in comparison["top_note"]


def test_an_off_run_against_its_copy_at_other_paths_is_the_same_within_noise(runs: dict, tmp_path: Path) -> None:
    """The same measurements at other paths: every page pairs by content, decode is "same within noise"."""
    from dsocr.analyze.compare import SAME, compare_runs

    moved = tmp_path / "moved"
    shutil.copytree(runs["off"], moved, ignore=shutil.ignore_patterns(rundir.ANALYSIS_DIR))
    comparison = compare_runs(runs["off"], moved)
    assert comparison["images"]["paired_by"] == {"content": len(runs["pages"]), "path": 0}
    for name in ("decode_ms", "ttft_ms", "image_ms", "tpot_p50_ms", "decode_tokens_per_s"):
        figure = comparison["clock"][name]
        assert figure["verdict"] == SAME and figure["rel_delta"] == pytest.approx(0.0, abs=1e-12), name


def test_findings_of_an_off_run_rank_against_the_clock(runs: dict) -> None:
    summary = _summary(runs["off"])
    run_ms = sum(row["image_ms"] for row in summary["images"])
    for finding in summary["findings"]:
        assert finding["evidence"]["share_of_run"] == pytest.approx(finding["time_at_stake_ms"] / run_ms)
        assert finding["evidence"]["share_of_run"] > 0
    assert summary["stages"]["decode"]["clock_ms"]["median"] is not None
    assert summary["stages"]["decode"]["trace"] is None


def test_every_shared_figure_has_one_value_under_one_name(runs: dict) -> None:
    """The capture summary, progress bar, analyze (terminal and JSON), report, compare and emit."""
    from dsocr.analyze.compare import compare_runs

    from dsocr.cli_capture_view import image_note

    run_dir = runs["sampled"]
    rows = [row for row in rundir.read_predictions(run_dir).to_pylist() if row["status"] == "ok"]
    summary = _summary(run_dir)
    per_image = {row["image_index"]: row for row in summary["images"]}
    run_figures = {
        "ttft_ms": median_across_images(row["prefill_ms"] for row in rows),
        "decode_ms": median_across_images(row["decode_ms"] for row in rows),
        "tpot_p50_ms": median_across_images(tpot_p50_ms(row["decode_step_ms"]) for row in rows),
        "decode_tokens_per_s": median_across_images(decode_tokens_per_s(row["decode_step_ms"]) for row in rows),
        "image_ms": median_across_images(row["image_ms"] for row in rows),
    }
    # analyze's JSON: latency medians and the stage table's clock medians.
    for name in ("ttft_ms", "tpot_p50_ms", "decode_tokens_per_s"):
        assert summary["latency"][name]["median"] == pytest.approx(run_figures[name]), name
    assert summary["stages"]["decode"]["clock_ms"]["median"] == pytest.approx(run_figures["decode_ms"])
    assert summary["stages"]["image"]["clock_ms"]["median"] == pytest.approx(run_figures["image_ms"])
    # The capture summary, as printed: the same names, the same values at its precision.
    printed = runs["summary"]
    for label, name, digits in (
        ("TTFT ms", "ttft_ms", 1),
        ("decode ms", "decode_ms", 1),
        ("TPOT p50 ms", "tpot_p50_ms", 2),
        ("decode tokens/s", "decode_tokens_per_s", 1),
        ("image ms", "image_ms", 1),
    ):
        match = re.search(rf"{re.escape(label)} \(median across images\)\s*│\s*([\d.]+)", printed)
        assert match and float(match.group(1)) == pytest.approx(run_figures[name], abs=10**-digits), label
    # The progress bar: each image's decode tokens/s, the image named.
    for row in rows:
        note = image_note(row)
        shown = float(re.search(r"decode tokens/s ([\d.]+)", note).group(1))
        assert note.startswith(f"img {row['image_index']}: ")
        assert shown == pytest.approx(per_image[row["image_index"]]["decode_tokens_per_s"], abs=0.05)
    # analyze's terminal: the latency table's medians under the same names.
    terminal = invoke("analyze", run_dir).output
    tpot = re.search(r"TPOT p50 ms\s+([\d,.]+)", terminal).group(1).replace(",", "")
    assert float(tpot) == pytest.approx(run_figures["tpot_p50_ms"], abs=0.005)
    # emit: info.json's whole-image timings per image.
    for index, page in enumerate(runs["pages"]):
        timings = read_info(run_dir, page)["timings_ms"]
        assert timings["decode"] == pytest.approx(per_image[index]["decode_ms"])
        assert timings["prefill"] == pytest.approx(per_image[index]["ttft_ms"])
    # compare: each run's side is the same median.
    comparison = compare_runs(run_dir, runs["off"])
    for name, value in run_figures.items():
        assert comparison["clock"][name]["a"] == pytest.approx(value), name
    # The report's glance table: TTFT's median, 3 decimals.
    assert invoke("report", run_dir).exit_code == 0
    html = (run_dir / rundir.ANALYSIS_DIR / "report.html").read_text(encoding="utf-8")
    assert f"<td>TTFT ms</td><td>{run_figures['ttft_ms']:,.3f}</td>" in html


def test_no_output_holds_an_enum_repr(runs: dict) -> None:
    from dsocr.analyze.compare import compare_runs
    from dsocr.analyze.report_compare import print_comparison

    outputs = [runs["summary"]]
    for run_dir in (runs["sampled"], runs["off"]):
        outputs += [invoke("analyze", run_dir).output, invoke("analyze", run_dir, "--json").output]
    comparison = compare_runs(runs["sampled"], runs["off"])
    buffer = io.StringIO()
    print_comparison(comparison, Console(file=buffer, width=120))
    outputs += [buffer.getvalue(), json.dumps(comparison), invoke("compare", runs["sampled"], runs["off"]).output]
    assert "config.profile: sampled -> off" in buffer.getvalue()
    assert invoke("compare", runs["sampled"], runs["off"], "--report").exit_code == 0
    outputs.append((runs["sampled"] / rundir.ANALYSIS_DIR / "compare-off.html").read_text(encoding="utf-8"))
    outputs += [path.read_text(encoding="utf-8") for path in (runs["sampled"] / rundir.VIZ_DIR).rglob("info.json")]
    for text in outputs:
        assert not ENUM_REPR.search(text), ENUM_REPR.search(text)


def test_the_roofline_decode_point_is_per_token_in_sampled_and_full_runs(runs: dict) -> None:
    """Sampled traces 6 of 13 steps, full all 13: per token, both place decode at the same point."""
    sampled, full = (_summary(runs[mode])["roofline"]["decode"] for mode in ("sampled", "full"))
    for name in ("flops", "bytes", "attention_flops"):
        assert sampled[name] == pytest.approx(full[name], rel=0.10), name
    steps = _summary(runs["sampled"])["roofline"]["decode_step"]
    assert sampled["bytes"] == pytest.approx(steps["bytes"]["median"], rel=0.10)  # a step's, not a sum
