"""Fidelity on CPU: cold-step flags, one set of whole-image numbers from capture to info.json,
the attention options and their refusals. Real captures of the embedded model."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
from analyze_helpers import capture_run, invoke
from dsocr.analyze.cold import COLD_TPOT_FLAG_SHARE, cold_impact

from dsocr.rundir import path_md5, read_predictions, read_run_json

pytest.importorskip("torch", reason="dsocr capture needs the [capture] extra")

TOKENS = 6


@pytest.fixture(scope="module")
def repeated_pages(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> list[Path]:
    """One page three times under three names: the same prompt length, so the same decode lengths."""
    folder = tmp_path_factory.mktemp("repeated")
    copies = [folder / f"copy{index}.png" for index in range(3)]
    for copy in copies:
        shutil.copy(sample_pages[0], copy)
    return copies


@pytest.fixture(scope="module")
def sampled_repeat_run(tmp_path_factory: pytest.TempPathFactory, repeated_pages: list[Path]) -> Path:
    """Sampled mode with untraced steps: steps 1-2 and 4 of 5 traced."""
    out = tmp_path_factory.mktemp("fidelity") / "run"
    return capture_run(
        out, repeated_pages, "--max-new-tokens", str(TOKENS), "--profile", "sampled",
        "--first-steps", "2", "--window-every", "4", "--window-steps", "1",
    )  # fmt: skip


def _rows(run_dir: Path) -> list[dict]:
    return sorted(read_predictions(run_dir).to_pylist(), key=lambda row: row["image_index"])


def test_repeated_pages_are_cold_once_then_warm(sampled_repeat_run: Path) -> None:
    first, second, third = _rows(sampled_repeat_run)
    steps = TOKENS - 1
    prompt = first["prompt_tokens"]
    assert first["decode_step_seq_len"] == [prompt + step for step in range(1, steps + 1)]
    assert first["decode_step_cold"] == [True] * steps
    assert second["decode_step_cold"] == third["decode_step_cold"] == [False] * steps
    assert first["decode_step_traced"] == [True, True, False, True, False]


def test_warmup_tokens_warm_only_the_lengths_they_ran(tmp_path: Path, repeated_pages: list[Path]) -> None:
    run_dir = capture_run(
        tmp_path / "run", repeated_pages[:1], "--max-new-tokens", str(TOKENS), "--profile", "off",
        "--warmup-tokens", "3",
    )  # fmt: skip
    (row,) = _rows(run_dir)
    # The warm-up generated 3 tokens: decode steps 1 and 2 ran at prompt + 1 and prompt + 2.
    assert row["decode_step_cold"] == [False, False, True, True, True]


def test_analyze_reports_cold_figures_per_image(sampled_repeat_run: Path) -> None:
    result = invoke("analyze", sampled_repeat_run, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    images = {image["image_index"]: image for image in summary["images"]}
    rows = _rows(sampled_repeat_run)
    assert (images[0]["cold_steps"], images[0]["warm_steps"], images[0]["tpot_warm_p50_ms"]) == (5, 0, None)
    assert images[0]["tpot_cold_p50_ms"] == pytest.approx(statistics.median(rows[0]["decode_step_ms"]))
    assert (images[1]["cold_steps"], images[1]["warm_steps"], images[1]["tpot_cold_p50_ms"]) == (0, 5, None)
    assert images[1]["tpot_warm_p50_ms"] == pytest.approx(statistics.median(rows[1]["decode_step_ms"]))
    warm = [ms for row in rows[1:] for ms in row["decode_step_ms"]]
    assert summary["cold"]["cold_steps"] == 5 and summary["cold"]["warm_steps"] == 10
    # Image 0's cold steps times their median's excess over the run's warm median (none if faster).
    excess_per_step = statistics.median(rows[0]["decode_step_ms"]) - statistics.median(warm)
    assert summary["cold"]["cold_added_ms"] == pytest.approx(5 * max(excess_per_step, 0.0))


def test_images_figures_cover_every_step_while_the_trace_holds_some(sampled_repeat_run: Path) -> None:
    result = invoke("analyze", sampled_repeat_run, "--json")
    summary = json.loads(result.output)
    for image, row in zip(summary["images"], _rows(sampled_repeat_run), strict=True):
        assert image["source"] == "reference"
        assert image["ttft_ms"] == pytest.approx(row["prefill_ms"])
        assert image["tpot_mean_ms"] == pytest.approx(row["decode_ms"] / (TOKENS - 1))
        assert (image["steps_traced"], image["steps_total"]) == (3, TOKENS - 1)


def test_emit_after_analyze_keeps_whole_image_timings(sampled_repeat_run: Path) -> None:
    assert invoke("analyze", sampled_repeat_run).exit_code == 0
    result = invoke("emit", sampled_repeat_run, "--force")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (sampled_repeat_run / "predictions.jsonl").read_text().splitlines()]
    for record, row in zip(records, _rows(sampled_repeat_run), strict=True):
        info = json.loads((sampled_repeat_run / "viz" / path_md5(Path(row["image_path"])) / "info.json").read_text())
        expected = {"vision": row["vision_ms"], "prefill": row["prefill_ms"], "decode": row["decode_ms"]}
        assert info["timings_ms"] == pytest.approx(expected)
        assert record["timings_ms"] == info["timings_ms"]
        decode = info["trace_ms"]["decode"]
        assert (decode["steps_traced"], decode["steps_total"]) == (3, TOKENS - 1)
        # The trace's decode covers 3 of 5 steps: it must not be the image's decode.
        assert decode["cpu_ms_traced"] < row["decode_ms"]


def test_sdpa_backend_and_attention_are_recorded(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = capture_run(
        tmp_path / "run", sample_pages[:1], "--max-new-tokens", "2", "--profile", "off",
        "--sdpa-backend", "math", "--attn-implementation", "eager",
    )  # fmt: skip
    run = read_run_json(run_dir)
    assert run.config is not None
    assert run.config.sdpa_backend == "math"
    assert run.config.attn_implementation == "eager"
    assert run.model.attn_implementation == "eager"
    assert run.profiler_env is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sdpa-backend", "cudnn"], "Error: --sdpa-backend cudnn: torch has no such kernel for cpu, float32"),
        (["--sdpa-backend", "efficient"], "Error: --sdpa-backend efficient: torch has no such kernel for cpu"),
        (["--attn-implementation", "no-such"], "Error: --attn-implementation no-such: Specified"),
        (["--sdpa-backend", "sideways"], "Invalid value for '--sdpa-backend'"),
    ],
)
def test_attention_options_are_refused_with_one_line(
    tmp_path: Path, sample_pages: list[Path], options: list[str], message: str
) -> None:
    run_dir = tmp_path / "run"
    result = invoke("capture", sample_pages[0], "--out", run_dir, "--max-new-tokens", "2", *options)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (run_dir / "predictions.parquet").exists()


def test_resume_refuses_another_sdpa_backend(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = capture_run(tmp_path / "run", sample_pages[:1], "--max-new-tokens", "2", "--profile", "off")
    result = invoke(
        "capture", sample_pages[0], "--out", run_dir, "--max-new-tokens", "2", "--profile", "off",
        "--resume", "--sdpa-backend", "math",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "differs in sdpa_backend" in result.output


def test_full_mode_records_shapes_only_when_asked(tmp_path: Path, sample_pages: list[Path]) -> None:
    """--with-flops is opt-in: a plain full trace has no FLOP counts; the option fills them."""
    import pyarrow.compute as pc
    from trace_helpers import read_trace

    counts = {}
    for name, extra in (("plain", []), ("flops", ["--with-flops"])):
        run_dir = capture_run(
            tmp_path / name, sample_pages[:1], "--max-new-tokens", "2", "--profile", "full", *extra
        )  # fmt: skip
        run = read_run_json(run_dir)
        assert run.config is not None and run.config.with_flops is bool(extra)
        trace = read_trace(run_dir, columns=["flops"])
        counts[name] = pc.sum(pc.is_valid(trace["flops"]).cast("int64")).as_py()
    assert counts["plain"] == 0 < counts["flops"]


def test_with_flops_needs_a_trace(tmp_path: Path, sample_pages: list[Path]) -> None:
    result = invoke("capture", sample_pages[0], "--out", tmp_path / "run", "--profile", "off", "--with-flops")
    assert result.exit_code == 1
    assert "Error: --with-flops needs a trace" in result.output
    assert "Traceback" not in result.output


def _row(cold: list[bool], steps: list[float], index: int = 0) -> dict:
    return {"image_index": index, "rank": 0, "decode_step_ms": steps, "decode_step_cold": cold}


def test_cold_impact_flags_images_whose_tpot_cold_steps_raise_past_the_share() -> None:
    warm_image = _row([False] * 4, [10.0, 10.0, 10.0, 10.0], index=1)
    slow_cold = _row([True, True, False, False], [40.0, 40.0, 10.0, 10.0], index=0)
    barely = _row([True, False, False, False], [10.5, 10.0, 10.0, 10.0], index=2)
    impact = cold_impact([slow_cold, warm_image, barely], top_operators=[{"name": "x"}])
    assert impact is not None
    assert impact.warm_step_p50_ms == 10.0
    assert impact.cold_added_ms == pytest.approx(30 + 30 + 0.5)
    assert [image["image_index"] for image in impact.flagged_images] == [0]
    flagged = impact.flagged_images[0]
    assert flagged["tpot_ms"] == 25.0 and flagged["tpot_if_warm_ms"] == 10.0
    assert flagged["tpot_ms"] / flagged["tpot_if_warm_ms"] - 1 > COLD_TPOT_FLAG_SHARE
    assert impact.top_operators == [{"name": "x"}]
    assert cold_impact([{"image_index": 0, "decode_step_ms": [1.0], "decode_step_cold": None}], []) is None


def test_a_few_slow_steps_among_cold_ones_are_not_charged_to_cold_shapes() -> None:
    """Steps slowed by something else (a trace window converted beside decode) are not cold cost."""
    warm_image = _row([False] * 4, [10.0, 10.0, 10.0, 10.0], index=1)
    cold_with_spike = _row([True] * 4, [10.0, 10.0, 10.0, 300.0], index=0)
    impact = cold_impact([cold_with_spike, warm_image], top_operators=[{"name": "x"}])
    assert impact is not None
    assert impact.cold_added_ms == 0.0 and impact.flagged_images == [] and impact.top_operators == []
    # Cold steps slower as a whole are charged, each at the median's excess.
    slow_cold = _row([True] * 4, [30.0, 30.0, 31.0, 300.0], index=0)
    impact = cold_impact([slow_cold, warm_image], top_operators=[])
    assert impact is not None and impact.cold_added_ms == pytest.approx(4 * (30.5 - 10.0))
    assert impact.flagged_images[0]["tpot_if_warm_ms"] == pytest.approx((30 + 30 + 31 + 300) / 4 - 30.5 + 10.0)


def test_the_report_flags_cold_images_and_names_operators() -> None:
    from dsocr.analyze.report import cold_lines

    impact = cold_impact(
        [_row([True, True, False, False], [40.0, 40.0, 10.0, 10.0]), _row([False] * 2, [10.0, 10.0], index=1)],
        top_operators=[{"name": "aten::_cudnn_attention_forward", "cold_ms_per_step": 1.66, "warm_ms_per_step": 0.2}],
    )
    assert impact is not None
    # The report renders the typed summary; only its cold part is read here.
    lines = cold_lines(SimpleNamespace(cold=impact))
    assert lines[0] == (
        "WARNING cold steps: 2 decode steps ran at a length new to the process; they add 60.0 ms"
        " over the warm median step (10.00 ms; up to 60.0 ms counting each cold step's own excess)"
    )
    assert lines[1] == "  image 0 (rank 0): TPOT 25.00 ms, 10.00 ms had its 2 cold steps run warm (+150.00%)"
    assert lines[2] == "  CPU ms per step, cold vs warm traced steps: aten::_cudnn_attention_forward 1.660 vs 0.200"
    assert cold_lines(SimpleNamespace(cold=None)) == []
