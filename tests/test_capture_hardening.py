"""`dsocr capture` against a hostile-but-realistic user (issue 10, capture side).

Real tiny model, real images, real profiler, real Parquet; signals go to a real subprocess.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from capture_helpers import run_capture, with_fast_model
from dsocr.capture.models import EMBEDDED_CONFIG
from PIL import Image

from dsocr.records import ImageCounts
from dsocr.rundir import read_predictions, read_run_json, trace_files

#: How long a subprocess capture may take to reach a state the test waits for.
WAIT_SECONDS = 120
POLL_SECONDS = 0.1
#: How long the children of a killed capture may take to notice and exit.
ORPHAN_GRACE_SECONDS = 10
NOISE = ("Traceback", "KeyboardInterrupt", "BrokenProcessPool", "USDT")


def _extreme_pages(folder: Path) -> list[Path]:
    """2x20000 and 20000x2: DeepSeek-OCR-2's processor cannot resize them (it fails past ~2048:1)."""
    folder.mkdir(parents=True, exist_ok=True)
    tall, wide = folder / "tall.png", folder / "wide.png"
    Image.new("RGB", (2, 20000), "white").save(tall)
    Image.new("RGB", (20000, 2), "white").save(wide)
    return [tall, wide]


def _pages(folder: Path, sample_pages: list[Path], count: int) -> list[Path]:
    """``count`` distinct image files (copies of the sample pages), so each is its own image."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"page{index:02d}.png"
        shutil.copyfile(sample_pages[index % len(sample_pages)], path)
        paths.append(path)
    return paths


def _rows(run_dir: Path) -> dict[str, dict]:
    return {Path(row["image_path"]).name: row for row in read_predictions(run_dir).to_pylist()}


# ---- 1. any exception of one image is that image's failed row ----


def test_an_image_the_processor_cannot_resize_is_a_failed_row_and_resume_goes_on(
    tmp_path: Path, sample_pages: list[Path]
) -> None:
    tall, wide = _extreme_pages(tmp_path / "images")
    run_dir = tmp_path / "run"
    result = run_capture(tall, sample_pages[0], wide, "--out", run_dir, "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    rows = _rows(run_dir)
    assert rows[sample_pages[0].name]["status"] == "ok"
    for name in ("tall.png", "wide.png"):
        error = rows[name]["error"]
        assert rows[name]["status"] == "failed" and rows[name]["stop_reason"] == "error"
        assert error.startswith(f"{tmp_path / 'images' / name}: ") and "\n" not in error
        assert "aspect ratio too extreme" in error and "the limit is under 2048:1" in error
    record = read_run_json(run_dir)
    assert record.status == "complete" and record.images == ImageCounts(total=3, ok=1, failed=2)
    assert rows["tall.png"]["error"] in (run_dir / "capture.log").read_text()  # an expected failure: no traceback

    # --resume retries the failed images (documented) and finishes again instead of stopping on them.
    again = run_capture("--resume", "--out", run_dir)
    assert again.exit_code == 0, again.output
    record = read_run_json(run_dir)
    assert record.status == "complete" and record.images == ImageCounts(total=3, ok=1, failed=2)
    assert len(record.resumed_at) == 1


def test_a_static_cache_is_sized_past_an_image_the_processor_refuses(tmp_path: Path, sample_pages: list[Path]) -> None:
    """--cache static encodes every image beforehand to size its cache: a refused one is skipped there."""
    tall, _wide = _extreme_pages(tmp_path / "images")
    run_dir = tmp_path / "run"
    options = ["--max-new-tokens", "2", "--profile", "off", "--cache", "static", "--compile", "off"]
    result = run_capture(tall, sample_pages[0], "--out", run_dir, *options)
    assert result.exit_code == 0, result.output
    assert [row["status"] for row in read_predictions(run_dir).to_pylist()] == ["failed", "ok"]


def test_an_error_inside_generate_fails_the_row_and_leaves_no_trace_of_it(
    tmp_path: Path, sample_pages: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dsocr.capture.profile_image as profile_image_module

    real_generate = profile_image_module.generate_on
    calls = []

    def fails_after_generating_the_second_image(*args, **kwargs):
        output = real_generate(*args, **kwargs)  # the real profiler sessions ran and flushed
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("device lost\nsecond line of the message")
        return output

    monkeypatch.setattr(profile_image_module, "generate_on", fails_after_generating_the_second_image)
    run_dir = tmp_path / "run"
    arguments = ["--max-new-tokens", "6", "--profile", "full", "--full-chunk-steps", "2", "--keep-kineto"]
    result = run_capture(*sample_pages, "--out", run_dir, *arguments)
    assert result.exit_code == 0, result.output
    rows = read_predictions(run_dir).to_pylist()
    assert [row["status"] for row in rows] == ["ok", "failed", "ok"]
    assert rows[1]["error"] == f"{sample_pages[1]}: RuntimeError: device lost"
    traced = {int(path.name[len("image") :][:7]) for path in trace_files(run_dir)}
    assert traced == {0, 2}
    assert not (run_dir / "trace" / ".pending").exists()
    # The failed image's kept Kineto JSON goes with its Parquet (every chunk had been converted).
    kept = {int(path.name[len("rank0-image") :][:7]) for path in (run_dir / "trace" / "kineto").iterdir()}
    assert kept == {0, 2}


def test_no_image_succeeding_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    tall, wide = _extreme_pages(tmp_path / "images")
    run_dir = tmp_path / "run"
    # The warm-up runs on the first image: its failure skips the warm-up, with a recorded warning.
    result = run_capture(tall, wide, "--out", run_dir, "--max-new-tokens", "2", "--warmup-tokens", "2")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: no image succeeded (2 failed); each row's error is in {run_dir}/predictions.parquet and capture.log"
    )
    assert "Traceback" not in result.output
    record = read_run_json(run_dir)
    assert record.status == "complete" and record.images == ImageCounts(total=2, ok=0, failed=2)
    assert [warning for warning in record.warnings if "warm-up skipped: " in warning and "aspect ratio" in warning]


# ---- 2. stale temporaries ----


def test_stale_temporaries_of_a_killed_capture_are_removed_by_the_next_resume(
    tmp_path: Path, sample_pages: list[Path]
) -> None:
    run_dir = tmp_path / "run"
    first = run_capture(sample_pages[0], "--out", run_dir, "--max-new-tokens", "2", "--profile", "full")
    assert first.exit_code == 0, first.output
    # What a SIGKILL during writes leaves: temp files of atomic writes and unconverted chunks.
    stale = [
        run_dir / "predictions.parts" / ".rank000-image0000001.parquet.0123456789abcdef.tmp",
        run_dir / "trace" / ".pending" / "rank0-image0000001-chunk0000.json",
        run_dir / "trace" / "rank=0" / ".image0000001-chunk0000.parquet.0123456789abcdef.tmp",
        run_dir / ".run.json.0123456789abcdef.tmp",
        run_dir / "samples" / ".text-page.png.tmp.png",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half-written")
    kept = [  # analyze's and emit's, not capture's: they may be writing them now
        run_dir / "analysis" / ".summary.json.0123456789abcdef.tmp",
        run_dir / ".predictions.jsonl.0123456789abcdef.tmp",
    ]
    for path in kept:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not capture's")

    again = run_capture("--resume", "--out", run_dir)
    assert again.exit_code == 0, again.output
    assert [path for path in stale if path.exists()] == []
    assert not (run_dir / "predictions.parts").exists() and not (run_dir / "trace" / ".pending").exists()
    assert all(path.exists() for path in kept)
    log = (run_dir / "capture.log").read_text()
    assert all(f"removed {path}, left half-written" in log for path in stale)
    assert read_run_json(run_dir).images == ImageCounts(total=1, ok=1, failed=0)


# ---- 3. signals (a real subprocess in its own process group, as a terminal runs it) ----


def _start_capture(arguments: list[str], cwd: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "dsocr.cli", "capture", *with_fast_model(arguments)]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


def _parts(run_dir: Path) -> list[Path]:
    parts_dir = run_dir / "predictions.parts"
    return sorted(parts_dir.glob("*.parquet")) if parts_dir.is_dir() else []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            found += map(int, children)
            todo += map(int, children)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


SIGNAL_CASES = {
    "sigint-to-group": (signal.SIGINT, True, 1),
    "sigterm-to-process": (signal.SIGTERM, False, 1),
    # Ctrl-C hammered until the capture exits: the later ones must not land in Python's shutdown
    # as a traceback (KeyboardInterrupt in threading._shutdown, exit 130).
    "sigint-until-exit": (signal.SIGINT, True, None),
}
#: Between the quick Ctrl-C of a person hammering the key.
REPEAT_GAP_SECONDS = 0.02


@pytest.mark.slow  # a subprocess capture of six pages, stopped (then resumed, after SIGINT)
@pytest.mark.parametrize("case", list(SIGNAL_CASES))
def test_a_signal_marks_the_run_interrupted_keeps_every_finished_image_and_resume_finishes_it(
    tmp_path: Path, sample_pages: list[Path], case: str
) -> None:
    number, to_group, times = SIGNAL_CASES[case]
    pages = _pages(tmp_path / "pages", sample_pages, 6)
    run_dir = tmp_path / "run"
    process = _start_capture(
        [str(tmp_path / "pages"), "--out", "run", "--max-new-tokens", "12", "--profile", "full"], cwd=tmp_path
    )
    _wait_for(lambda: len(_parts(run_dir)) >= 2 or process.poll() is not None, "two finished images")
    assert process.poll() is None, process.communicate()
    if to_group:
        os.killpg(process.pid, number)  # what Ctrl-C in a terminal does
    else:
        process.send_signal(number)
    while times is None and process.poll() is None:
        time.sleep(REPEAT_GAP_SECONDS)
        with contextlib.suppress(ProcessLookupError):  # the group has exited meanwhile
            os.killpg(process.pid, number)
    stdout, stderr = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 1, stderr
    assert not [word for word in NOISE if word in stderr + stdout], stderr
    assert stderr.strip().splitlines()[-1] == (
        "Error: interrupted; finished images are kept, continue with --resume --out run"
    )
    _wait_for(lambda: not _group_alive(process.pid), "the converter to exit")

    record = read_run_json(run_dir)
    rows = read_predictions(run_dir).to_pylist()
    assert record.status == "interrupted"
    assert 2 <= len(rows) < len(pages)
    assert record.images == ImageCounts(total=len(pages), ok=len(rows), failed=0)
    traced = {int(path.name[len("image") :][:7]) for path in trace_files(run_dir)}
    assert traced == {row["image_index"] for row in rows}  # no trace of an image without its row

    assert "USDT" in (run_dir / "capture.log").read_text()  # Kineto's lines, away from the terminal
    if case != "sigint-to-group":
        return  # resuming is the same after either signal: once is enough
    # The quickstart's own command: --resume --out alone continues the run as recorded.
    resumed = subprocess.run(
        [sys.executable, "-m", "dsocr.cli", "capture", "--resume", "--out", "run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not [word for word in NOISE if word in resumed.stderr]
    record = read_run_json(run_dir)
    assert record.status == "complete" and record.images == ImageCounts(total=6, ok=6, failed=0)
    assert record.config.max_new_tokens == 12 and record.config.profile == "full"
    finished = {row["image_index"]: row["started_unix_ns"] for row in read_predictions(run_dir).to_pylist()}
    assert all(finished[row["image_index"]] == row["started_unix_ns"] for row in rows)  # not run again


@pytest.mark.slow  # a subprocess capture killed with SIGKILL
def test_the_converter_exits_when_the_capture_is_killed(tmp_path: Path, sample_pages: list[Path]) -> None:
    _pages(tmp_path / "pages", sample_pages, 6)
    run_dir = tmp_path / "run"
    process = _start_capture(
        [str(tmp_path / "pages"), "--out", "run", "--max-new-tokens", "12", "--profile", "full"], cwd=tmp_path
    )
    _wait_for(lambda: len(_parts(run_dir)) >= 1 or process.poll() is not None, "a finished image")
    children = _descendants(process.pid)
    assert children, "the converter process should be running"
    process.kill()
    process.communicate(timeout=WAIT_SECONDS)
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
    while any(map(_alive, children)) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    assert [pid for pid in children if _alive(pid)] == []


# ---- 4. numbers past the Parquet column types ----


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--max-new-tokens", "3000000000"],
            "Error: --max-new-tokens must be at most 2147483647 or 'inf', got 3000000000",
        ),
        (["--max-new-tokens", "99999999999999999999"], "Error: --max-new-tokens must be at most 2147483647 or 'inf'"),
        (["--seed", "99999999999999999999"], "Error: --seed must be between 0 and 9223372036854775807, got 9999"),
        (["--seed", "-1"], "Error: --seed must be between 0 and 9223372036854775807, got -1"),
        (["--full-chunk-steps", "3000000000"], "Error: --full-chunk-steps must be between 1 and 2147483647"),
        (["--first-steps", "3000000000"], "Error: --first-steps must be between 0 and 2147483647"),
        (["--warmup-tokens", "3000000000"], "Error: --warmup-tokens must be between 0 and 2147483647"),
    ],
)
def test_numbers_past_the_column_types_are_refused_before_anything_runs(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = run_capture("--out", tmp_path / "run", *arguments)
    assert result.exit_code == 1
    assert result.output.strip().startswith(message) and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ---- 8. --resume compares every option that changes results, and keeps the run's images ----


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    """One page, 2 tokens, full profile: a complete run to resume."""
    run_dir = tmp_path_factory.mktemp("small") / "run"
    result = run_capture(sample_pages[0], "--out", run_dir, "--max-new-tokens", "2", "--profile", "full")
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--full-chunk-steps", "3"], "holds a different run (differs in full_chunk_steps); use another --out"),
        (["--warmup-tokens", "2"], "holds a different run (differs in warmup_tokens); use another --out"),
        # An option whose parameter is named otherwise (--compile is compile_mode in the CLI).
        (["--compile", "off"], "holds a different run (differs in compile); use another --out"),
        (["--max-new-tokens", "3", "--profile", "sampled"], "(differs in max_new_tokens, profile); use another --out"),
    ],
)
def test_resume_refuses_an_option_that_changes_results(small_run: Path, arguments: list[str], message: str) -> None:
    before = (small_run / "run.json").read_bytes()
    result = run_capture("--resume", "--out", small_run, *arguments)
    assert result.exit_code == 1
    assert result.output.strip().endswith(message) and len(result.output.strip().splitlines()) == 1
    assert (small_run / "run.json").read_bytes() == before


def test_resume_refuses_other_image_arguments_and_accepts_the_same(small_run: Path, sample_pages: list[Path]) -> None:
    before = (small_run / "run.json").read_bytes()
    other = run_capture(sample_pages[1], "--resume", "--out", small_run)
    assert other.exit_code == 1
    assert other.output.strip() == (
        f"Error: --out {small_run} holds a run of 1 images and --resume continues those: drop the image "
        "arguments to continue it, or use another --out for other images"
    )
    assert (small_run / "run.json").read_bytes() == before
    same = run_capture(sample_pages[0], "--resume", "--out", small_run, "--max-new-tokens", "2")
    assert same.exit_code == 0, same.output
    record = read_run_json(small_run)
    assert record.config.images == (str(sample_pages[0]),) and record.image_paths == (str(sample_pages[0]),)


def test_resume_takes_every_option_not_given_from_the_run(small_run: Path, sample_pages: list[Path]) -> None:
    from dsocr.capture.config import CaptureConfig, ProfileMode
    from dsocr.capture.resume import as_recorded

    bare = as_recorded(CaptureConfig(images=(), out=small_run, resume=True), given={"out", "resume"})
    assert bare.images == (str(sample_pages[0]),)
    assert (bare.max_new_tokens, bare.profile, bare.prompt) == (
        2,
        ProfileMode.full,
        read_run_json(small_run).config.prompt,
    )
    given = as_recorded(
        CaptureConfig(images=(), out=small_run, resume=True, max_new_tokens=5),
        given={"out", "resume", "max_new_tokens"},
    )
    assert given.max_new_tokens == 5 and given.profile is ProfileMode.full
    fresh = CaptureConfig(images=(), out=small_run, resume=False)
    assert as_recorded(fresh, given={"out"}) is fresh  # without --resume nothing is taken


# ---- 9. the environment: --out, image arguments, --model files ----


def test_an_out_that_cannot_be_a_run_directory_is_one_line(tmp_path: Path, sample_pages: list[Path]) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = {
        a_file: f"Error: --out {a_file} is a file, not a directory",
        a_file / "run": f"Error: --out {a_file / 'run'}: {a_file} is a file, not a directory",
    }
    for out, message in cases.items():
        result = run_capture(sample_pages[0], "--out", out, "--max-new-tokens", "2")
        assert result.exit_code == 1
        assert result.output.strip() == message
    assert a_file.read_text() == "x"


def test_a_full_disk_is_one_line(tmp_path: Path, sample_pages: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import dsocr.capture.runner as capture_runner

    def disk_full(run_dir: Path, row: dict) -> Path:
        path = run_dir / "predictions.parts" / "rank000-image0000000.parquet"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(capture_runner, "write_prediction_part", disk_full)
    run_dir = tmp_path / "run"
    result = run_capture(sample_pages[0], "--out", run_dir, "--max-new-tokens", "2", "--profile", "off")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {run_dir}/predictions.parts/rank000-image0000000.parquet: No space left on device"
    )
    assert "Traceback" not in result.output
    # run.json says what happened, not `running` forever: --resume continues once there is room.
    record = read_run_json(run_dir)
    assert record.status == "interrupted" and record.images == ImageCounts(total=1, ok=0, failed=0)
    stopped = [warning for warning in record.warnings if warning.startswith("stopped: ")]
    assert len(stopped) == 1 and "No space left on device" in stopped[0]


#: A filesystem this small fills while the first image's trace and row are written (the sample
#: pages take about 230 KB of it).
SMALL_FILESYSTEM = "320k"


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem that fills up: a tmpfs of SMALL_FILESYSTEM (root with mount rights only)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FILESYSTEM}", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_really_full_disk_leaves_run_json_interrupted_and_resumable(small_filesystem: Path) -> None:
    run_dir = small_filesystem / "run"
    # A process of its own, as a user runs it (in-process, pytest's log capture keeps the failed
    # image's traceback, and with it the profiler's open export file and the room it holds).
    result = subprocess.run(
        [sys.executable, "-m", "dsocr.cli", "capture", "--out", run_dir, "--max-new-tokens", "2", "--profile", "full"],
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: {run_dir}/") and "No space left on device" in last
    record = read_run_json(run_dir)
    assert record.status == "interrupted" and record.images.total == 3
    assert [warning for warning in record.warnings if warning.startswith("stopped: ")]


def test_a_symlink_loop_is_a_failed_row_and_a_binary_list_file_one_line(
    tmp_path: Path, sample_pages: list[Path]
) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(loop)
    run_dir = tmp_path / "run"
    result = run_capture(sample_pages[0], loop, "--out", run_dir, "--max-new-tokens", "2", "--profile", "off")
    assert result.exit_code == 0, result.output
    row = _rows(run_dir)["loop.png"]
    assert row["status"] == "failed" and "Too many levels of symbolic links" in row["error"]

    binary = tmp_path / "images.txt"
    binary.write_bytes(bytes(range(256)))
    nul = tmp_path / "nul.lst"
    nul.write_bytes(b"page.png\x00junk\n")
    for listing, message in (
        (binary, f"Error: {binary}: not a list of image paths (not UTF-8 text)"),
        (nul, f"Error: {nul}:1: a path with a NUL byte (a binary file?)"),
    ):
        refused = run_capture(listing, "--out", tmp_path / "other", "--max-new-tokens", "2")
        assert refused.exit_code == 1
        assert refused.output.strip() == message
        assert not (tmp_path / "other").exists()


def test_model_jsons_that_are_not_an_architecture_are_one_line(tmp_path: Path, sample_pages: list[Path]) -> None:
    embedded = json.loads(EMBEDDED_CONFIG.read_text())
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    string_text = tmp_path / "string-text.json"
    string_text.write_text(json.dumps({**embedded, "text_config": "oops"}))
    negative = tmp_path / "negative.json"
    negative.write_text(json.dumps({**embedded, "text_config": {**embedded["text_config"], "hidden_size": -8}}))
    cases = {
        array: f"Error: {array}: not a JSON config (a JSON object expected)",
        string_text: f"Error: {string_text}: not a usable deepseek_ocr2 architecture (ValueError: ",
        negative: f"Error: {negative}: text_config.hidden_size must be an integer >= 1, got -8",
    }
    for model, message in cases.items():
        result = run_capture(sample_pages[0], "--out", tmp_path / "run", "--model", model)
        assert result.exit_code == 1
        assert result.output.startswith(message) and len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "run").exists()


# ---- 10. paths recorded absolute ----


def test_default_sample_pages_are_recorded_with_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_capture("--out", "runs/relative", "--max-new-tokens", "2", "--profile", "off")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "relative"
    expected = [str(run_dir / "samples" / name) for name in ("text-page.png", "table-page.png", "figure-page.png")]
    assert list(read_run_json(run_dir).image_paths) == expected
    assert [row["image_path"] for row in read_predictions(run_dir).to_pylist()] == expected
