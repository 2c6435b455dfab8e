"""A model forced into a repetition loop: capture detects it, analyze reports it, the guard stops it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from capture_helpers import FAST_MODEL_PATH, run_capture
from dsocr.capture.config import CaptureConfig, ProfileMode
from dsocr.capture.models import load_model
from dsocr.capture.ngram import NoRepeatNGram
from dsocr.capture.result import CaptureResult
from dsocr.capture.runner import run
from emit_helpers import run_cli
from forced_tokens import ForcedTokens

from dsocr.rundir import read_predictions, read_run_json

#: Free tokens (distinct ids) before the loop, then a unit of LOOP_PERIOD tokens repeated to the cap.
PREFIX = [40, 41, 42, 43, 44, 45, 46]
UNIT = [50, 51, 52]
MAX_NEW_TOKENS = 60


class ForcedLoop(ForcedTokens):
    """Test only: pushes greedy decoding to write PREFIX, then UNIT over and over."""

    def token_at(self, step: int) -> int:
        return PREFIX[step] if step < len(PREFIX) else UNIT[(step - len(PREFIX)) % len(UNIT)]


def _result(run_dir: Path, row: dict) -> CaptureResult:
    return CaptureResult(run_dir=run_dir, model_id="m", device="cpu", is_leader=True, rows=(row,), capture_seconds=1.0)


def _capture(run_dir: Path, sample: Path, **options: object) -> Path:
    config = CaptureConfig(
        images=(str(sample),),
        out=run_dir,
        max_new_tokens=MAX_NEW_TOKENS,
        profile=ProfileMode.sampled,
        extra_logits_processors=(ForcedLoop(),),
        model=FAST_MODEL_PATH,
        **options,  # type: ignore[arg-type]
    )
    result = run(config, loaded=load_model(config))
    assert result.run_dir == run_dir
    return run_dir


@pytest.fixture(scope="module")
def looped(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    return _capture(tmp_path_factory.mktemp("loop") / "run", sample_pages[0])


def test_a_forced_loop_is_found_with_its_start_step_period_and_time(looped: Path) -> None:
    row = read_predictions(looped).to_pylist()[0]
    assert row["generated_tokens"] == MAX_NEW_TOKENS and row["stop_reason"] == "max_new_tokens"
    assert row["loop_start_step"] == len(PREFIX)
    assert row["loop_period_tokens"] == len(UNIT)
    # Decode steps len(PREFIX)..end produced the loop's tokens: step K is decode_step_ms[K - 1].
    assert row["loop_ms"] == pytest.approx(sum(row["decode_step_ms"][len(PREFIX) - 1 :]))
    assert 0 < row["loop_ms"] < row["decode_ms"]
    # The capture's own summary says it too.
    from dsocr.capture.result import capture_figures
    from rich.console import Console

    from dsocr.cli_capture_view import summary_table

    figures = capture_figures([row])
    assert (figures.loop_images, figures.loop_tokens) == (1, MAX_NEW_TOKENS - len(PREFIX))
    assert figures.loop_ms == pytest.approx(row["loop_ms"])
    console = Console(width=200, record=True)
    console.print(summary_table(_result(looped, row)))
    (line,) = [line for line in console.export_text().splitlines() if "repetition loops" in line]
    assert f"│ 1 image(s): {MAX_NEW_TOKENS - len(PREFIX)} tokens, " in line and "--no-repeat-ngram 30" in line


def test_analyze_reports_the_loop_and_emit_carries_it(looped: Path) -> None:
    analyzed = run_cli("analyze", looped)
    assert analyzed.exit_code == 0, analyzed.output
    summary = json.loads((looped / "analysis" / "summary.json").read_text())
    (finding,) = [finding for finding in summary["findings"] if finding["id"] == "repetition_loop"]
    row = read_predictions(looped).to_pylist()[0]
    assert finding["time_at_stake_ms"] == pytest.approx(row["loop_ms"])
    assert finding["evidence"]["loop_tokens"] == MAX_NEW_TOKENS - len(PREFIX)
    assert [image["image_index"] for image in finding["evidence"]["images"]] == [0]
    assert "--no-repeat-ngram 30" in finding["message"]
    emitted = run_cli("emit", looped)
    assert emitted.exit_code == 0, emitted.output
    info = json.loads((looped / "viz" / row["image_md5"] / "info.json").read_text())
    assert info["loop"] == {
        "start_step": len(PREFIX),
        "period_tokens": len(UNIT),
        "tokens": MAX_NEW_TOKENS - len(PREFIX),
        "decode_ms": pytest.approx(row["loop_ms"]),
    }


def test_no_repeat_ngram_stops_the_loop_and_is_recorded(tmp_path: Path, sample_pages: list[Path]) -> None:
    guarded = _capture(tmp_path / "run", sample_pages[0], no_repeat_ngram=4, ngram_window=MAX_NEW_TOKENS)
    row = read_predictions(guarded).to_pylist()[0]
    assert row["status"] == "ok", row["error"]
    assert row["loop_start_step"] is None and row["loop_ms"] is None
    record = read_run_json(guarded)
    assert record.config is not None
    assert (record.config.no_repeat_ngram, record.config.ngram_window) == (4, MAX_NEW_TOKENS)
    assert record.config.ngram_allow == ("<td>", "</td>")
    # The embedded tokenizer has no <td> token: said once, not per image.
    assert any("--ngram-allow <td>" in warning for warning in record.warnings)
    # The guard's own host time: inside the decode steps (so below their sum), and per step in run.json.
    assert 0 < row["ngram_guard_ms"] < row["decode_ms"]
    assert record.ngram_guard_us_per_step == pytest.approx(row["ngram_guard_ms"] * 1000 / len(row["decode_step_ms"]))


def test_the_guard_times_its_own_calls() -> None:
    guard = NoRepeatNGram(ngram_size=3, window_size=8, allowed_ids=[], prompt_length=0)
    assert guard.host_ns == 0
    guard(torch.tensor([[5, 6, 7, 5, 6]]), torch.zeros(1, 12))
    first = guard.host_ns
    guard(torch.tensor([[5, 6, 7, 5, 6]]), torch.zeros(1, 12))
    assert 0 < first < guard.host_ns


def test_the_guard_bans_what_the_vendor_bans() -> None:
    guard = NoRepeatNGram(ngram_size=3, window_size=8, allowed_ids=[9], prompt_length=2)
    # Generated: 5 6 7 5 6 -> the 3-gram "5 6 7" would repeat: 7 is banned.
    assert guard.banned([5, 6, 7, 5, 6]) == {7}
    # An allowed token is never banned.
    assert guard.banned([5, 6, 9, 5, 6]) == set()
    # Outside the window (8 tokens) an n-gram no longer counts.
    assert guard.banned([5, 6, 7, 1, 2, 3, 4, 8, 10, 5, 6]) == set()
    input_ids = torch.tensor([[5, 6, 5, 6, 7, 5, 6]])  # the prompt (5 6) is not searched
    out = guard(input_ids, torch.zeros(1, 12))
    assert out[0, 7] == -float("inf") and torch.isfinite(out[0, :7]).all() and torch.isfinite(out[0, 8:]).all()
    scores = torch.arange(12, dtype=torch.float32).unsqueeze(0)
    assert torch.equal(guard(torch.tensor([[5, 6, 1, 2]]), scores.clone()), scores)  # nothing to ban


@pytest.mark.parametrize("seed", range(5))
def test_the_tensor_guard_equals_the_vendors_loop_on_random_outputs(seed: int) -> None:
    """The guard's tensor rule bans, row by row, exactly what the vendor's Python loop bans."""
    rng = random.Random(seed)
    vocab, prompt = 12, 5
    guard = NoRepeatNGram(ngram_size=rng.choice([2, 3, 4]), window_size=rng.choice([6, 10, 30]),
                          allowed_ids=[3, 99], prompt_length=prompt)  # fmt: skip
    for length in range(prompt, prompt + 40):
        # Few distinct tokens and a loop in one row: n-grams repeat often.
        rows = [[rng.randrange(vocab) for _ in range(length)], [(i % 3) + 4 for i in range(length)]]
        out = guard(torch.tensor(rows), torch.zeros(2, vocab))
        for row, tokens in enumerate(rows):
            banned = {token for token in range(vocab) if out[row, token] == -float("inf")}
            assert banned == guard.banned(tokens[prompt:]), (length, row)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--no-repeat-ngram", "1"], "--no-repeat-ngram must be between 2 and"),
        (["--no-repeat-ngram", "30", "--ngram-window", "20"], "--ngram-window must be between 30 and"),
    ],
)
def test_a_guard_that_cannot_work_is_refused_in_one_line(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = run_capture("--out", tmp_path / "run", *arguments)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"Error: {message}") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
