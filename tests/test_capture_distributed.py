"""Capture across processes with torchrun, on CPU with the gloo backend (CI has no GPU)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from capture_helpers import run_capture, with_fast_model
from dsocr.analyze.runner import analyze_run
from dsocr.capture.distributed import shard
from typer.testing import CliRunner

from dsocr._app import app
from dsocr.rundir import PREDICTIONS_PARTS_DIR, read_predictions, read_run_json, trace_files

RANK_FILE_TIMEOUT_S = 180
KILLED_RUN_TIMEOUT_S = 120


def test_shard_is_disjoint_complete_deterministic_and_balanced() -> None:
    sizes = {0: 900, 1: 100, 2: 500, 3: 400, 4: 300, 5: 300}
    plan = shard(sizes, 2)
    assert plan == shard(dict(reversed(sizes.items())), 2)
    assert sorted(index for indices in plan for index in indices) == sorted(sizes)
    loads = [sum(sizes[index] for index in indices) for indices in plan]
    assert max(loads) - min(loads) <= max(sizes.values())
    assert plan == [[0, 1, 4], [2, 3, 5]]


@pytest.mark.slow  # several processes through torchrun
def test_two_ranks_give_the_single_process_results(tmp_path: Path, sample_pages: list[Path]) -> None:
    options = ["--max-new-tokens", "6", "--profile", "full"]
    single = run_capture(*sample_pages, "--out", tmp_path / "single", *options)
    assert single.exit_code == 0, single.output
    multi = run_capture(*sample_pages, "--out", tmp_path / "multi", *options, "--gpus", "2")
    assert multi.exit_code == 0, multi.output
    one = read_predictions(tmp_path / "single").to_pylist()
    two = read_predictions(tmp_path / "multi").to_pylist()
    assert [row["image_path"] for row in one] == [row["image_path"] for row in two]
    for alone, sharded in zip(one, two, strict=True):
        assert sharded["text_raw"] == alone["text_raw"]
        assert sharded["generated_tokens"] == alone["generated_tokens"]
    sizes = {index: path.stat().st_size for index, path in enumerate(sample_pages)}
    expected_rank = {index: rank for rank, indices in enumerate(shard(sizes, 2)) for index in indices}
    assert {row["image_index"]: row["rank"] for row in two} == expected_rank
    for path in trace_files(tmp_path / "multi"):
        rank = int(path.parent.name.removeprefix("rank="))
        image_index = int(path.name[len("image") : path.name.index("-")])
        assert expected_rank[image_index] == rank
    record = read_run_json(tmp_path / "multi")
    assert record.world_size == 2 and record.status == "complete"
    assert record.ranks is not None and [entry.rank for entry in record.ranks] == [0, 1]
    assert sum(entry.images for entry in record.ranks) == len(sample_pages)

    # analyze and emit read the ranks' parts as one run.
    ranks = analyze_run(tmp_path / "multi").summary.ranks
    assert ranks.world_size == 2
    images_per_rank = {entry.rank: entry.images for entry in ranks.per_rank}
    assert images_per_rank == {rank: len(indices) for rank, indices in enumerate(shard(sizes, 2))}
    seconds = {entry.rank: entry.capture_seconds for entry in record.ranks}
    assert ranks.slowest_rank == max(seconds, key=seconds.get)
    assert ranks.imbalance == pytest.approx(max(seconds.values()) / (sum(seconds.values()) / 2))
    emitted = CliRunner().invoke(app, ["emit", str(tmp_path / "multi")])
    assert emitted.exit_code == 0, emitted.output
    assert len(list((tmp_path / "multi" / "viz").glob("*/info.json"))) == len(sample_pages)


def _rank_pid(rank: int, run_dir: Path) -> int:
    """The pid of the torchrun worker with ``rank`` that captures into ``run_dir``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and str(run_dir).encode() in cmdline and b"dsocr.cli" in cmdline:
            return int(entry.name)
    raise LookupError(f"no rank {rank} process for {run_dir}")


