"""emit under hostile-but-realistic conditions (issue 10): kills, concurrent emits, links out of
the run, moved or relative image paths, read-only folders, many crops. Real pages, real Parquet
run directories, the real CLI (in a subprocess where a process must be killed)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dsocr.emit import runner as emit_runner
from dsocr.emit.folder import file_sha256
from dsocr.emit.guard import LOCK_FILE, emit_lock
from emit_helpers import GOLDEN_TEXT, draw_page, make_run, prediction_row, read_jsonl, run_cli, viz_folder

from dsocr import rundir
from dsocr.tempnames import TEMP_NAME

KILL_PAGE = (1200, 1600)
KILL_PAGES = 24
MANY_BOXES_TEXT = "<|ref|>text<|/ref|><|det|>[[100, 100, 500, 400]]<|/det|>\nHello"
STARTUP_TIMEOUT_S = 60
EXIT_TIMEOUT_S = 10


def _emit(run_dir: Path, *args: str | Path):
    return run_cli("emit", run_dir, "--jobs", "1", *args)


def _default_ctrl_c() -> None:
    """In the child before exec: Ctrl-C's default action, as a terminal's command has it. A shell
    starts a background job with SIGINT ignored, and an ignored signal stays ignored across exec:
    run from one, the tests' emit would otherwise never see a Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _emit_process(run_dir: Path, *args: str) -> subprocess.Popen[str]:
    """`dsocr emit` in its own process (and process group), so that it can be killed."""
    command = [sys.executable, "-m", "dsocr.cli", "emit", str(run_dir), *args]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_ctrl_c,
    )


def _run(tmp_path: Path, count: int, text: str = GOLDEN_TEXT, size: tuple[int, int] = (400, 300)) -> Path:
    pages = [draw_page(tmp_path / "pages" / f"p{index:03d}.png", size, shade=index % 50) for index in range(count)]
    return make_run(tmp_path / "run", [prediction_row(index, page, text) for index, page in enumerate(pages)])


def _folders(run_dir: Path) -> list[Path]:
    return sorted(path for path in (run_dir / "viz").iterdir() if path.is_dir())


def _consistent(folder: Path) -> bool:
    """True when every file info.json lists has the sha256 it records (JPEG and info agree)."""
    info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    return all(file_sha256(folder / entry["name"]) == entry["sha256"] for entry in info["files"])


