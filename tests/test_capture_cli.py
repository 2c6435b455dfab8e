"""End to end: `dsocr capture` on the embedded tiny DeepSeek-OCR-2, real profiler, real Parquet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from capture_helpers import FAST_MODEL_PATH, run_capture
from dsocr.capture.models import EMBEDDED_CONFIG
from PIL import Image
from trace_helpers import assert_steps_match_clock, read_trace

from dsocr import schema
from dsocr.errors import RunDirError
from dsocr.families import DEEPSEEK_OCR2
from dsocr.records import ImageCounts
from dsocr.rundir import (
    PREDICTIONS_FILE,
    path_md5,
    read_checked,
    read_predictions,
    read_run_json,
    trace_files,
)

EMBEDDED_CONTEXT = json.loads(EMBEDDED_CONFIG.read_text())["text_config"]["max_position_embeddings"]
CAP_REASONS = {"model_limit", "eos"}


@pytest.fixture(scope="module")
def inf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample pages with --max-new-tokens inf in the default (sampled) profile mode."""
    run_dir = tmp_path_factory.mktemp("inf") / "run"
    result = run_capture("--out", run_dir, "--max-new-tokens", "INF")
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def eight_run(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    """Two pages, 8 new tokens, every step traced."""
    run_dir = tmp_path_factory.mktemp("eight") / "run"
    result = run_capture(*sample_pages[:2], "--out", run_dir, "--max-new-tokens", "8", "--profile", "full")
    assert result.exit_code == 0, result.output
    return run_dir


def _ranges(run_dir: Path, image_index: int) -> list[dict]:
    trace = read_trace(run_dir, columns=["image_index", "cat", "name", "ts_ns", "dur_ns", "range_stage", "range_step"])
    mask = pc.and_(pc.equal(trace["image_index"], image_index), pc.is_valid(trace["range_stage"]))
    return trace.filter(mask).to_pylist()


@pytest.mark.slow  # inf_run: three pages until EOS or the context (about 2 min on 2 cores)
def test_inf_run_writes_documented_artifacts(inf_run: Path) -> None:
    record = read_run_json(inf_run)
    assert record.status == "complete"
    assert record.config is not None and record.config.max_new_tokens is None
    assert record.model.context_limit == EMBEDDED_CONTEXT
    assert record.model.family == "deepseek_ocr2"
    assert record.model.architecture is not None
    assert record.model.architecture["text_config"]["max_position_embeddings"] == EMBEDDED_CONTEXT
    assert isinstance(record.model.device_name, str) and record.model.device_name
    # No --prompt: the family's default, recorded as run (and so a resume matches older runs).
    assert record.config.prompt == DEEPSEEK_OCR2.default_prompt
    assert set(read_predictions(inf_run).column("prompt").to_pylist()) == {DEEPSEEK_OCR2.default_prompt}
    assert record.images == ImageCounts(total=3, ok=3, failed=0)
    table = read_checked(inf_run / PREDICTIONS_FILE, "predictions")
    assert table.schema.equals(schema.PREDICTIONS, check_metadata=False)
    assert not (inf_run / "predictions.parts").exists()
    for path in trace_files(inf_run):
        schema.check_table(pq.read_schema(path), "trace", source=str(path))


@pytest.mark.slow  # inf_run: three pages until EOS or the context (about 2 min on 2 cores)
def test_inf_stops_at_model_limit_or_eos_and_never_past_the_cap(inf_run: Path) -> None:
    for row in read_predictions(inf_run).to_pylist():
        assert row["status"] == "ok"
        assert row["max_new_tokens_requested"] is None
        assert row["max_new_tokens_resolved"] == EMBEDDED_CONTEXT - row["prompt_tokens"]
        assert 1 <= row["generated_tokens"] <= row["max_new_tokens_resolved"]
        assert row["stop_reason"] in CAP_REASONS
        if row["stop_reason"] == "model_limit":
            assert row["generated_tokens"] == row["max_new_tokens_resolved"]
        assert len(row["decode_step_ms"]) == row["generated_tokens"] - 1
        assert row["decode_ms"] == pytest.approx(sum(row["decode_step_ms"]))
        assert row["image_md5"] == path_md5(row["image_path"])
        assert row["image_tokens"] > 0 and row["prompt_tokens"] > row["image_tokens"]


@pytest.mark.slow  # inf_run: three pages until EOS or the context (about 2 min on 2 cores)
def test_sampled_trace_has_every_stage_for_every_image(inf_run: Path) -> None:
    predictions = read_predictions(inf_run).to_pylist()
    for row in predictions:
        ranges = _ranges(inf_run, row["image_index"])
        stages = {event["range_stage"] for event in ranges}
        assert {"vision", "prefill", "decode_step"} <= stages
        steps = {event["range_step"] for event in ranges if event["range_stage"] == "decode_step"}
        assert steps <= set(range(1, row["generated_tokens"]))
        assert {1, 2, 3} <= steps  # the first steps are always traced
        # The outer decode range would outlive the profiler's cycles: it is not in the trace.
        assert "decode" not in stages


def test_integer_cap_stops_at_that_count(eight_run: Path) -> None:
    for row in read_predictions(eight_run).to_pylist():
        assert row["max_new_tokens_requested"] == row["max_new_tokens_resolved"] == 8
        if row["stop_reason"] == "max_new_tokens":
            assert row["generated_tokens"] == 8
        else:
            assert row["stop_reason"] == "eos" and row["generated_tokens"] < 8


def test_full_trace_agrees_with_the_reference_clock(eight_run: Path) -> None:
    tolerance_ms = 1.0
    for row in read_predictions(eight_run).to_pylist():
        ranges = {event["name"]: event for event in _ranges(eight_run, row["image_index"])}
        assert {"dsocr.vision", "dsocr.prefill", "dsocr.decode"} <= ranges.keys()
        steps = row["generated_tokens"] - 1
        assert {f"dsocr.decode_step#{k}" for k in range(1, steps + 1)} <= ranges.keys()
        prefill_ms = ranges["dsocr.prefill"]["dur_ns"] / 1e6
        assert prefill_ms == pytest.approx(row["prefill_ms"], rel=0.02, abs=tolerance_ms)
        assert ranges["dsocr.vision"]["dur_ns"] / 1e6 == pytest.approx(row["vision_ms"], rel=0.02, abs=tolerance_ms)
        step_ms = [ranges[f"dsocr.decode_step#{k}"]["dur_ns"] / 1e6 for k in range(1, steps + 1)]
        assert_steps_match_clock(step_ms, row["decode_step_ms"], context=row["image_index"])
        vision, prefill = ranges["dsocr.vision"], ranges["dsocr.prefill"]
        assert prefill["ts_ns"] <= vision["ts_ns"]
        assert vision["ts_ns"] + vision["dur_ns"] <= prefill["ts_ns"] + prefill["dur_ns"]


def test_profile_off_writes_no_trace(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = tmp_path / "run"
    result = run_capture(sample_pages[0], "--out", run_dir, "--max-new-tokens", "3", "--profile", "off")
    assert result.exit_code == 0, result.output
    row = read_predictions(run_dir).to_pylist()[0]
    assert row["trace_events"] is None and row["generated_tokens"] <= 3
    assert len(row["decode_step_ms"]) == row["generated_tokens"] - 1
    assert trace_files(run_dir) == []


def test_bad_images_become_failed_rows_and_the_run_goes_on(
    tmp_path: Path, sample_pages: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    missing = tmp_path / "missing.jpg"
    huge = tmp_path / "huge.png"
    Image.new("L", (1500, 1500), 255).save(huge)
    listing = tmp_path / "images.txt"
    listing.write_text(f"# pages\n{sample_pages[0]}\ncorrupt.png\n{missing}\nhuge.png\n")
    # A tiny pixel limit stands in for a decompression-bomb-sized image.
    monkeypatch.setattr("dsocr.capture.images.MAX_IMAGE_PIXELS", 2_200_000)
    run_dir = tmp_path / "run"
    result = run_capture(listing, "--out", run_dir, "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    rows = {Path(row["image_path"]).name: row for row in read_predictions(run_dir).to_pylist()}
    assert rows[sample_pages[0].name]["status"] == "ok"
    assert rows["corrupt.png"]["error"].endswith("not an image Pillow can read")
    assert rows["missing.jpg"]["error"].endswith("no such file")
    assert "1500x1500 is 2 MP, over the 2 MP limit" in rows["huge.png"]["error"]
    for name in ("corrupt.png", "missing.jpg", "huge.png"):
        assert rows[name]["status"] == "failed" and rows[name]["stop_reason"] == "error"
    assert read_run_json(run_dir).images == ImageCounts(total=4, ok=1, failed=3)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--max-new-tokens", "lots"], "Error: --max-new-tokens must be an integer >= 1 or 'inf', got 'lots'"),
        (["--max-new-tokens", "0"], "Error: --max-new-tokens must be an integer >= 1 or 'inf', got 0"),
        (["--prompt", "Free OCR."], "Error: --prompt must contain the <image> placeholder, got 'Free OCR.'"),
        (["--window-every", "2", "--window-steps", "4"], "Error: --window-every (2) must be larger than"),
    ],
)
def test_bad_options_give_one_error_line(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = run_capture("--out", tmp_path / "run", *arguments)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.output


def test_bad_model_folders_give_one_error_line(tmp_path: Path, sample_pages: list[Path]) -> None:
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    v1 = tmp_path / "DeepSeek-OCR"
    v1.mkdir()
    (v1 / "config.json").write_text('{"model_type": "deepseek_vl_v2"}')
    architecture = tmp_path / "bert.json"
    architecture.write_text('{"model_type": "bert"}')
    unknown = "model_type 'bert' is not a registered model family (registered: deepseek_ocr2)"
    cases = {
        tmp_path / "nowhere": f"--model {tmp_path / 'nowhere'}: no such folder",
        other: f"--model {other}: {unknown}",
        architecture: f"{architecture}: {unknown}",
        v1: f"--model {v1}: DeepSeek-OCR v1 (deepseek_vl_v2) needs its remote code; "
        "this version profiles DeepSeek-OCR-2 (native in transformers)",
    }
    for folder, message in cases.items():
        result = run_capture(sample_pages[0], "--out", tmp_path / "run", "--model", folder)
        assert result.exit_code == 1
        assert result.output.strip() == f"Error: {message}"
        assert not (tmp_path / "run").exists()


def test_out_holding_a_run_needs_resume_and_the_same_settings(eight_run: Path, sample_pages: list[Path]) -> None:
    before = (read_predictions(eight_run), (eight_run / "run.json").read_bytes(), sorted(trace_files(eight_run)))
    again = run_capture(*sample_pages[:2], "--out", eight_run, "--max-new-tokens", "8", "--profile", "full")
    assert again.exit_code == 1
    assert "already holds a run: pass --resume" in again.output
    # Options not given take the run's values under --resume; given ones must match.
    different = run_capture(
        *sample_pages[:2], "--out", eight_run, "--max-new-tokens", "9", "--profile", "sampled", "--resume"
    )
    assert different.exit_code == 1
    assert "holds a different run (differs in max_new_tokens, profile)" in different.output
    # The refused commands changed nothing.
    predictions, record, traces = before
    assert read_predictions(eight_run).equals(predictions)
    assert (eight_run / "run.json").read_bytes() == record and sorted(trace_files(eight_run)) == traces


def test_the_gpus_preflight_resumes_a_run_of_the_familys_default_prompt(
    eight_run: Path, sample_pages: list[Path]
) -> None:
    """--gpus checks --resume in the parent: without --prompt it must compare the prompt that ran."""
    from dsocr.capture.config import CaptureConfig, ProfileMode
    from dsocr.capture.preflight import preflight

    images = tuple(map(str, sample_pages[:2]))
    preflight(CaptureConfig(images=images, out=eight_run, max_new_tokens=8, profile=ProfileMode.full, resume=True,
                          model=FAST_MODEL_PATH))  # fmt: skip
    other = CaptureConfig(images=images, out=eight_run, max_new_tokens=8, profile=ProfileMode.full, resume=True,
                          prompt="<image>\nFree OCR.", model=FAST_MODEL_PATH)  # fmt: skip
    with pytest.raises(RunDirError, match=r"differs in prompt\)"):
        preflight(other)


@pytest.mark.slow  # two captures of three pages
def test_resume_finishes_an_interrupted_run(
    tmp_path: Path, sample_pages: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dsocr.capture.runner as capture_runner

    real_profile_image = capture_runner.profile_image

    def interrupted_at_second_image(**kwargs):
        if kwargs["image_index"] == 1:
            raise KeyboardInterrupt
        return real_profile_image(**kwargs)

    monkeypatch.setattr(capture_runner, "profile_image", interrupted_at_second_image)
    run_dir = tmp_path / "run"
    arguments = [*sample_pages, "--out", run_dir, "--max-new-tokens", "4", "--profile", "full"]
    first = run_capture(*arguments)
    assert first.exit_code == 1
    assert first.output.strip().splitlines()[-1] == (
        f"Error: interrupted; finished images are kept, continue with --resume --out {run_dir}"
    )
    assert read_run_json(run_dir).status == "interrupted"
    kept = read_predictions(run_dir).to_pylist()
    assert [row["image_index"] for row in kept] == [0]
    # A trace file left by the interrupted image must not survive into the finished run.
    stray = run_dir / "trace" / "rank=0" / "image0000001-chunk0007.parquet"
    stray.write_bytes(b"partial")

    monkeypatch.setattr(capture_runner, "profile_image", real_profile_image)
    second = run_capture(*arguments, "--resume")
    assert second.exit_code == 0, second.output
    rows = read_predictions(run_dir).to_pylist()
    assert [row["image_index"] for row in rows] == [0, 1, 2]
    assert rows[0]["started_unix_ns"] == kept[0]["started_unix_ns"]  # image 0 was not run again
    assert not stray.exists()
    record = read_run_json(run_dir)
    assert record.status == "complete" and len(record.resumed_at) == 1
    trace = read_trace(run_dir, columns=["image_index"])
    assert set(trace.column("image_index").to_pylist()) == {0, 1, 2}


@pytest.mark.slow  # generates up to the whole context
def test_integer_above_the_context_is_capped_with_a_recorded_warning(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = tmp_path / "run"
    result = run_capture(sample_pages[1], "--out", run_dir, "--max-new-tokens", "5000", "--profile", "off")
    assert result.exit_code == 0, result.output
    row = read_predictions(run_dir).to_pylist()[0]
    room = EMBEDDED_CONTEXT - row["prompt_tokens"]
    assert row["max_new_tokens_requested"] == 5000 and row["max_new_tokens_resolved"] == room
    assert row["stop_reason"] in CAP_REASONS and row["generated_tokens"] <= room
    warnings = read_run_json(run_dir).warnings
    assert warnings == (
        f"--max-new-tokens 5000 exceeds the model's remaining context (text_config.max_position_embeddings "
        f"{EMBEDDED_CONTEXT} - prompt {row['prompt_tokens']} = {room}); capped at {room}",
    )
    assert f"capped at {room}" in (run_dir / "capture.log").read_text()


def test_capture_without_torch_says_how_to_install(tmp_path: Path) -> None:
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'transformers', 'nvtx'}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['dsocr', 'capture', '--out', sys.argv[1]]\n"
        "from dsocr.cli import main\n"
        "main()\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", blocker, str(tmp_path / "run")], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 1
    assert completed.stderr.strip() == (
        "Error: dsocr capture needs torch, transformers and nvtx: "
        "pip install -e '.[capture]' (with torch==2.13.0) (torch is missing)"
    )


@pytest.mark.slow  # saves, reloads and runs the model twice
def test_a_local_checkpoint_folder_loads_through_transformers(tmp_path: Path, sample_pages: list[Path]) -> None:
    """save_pretrained of the embedded model is a real DeepSeek-OCR-2 folder: from_pretrained + AutoProcessor."""
    import torch
    from dsocr.capture.models import load_random_weights

    embedded = load_random_weights(EMBEDDED_CONFIG, device="cpu", dtype=torch.float32, seed=0)
    folder = tmp_path / "DeepSeek-OCR-2-tiny"
    embedded.model.save_pretrained(folder)
    embedded.processor.save_pretrained(folder)
    runs = {}
    for name, model_arguments in (("checkpoint", ["--model", str(folder)]), ("embedded", [])):
        run_dir = tmp_path / name
        result = run_capture(
            sample_pages[2], "--out", run_dir, "--max-new-tokens", "6", "--profile", "off", *model_arguments
        )
        assert result.exit_code == 0, result.output
        runs[name] = read_predictions(run_dir).to_pylist()[0]
    assert read_run_json(tmp_path / "checkpoint").model.source == "checkpoint"
    assert read_run_json(tmp_path / "checkpoint").model.id == str(folder.resolve())
    for column in ("text_raw", "prompt_tokens", "image_tokens", "generated_tokens"):
        assert runs["checkpoint"][column] == runs["embedded"][column]