@pytest.mark.slow  # several processes through torchrun
def test_resume_after_killing_one_rank(tmp_path: Path, sample_pages: list[Path]) -> None:
    images = []
    for copy in range(2):
        for page in sample_pages:
            images.append(tmp_path / f"{copy}-{page.name}")
            shutil.copy(page, images[-1])
    run_dir = tmp_path / "run"
    arguments = [*map(str, images), "--out", str(run_dir), "--max-new-tokens", "24", "--profile", "off"]
    launcher_log = tmp_path / "launcher.log"
    with launcher_log.open("wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "dsocr.cli", "capture", *with_fast_model(arguments), "--gpus", "2"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + RANK_FILE_TIMEOUT_S
    parts = run_dir / PREDICTIONS_PARTS_DIR
    while not (parts.is_dir() and any(parts.glob("rank001-*.parquet"))):
        ended = launcher.poll() is not None
        assert not ended, f"the run ended before rank 1 finished an image:\n{launcher_log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "rank 1 finished no image in time"
        time.sleep(0.05)
    os.kill(_rank_pid(1, run_dir), signal.SIGKILL)
    assert launcher.wait(timeout=KILLED_RUN_TIMEOUT_S) != 0
    survivors = read_predictions(run_dir).to_pylist()
    assert 1 <= len(survivors) < len(images)
    # torchrun stops rank 0 with SIGTERM: it marks the run interrupted, unless it was already
    # waiting for rank 1 at the end (then nothing runs Python in it to say so).
    assert read_run_json(run_dir).status in {"running", "interrupted"}

    resumed = run_capture(*arguments, "--gpus", "2", "--resume")
    assert resumed.exit_code == 0, resumed.output
    rows = read_predictions(run_dir).to_pylist()
    assert [row["image_index"] for row in rows] == list(range(len(images)))
    assert all(row["status"] == "ok" for row in rows)
    before = {row["image_index"]: row["started_unix_ns"] for row in survivors}
    assert {index: rows[index]["started_unix_ns"] for index in before} == before  # not run again
    record = read_run_json(run_dir)
    assert record.status == "complete" and record.world_size == 2


@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_process_count(tmp_path: Path, value: str) -> None:
    result = run_capture("--out", tmp_path / "run", "--gpus", value)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: --gpus must be >= 1, got {value}"


@pytest.mark.slow  # several processes through torchrun, stopped by Ctrl-C
def test_ctrl_c_stops_every_rank_quietly_and_marks_the_run_interrupted(
    tmp_path: Path, sample_pages: list[Path]
) -> None:
    for copy in range(2):
        for page in sample_pages:
            shutil.copy(page, tmp_path / f"{copy}-{page.name}")
    run_dir = tmp_path / "run"
    images = sorted(tmp_path.glob("*.png"))
    options = ["--out", str(run_dir), "--max-new-tokens", "12", "--profile", "full", "--gpus", "2"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "dsocr.cli", "capture", *with_fast_model([*map(str, images), *options])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    deadline = time.monotonic() + RANK_FILE_TIMEOUT_S
    parts = run_dir / PREDICTIONS_PARTS_DIR
    while not (parts.is_dir() and len(list(parts.glob("*.parquet"))) >= 2):
        assert launcher.poll() is None, launcher.communicate()
        assert time.monotonic() < deadline, "no two images finished in time"
        time.sleep(0.05)
    os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _stdout, stderr = launcher.communicate(timeout=KILLED_RUN_TIMEOUT_S)
    assert launcher.returncode == 1
    assert "Traceback" not in stderr and "SignalException" not in stderr, stderr
    assert [line for line in stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: interrupted; finished images are kept, continue with --resume --out {run_dir}"
    ]
    rows = read_predictions(run_dir).to_pylist()
    record = read_run_json(run_dir)
    assert record.status == "interrupted"
    assert 2 <= len(rows) < len(images)
    assert (record.images.ok, record.images.failed) == (len(rows), 0)
    leftovers = [
        entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit() and _cmdline_has(entry, str(run_dir))
    ]
    assert leftovers == []


def _cmdline_has(process: Path, text: str) -> bool:
    try:
        return text.encode() in (process / "cmdline").read_bytes()
    except OSError:
        return False