def _temps(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if TEMP_NAME.fullmatch(path.name)]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for_new_info(run_dir: Path, since_ns: int, process: subprocess.Popen[str]) -> None:
    """Return once the emit in ``process`` has replaced at least one info.json."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if any((folder / "info.json").stat().st_mtime_ns > since_ns for folder in _folders(run_dir)):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    pytest.fail("emit rendered nothing in time")


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigkill_during_force_leaves_every_folder_with_an_info_json_and_the_next_emit_repairs(
    tmp_path: Path, jobs: str
) -> None:
    run_dir = _run(tmp_path, KILL_PAGES, size=KILL_PAGE)
    assert _emit(run_dir, "--line-width", "3").exit_code == 0
    before_ns = max((folder / "info.json").stat().st_mtime_ns for folder in _folders(run_dir))

    process = _emit_process(run_dir, "--force", "--jobs", jobs)
    _wait_for_new_info(run_dir, before_ns, process)
    workers = _children(process.pid)
    process.kill()
    process.communicate()

    rendered = {line["image_md5"] for line in read_jsonl(run_dir / "predictions.jsonl")}
    assert {folder.name for folder in _folders(run_dir) if (folder / "info.json").is_file()} == rendered
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, workers)), "render workers outlived their killed parent"

    repaired = _emit(run_dir, "--line-width", "3")
    assert repaired.exit_code == 0, repaired.output
    assert all(_consistent(folder) for folder in _folders(run_dir))
    assert _temps(run_dir) == []
    assert "0 rendered, 24 up to date" in _emit(run_dir, "--line-width", "3").stdout


def test_a_folder_whose_files_disagree_with_its_info_json_is_not_up_to_date(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, 2)
    assert _emit(run_dir, "--line-width", "3").exit_code == 0
    first, second = _folders(run_dir)
    assert _emit(run_dir, "--line-width", "9", "--force").exit_code == 0
    # What two emits at once used to leave: the JPEG of one beside the info.json of the other.
    thick = (first / "result_with_boxes.jpg").read_bytes()
    assert _emit(run_dir, "--line-width", "3", "--force").exit_code == 0
    (first / "result_with_boxes.jpg").write_bytes(thick)
    (second / "result_with_boxes.jpg").unlink()

    again = _emit(run_dir, "--line-width", "3")

    assert "2 rendered of 2" in again.stdout
    assert all(_consistent(folder) for folder in (first, second))
    # An earlier render's crop that the newer one did not write (a kill before it was removed).
    (first / "images").mkdir()
    (first / "images" / "0.jpg").write_bytes(thick)
    assert "1 rendered, 1 up to date" in _emit(run_dir, "--line-width", "3").stdout
    assert not (first / "images" / "0.jpg").exists()


def test_a_second_emit_of_the_same_run_is_refused_with_one_line(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, 1)

    with emit_lock(run_dir):
        result = _emit(run_dir)

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: {run_dir}: another dsocr emit (pid {os.getpid()}) is writing this run; "
        "run emit again when it has finished\n"
    )
    assert not (run_dir / "viz").exists()
    assert _emit(run_dir).exit_code == 0  # the lock went with its holder


@pytest.mark.slow
def test_two_emits_at_once_with_different_options_leave_agreeing_folders(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, 12, size=(900, 1200))

    first = _emit_process(run_dir, "--line-width", "3", "--jobs", "1")
    second = _emit_process(run_dir, "--line-width", "9", "--jobs", "1")
    outcomes = [(*process.communicate(), process.returncode) for process in (first, second)]

    for _, stderr, code in outcomes:
        assert code == 0 or stderr.endswith("is writing this run; run emit again when it has finished\n"), stderr
        assert "Traceback" not in stderr
    assert all(_consistent(folder) for folder in _folders(run_dir))
    widths = {json.loads((folder / "info.json").read_text())["render"]["line_width"] for folder in _folders(run_dir)}
    assert len(widths) == 1
    width = widths.pop()
    assert "0 rendered, 12 up to date" in _emit(run_dir, "--line-width", str(width)).stdout


@pytest.mark.parametrize("link", ["viz", "viz/<md5>", "viz/<md5>/images", LOCK_FILE])
@pytest.mark.parametrize("force", [False, True])
def test_links_inside_the_run_are_refused_and_nothing_outside_changes(tmp_path: Path, link: str, force: bool) -> None:
    run_dir = _run(tmp_path, 1)
    md5 = rundir.path_md5(tmp_path / "pages" / "p000.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("info.json", "result_with_boxes.jpg", "0.jpg", "result.mmd", LOCK_FILE):
        (outside / name).write_text("precious", encoding="utf-8")
    target = run_dir / link.replace("<md5>", md5)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(outside)
    args = ["--crops", "--markdown"] + (["--force"] if force else [])

    result = _emit(run_dir, *args)

    assert result.exit_code == 1
    reasons = {
        LOCK_FILE: "emit never writes through a link",
        "viz": "emit never writes through a link out of the run directory "
        "(remove the link, or name the folder with --viz-dir)",
    }
    reason = reasons.get(link, "emit never writes or deletes through a link out of the run directory")
    assert result.stderr == f"Error: {target} is a symbolic link: {reason}\n"
    assert sorted(path.name for path in outside.iterdir()) == sorted(
        ["info.json", "result_with_boxes.jpg", "0.jpg", "result.mmd", LOCK_FILE]
    )
    assert {path.read_text(encoding="utf-8") for path in outside.iterdir()} == {"precious"}


def test_crops_are_streamed_memory_stays_near_one_crop(tmp_path: Path) -> None:
    boxes = 120
    text = "<|ref|>image<|/ref|><|det|>[" + ", ".join(["[0, 0, 999, 999]"] * boxes) + "]<|/det|>"
    size = (1000, 1000)
    crop_bytes = size[0] * size[1] * 3
    run_dir = _run(tmp_path, 1, text=text, size=size)
    probe = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from dsocr.emit import EmitOptions, RenderStyle, render_run\n"
        "run = Path(sys.argv[1])\n"
        "render_run(run, EmitOptions(jobs=1, style=RenderStyle(labels=False)))\n"
        "plain = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "render_run(run, EmitOptions(jobs=1, style=RenderStyle(labels=False, crops=True)))\n"
        "print(plain, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", probe, str(run_dir)], capture_output=True, text=True, check=True, timeout=120
    )

    plain_kib, crops_kib = map(int, completed.stdout.split())
    crops = sorted((viz_folder(run_dir, tmp_path / "pages" / "p000.png") / "images").iterdir())
    assert len(crops) == boxes
    # Holding every crop would add boxes x 3 MB (360 MB); streaming adds about one.
    assert (crops_kib - plain_kib) * 1024 < 8 * crop_bytes, (plain_kib, crops_kib)


def test_relative_image_paths_resolve_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture_dir = tmp_path / "project"
    page = draw_page(capture_dir / "runs" / "x" / "samples" / "p.png")
    relative = "runs/x/samples/p.png"
    row = prediction_row(0, page, GOLDEN_TEXT) | {"image_path": relative}  # md5 of the absolute path
    run_dir = make_run(capture_dir / "runs" / "x", [row])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    result = _emit(run_dir)

    assert result.exit_code == 0, result.output
    info = json.loads((run_dir / "viz" / rundir.path_md5(page) / "info.json").read_text(encoding="utf-8"))
    assert info["source_image"] == str(page.resolve())


def test_force_keeps_good_renders_when_sources_moved_and_image_root_maps_them(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, 2)
    assert _emit(run_dir).exit_code == 0
    before = {folder: (folder / "result_with_boxes.jpg").read_bytes() for folder in _folders(run_dir)}
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "pages", moved)

    forced = _emit(run_dir, "--force")

    assert forced.exit_code == 1
    assert "does not exist (if the images moved, map their folder with --image-root OLD=NEW)" in forced.stderr
    assert {folder: (folder / "result_with_boxes.jpg").read_bytes() for folder in _folders(run_dir)} == before
    assert all(_consistent(folder) for folder in before)
    lines = read_jsonl(run_dir / "predictions.jsonl")
    assert [line["emit_status"] for line in lines] == ["failed", "failed"]
    assert all(line["viz"] and line["emit_error"].endswith("; its previous render is kept") for line in lines)

    remapped = _emit(run_dir, "--force", "--image-root", f"{tmp_path / 'pages'}={moved}")

    assert remapped.exit_code == 0, remapped.output
    assert "2 rendered of 2" in remapped.stdout
    info = json.loads((_folders(run_dir)[0] / "info.json").read_text(encoding="utf-8"))
    assert Path(info["source_image"]).parent == moved


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("no-equals-sign", "--image-root no-equals-sign: must be OLD=NEW (the folder at capture, and where it is now)"),
        ("=/tmp", "--image-root =/tmp: must be OLD=NEW (the folder at capture, and where it is now)"),
        ("/old=<missing>", "--image-root /old=<missing>: <missing> is not a folder"),
        ("/nowhere/old=<tmp>", "--image-root /nowhere/old: no image of this run was recorded under it"),
    ],
)
def test_bad_image_root_is_a_one_line_error(tmp_path: Path, value: str, error: str) -> None:
    run_dir = _run(tmp_path, 1)
    missing = str(tmp_path / "missing")
    value, error = (text.replace("<missing>", missing).replace("<tmp>", str(tmp_path)) for text in (value, error))

    result = _emit(run_dir, "--image-root", value)

    assert (result.exit_code, result.stderr) == (1, f"Error: {error}\n")
    assert not (run_dir / "viz").exists()


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` made read-only for this process: mode bits, or for root the immutable flag."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], check=False).returncode:
        pytest.skip("running as root without chattr +i: cannot make a folder read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("folder", ["viz", "run"])
def test_read_only_viz_or_run_is_a_one_line_error(tmp_path: Path, folder: str) -> None:
    run_dir = _run(tmp_path, 1)
    (run_dir / "viz").mkdir()
    read_only = run_dir / "viz" if folder == "viz" else run_dir
    if folder == "run":
        (run_dir / LOCK_FILE).unlink(missing_ok=True)

    with _read_only(read_only):
        result = _emit(run_dir)

    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    expected = (
        f"Error: {run_dir / 'viz'}: cannot write image folders there ("
        if folder == "viz"
        else f"Error: {run_dir}: cannot write in the run directory ("
    )
    assert result.stderr.startswith(expected), result.stderr


@pytest.mark.parametrize("payload", ["[]", "null", '"run"', "3"])
def test_run_json_that_is_not_an_object_is_a_one_line_error(tmp_path: Path, payload: str) -> None:
    run_dir = _run(tmp_path, 1)
    (run_dir / "run.json").write_text(payload, encoding="utf-8")

    result = _emit(run_dir)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {run_dir / 'run.json'}: must be a JSON object, found ")
    assert result.stderr.count("\n") == 1


def test_stale_temp_files_of_a_killed_emit_are_cleared(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, 1)
    assert _emit(run_dir, "--crops").exit_code == 0
    folder = _folders(run_dir)[0]
    planted = [
        folder / ".result_with_boxes.jpg.0123456789abcdef.tmp",
        folder / "images" / ".0.jpg.0123456789abcdef.tmp",
        run_dir / ".predictions.jsonl.0123456789abcdef.tmp",
    ]
    for path in planted:
        path.write_bytes(b"half written")
    kept = [folder / "notes.txt", folder / ".notes.txt.0123456789abcdef.tmp"]  # not emit's: never removed
    for path in kept:
        path.write_text("mine", encoding="utf-8")

    result = _emit(run_dir, "--crops")

    assert "0 rendered, 1 up to date" in result.stdout
    assert not any(path.exists() for path in planted)
    assert [path.read_text(encoding="utf-8") for path in kept] == ["mine", "mine"]


def test_emit_prints_where_each_image_folder_is(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, 2)
    pages = sorted((tmp_path / "pages").iterdir())

    lines = _emit(run_dir).stdout.splitlines()

    assert lines[0].startswith("emit: 2 rendered of 2 images -> ")
    assert lines[1:] == [f"  {viz_folder(run_dir, page)}/  <- {page}" for page in pages]
    summary = json.loads(_emit(run_dir, "--json").stdout)
    assert summary["folders"] == [{"image_path": str(page), "folder": str(viz_folder(run_dir, page))} for page in pages]


def test_emit_of_many_images_prints_the_viz_root_and_count(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, 11, text=MANY_BOXES_TEXT)

    lines = _emit(run_dir).stdout.splitlines()

    assert lines[1:] == [
        f"  11 image folders in {run_dir / 'viz'}/<md5>/; {run_dir / 'predictions.jsonl'} names each image's folder"
    ]


@pytest.mark.slow
def test_ctrl_c_stops_emit_without_tracebacks_and_keeps_folders_whole(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, KILL_PAGES, size=KILL_PAGE)
    assert _emit(run_dir).exit_code == 0
    before_ns = max((folder / "info.json").stat().st_mtime_ns for folder in _folders(run_dir))

    process = _emit_process(run_dir, "--force", "--jobs", "2")
    _wait_for_new_info(run_dir, before_ns, process)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, stderr = process.communicate(timeout=STARTUP_TIMEOUT_S)

    assert process.returncode != 0
    assert "Traceback" not in stderr, stderr
    assert all(_consistent(folder) for folder in _folders(run_dir))


def test_a_ctrl_c_during_a_submit_is_not_lost() -> None:
    """The signal that arrives while emit hands a task to its pool (when a new worker may start)
    waits, and stops emit as soon as the submit returns (it was ignored, and lost, before)."""

    class Pool:
        def submit(self, *args: object) -> str:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, mid-submit
            time.sleep(0.05)  # a signal not blocked would be handled (or dropped) by now
            return "submitted"

    # Python's Ctrl-C handler, as a terminal's command has it (a background job starts with it ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            emit_runner._submit(Pool(), [])  # type: ignore[arg-type]
            time.sleep(1)  # the pending Ctrl-C is delivered as soon as the submit returns
    finally:
        signal.signal(signal.SIGINT, previous)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


# ---- issue 25: a full disk names the file it could not write ----


def test_a_full_disk_at_the_lock_names_the_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from dsocr import runlock

    run_dir = _run(tmp_path, 1)

    def disk_full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runlock.os, "pwrite", disk_full)
    result = _emit(run_dir)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {run_dir / LOCK_FILE}: cannot write (No space left on device)"


#: Room for the run and its pages, not for their renders.
SMALL_FILESYSTEM = "1m"


def test_emit_on_a_really_full_disk_names_a_path_in_its_error(tmp_path: Path) -> None:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FILESYSTEM}", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    try:
        run_dir = _run(mount_point, 1)
        filler = mount_point / "filler"
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as handle:
            while True:  # every byte left, as a full disk has
                handle.write(b"\0" * 4096)
        process = _emit_process(run_dir, "--jobs", "1")
        _stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 1
        lines = stderr.strip().splitlines()
        assert "Traceback" not in stderr
        assert lines[-1].startswith("Error: ") and str(mount_point) in lines[-1], stderr
        assert "No space left on device" in stderr
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
