"""Environment errors of analyze, export-trace and import: one `Error:` line and exit 1, never a
traceback, a hang, or a write outside the run directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analyze_helpers import GPU_RUN, ImageSpec, gpu_run_or_skip, invoke, write_run
from emit_helpers import draw_page, write_jsonl

#: A command that reads a FIFO would block forever: the alarm turns a regression into a failure.
HANG_SECONDS = 20


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` unwritable, also for root (which ignores modes): the immutable attribute."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", folder], capture_output=True).returncode:
        pytest.skip("running as root without a working chattr: no way to make a folder read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", folder], check=True)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    write_run(run_dir, [ImageSpec(0, generated_tokens=4), ImageSpec(1, generated_tokens=5, chunk_every=2)])
    return run_dir


@contextmanager
def no_hang() -> Iterator[None]:
    def fail(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {HANG_SECONDS} s: blocked on a non-regular file?")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- analyze and export-trace


def test_read_only_analysis_folder_is_one_line(run: Path) -> None:
    analysis = run / "analysis"
    analysis.mkdir()
    with read_only(analysis):
        analyzed = invoke("analyze", run)
        exported = invoke("export-trace", run)
    line = _one_error_line(analyzed)
    assert line.startswith(f"Error: {analysis}/") and ": cannot write (" in line
    assert _one_error_line(exported).startswith(f"Error: {analysis}/export: cannot create the folder (")
    assert list(analysis.iterdir()) == []


def test_export_trace_out_that_cannot_be_written(run: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("kept\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    assert _one_error_line(invoke("export-trace", run, "--out", a_file / "t.json")) == (
        f"Error: {a_file}: cannot create the folder: {a_file} is not a folder"
    )
    assert _one_error_line(invoke("export-trace", run, "--out", a_file / "deeper" / "t.json")) == (
        f"Error: {a_file / 'deeper'}: cannot create the folder: {a_file} is not a folder"
    )
    assert _one_error_line(invoke("export-trace", run, "--out", tmp_path)) == (
        f"Error: --out {tmp_path}: is a folder; give the JSON file's name"
    )
    with read_only(locked):
        line = _one_error_line(invoke("export-trace", run, "--out", locked / "t.json"))
    assert line.startswith(f"Error: {locked / 't.json'}: cannot write (")
    assert a_file.read_text() == "kept\n" and list(locked.iterdir()) == []


def test_export_trace_out_that_is_a_file_is_replaced_whole(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    out.write_text("an older export\n")
    result = invoke("export-trace", run, "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["traceEvents"]
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []  # no temp left


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"[]", "run.json: must be a JSON object, found a list"),
        (b"null", "run.json: must be a JSON object, found null"),
        (b'{"schema_version": 1, "kind": "capt', "run.json: unreadable (Unterminated string"),
        (b"\xff\xfe\x00garbage", "run.json: unreadable ('utf-8' codec can't decode byte 0xff"),
        (b"", "run.json: unreadable (Expecting value"),
        (b"[" * 100_000 + b"]" * 100_000, "run.json: unreadable (JSON nested too deeply)"),
    ],
)
def test_damaged_run_json(run: Path, content: bytes, error: str) -> None:
    (run / "run.json").write_bytes(content)
    for command in ("analyze", "export-trace"):
        line = _one_error_line(invoke(command, run))
        assert line.startswith(f"Error: {run}/{error}"), line


def test_run_json_text_that_utf8_cannot_hold(run: Path) -> None:
    """A lone surrogate is valid JSON but no UTF-8 writer (Parquet, info.json) can store it."""
    payload = json.loads((run / "run.json").read_text(encoding="utf-8"))
    payload["model"]["id"] = "\ud800"
    (run / "run.json").write_text(json.dumps(payload), encoding="utf-8")  # ASCII: "\\ud800" escaped
    for command in ("analyze", "export-trace"):
        assert _one_error_line(invoke(command, run)) == (
            f"Error: {run}/run.json: model.id must be valid Unicode (no lone surrogate), found '\\ud800'"
        )


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _column_pages(path: Path, column: str) -> tuple[int, int]:
    """Where ``column``'s data pages lie in the file: (offset, length)."""
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(pq.read_schema(path).get_field_index(column))
    return chunk.data_page_offset, chunk.total_compressed_size


def _flip(path: Path, start: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(start, start + count):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _assert_unreadable(run_dir: Path, chunk: Path) -> None:
    for command in ("analyze", "export-trace"):
        line = _one_error_line(invoke(command, run_dir))
        assert line.startswith(f"Error: {chunk}: unreadable Parquet ("), line
        assert line.isprintable()
    # Nothing half-written: no analysis files, no export, no temporaries.
    assert [path for path in (run_dir / "analysis").rglob("*") if path.is_file()] == []


def test_trace_chunk_with_a_damaged_zstd_page(tmp_path: Path) -> None:
    """The committed capture (written before page checksums): a damaged zstd frame in a data page."""
    run_dir = tmp_path / "gpu-run"
    shutil.copytree(gpu_run_or_skip(), run_dir)
    chunk = sorted((run_dir / "trace").rglob("*.parquet"))[0]
    offset, length = _column_pages(chunk, "ts_ns")
    frame = chunk.read_bytes().index(ZSTD_MAGIC, offset, offset + length)
    _flip(chunk, frame, len(ZSTD_MAGIC))
    _assert_unreadable(run_dir, chunk)


def _silent_damage(path: Path, column: str) -> int:
    """An offset in ``column``'s pages where one flipped byte still decodes, to other numbers,
    when page checksums are not verified: the damage zstd alone does not notice."""
    data = path.read_bytes()
    original = pq.read_table(pa.BufferReader(data))
    offset, length = _column_pages(path, column)
    for position in range(offset + length // 2, offset + length):
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        try:
            table = pq.read_table(pa.BufferReader(bytes(damaged)), page_checksum_verification=False)
        except (OSError, pa.ArrowException):
            continue
        if not table.equals(original):
            return position
    pytest.fail(f"no silently decodable damage found in {path}:{column}")


def test_damage_that_decodes_silently_is_caught_by_the_page_checksum(run: Path) -> None:
    """Every page carries a CRC32 (rundir.PAGE_CHECKSUMS) and readers verify it."""
    chunk = sorted((run / "trace").rglob("*.parquet"))[0]
    _flip(chunk, _silent_damage(chunk, "ts_ns"), 1)
    _assert_unreadable(run, chunk)


def test_a_fifo_or_folder_named_like_a_parquet_file_is_refused_not_read(run: Path) -> None:
    """A FIFO would block pyarrow's open forever; pyarrow retries on EINTR, so no alarm would
    stop it: the command runs in its own process, with a timeout."""
    fifo = run / "trace" / "rank=0" / "x.parquet"
    os.mkfifo(fifo)
    for command in ("analyze", "export-trace"):
        done = subprocess.run(
            [sys.executable, "-m", "dsocr.cli", command, str(run)], capture_output=True, text=True,
            timeout=HANG_SECONDS * 3,
        )  # fmt: skip
        assert (done.returncode, done.stdout, done.stderr) == (
            1, "", f"Error: {fifo}: not a regular file (a folder, FIFO or device): remove it from the run\n"
        )  # fmt: skip
    fifo.unlink()
    folder = run / "predictions.parts" / "z.parquet"
    folder.mkdir()
    assert _one_error_line(invoke("analyze", run)).startswith(f"Error: {folder}: not a regular file")


def test_damaged_prediction_part(run: Path) -> None:
    part = sorted((run / "predictions.parts").glob("*.parquet"))[0]
    _flip(part, part.stat().st_size // 2, 32)
    assert _one_error_line(invoke("analyze", run)).startswith(f"Error: {part}: unreadable Parquet (")


def test_symlink_loop_and_nul_as_the_run_argument(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for command in ("analyze", "export-trace"):
        assert _one_error_line(invoke(command, loop)) == f"Error: {loop}: not a dsocr run directory (no run.json)"
        line = _one_error_line(invoke(command, f"{tmp_path}/run\0x"))
        assert line == "Error: Invalid value for 'run_dir': Value error, embedded null byte"


def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_analysis_linked_out_of_the_run_is_refused(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "timings.parquet").write_bytes(b"someone else's file")
    (outside / "export").mkdir()
    before = _files_under(outside)
    (run / "analysis").symlink_to(outside)
    for command in ("analyze", "export-trace"):
        line = _one_error_line(invoke(command, run))
        assert line.startswith(f"Error: {run}/analysis")
        assert f"leads outside the run directory (to {outside}" in line and line.endswith("remove the link")
    assert _files_under(outside) == before


def test_analysis_export_linked_out_of_the_run_is_refused(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (run / "analysis").mkdir()
    (run / "analysis" / "export").symlink_to(outside)
    line = _one_error_line(invoke("export-trace", run))
    assert line.startswith(f"Error: {run}/analysis/export/trace.json: leads outside the run directory")
    assert list(outside.iterdir()) == []
    # analyze itself writes only analysis/*: it still works, and leaves the link alone.
    assert invoke("analyze", run).exit_code == 0
    assert list(outside.iterdir()) == []


def test_analysis_linked_inside_the_run_is_followed(run: Path) -> None:
    (run / "kept-analysis").mkdir()
    (run / "analysis").symlink_to(run / "kept-analysis")
    assert invoke("analyze", run).exit_code == 0
    assert (run / "kept-analysis" / "summary.json").is_file()


def test_analysis_symlink_loop_is_one_line(run: Path) -> None:
    (run / "analysis").symlink_to(run / "analysis")
    line = _one_error_line(invoke("analyze", run))
    assert line.startswith(f"Error: {run}/analysis: cannot be resolved (")


# ---------------------------------------------------------------- import


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    draw_page(tmp_path / "a.png")
    return write_jsonl(tmp_path / "o.jsonl", [{"image": "a.png", "text": "hello"}])


def test_import_out_that_cannot_be_written(outputs: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("kept\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert _one_error_line(invoke("import", outputs, "--out", a_file)) == (
        f"Error: --out {a_file} exists and is not an empty folder"
    )
    assert _one_error_line(invoke("import", outputs, "--out", a_file / "run")) == (
        f"Error: {a_file / 'run'}: cannot create the folder: {a_file} is not a folder"
    )
    assert _one_error_line(invoke("import", outputs, "--out", loop)) == (
        f"Error: {loop}: cannot create the folder: {loop} is not a folder"
    )
    with read_only(locked):
        line = _one_error_line(invoke("import", outputs, "--out", locked / "run"))
        in_place = _one_error_line(invoke("import", outputs, "--out", locked))
    assert line.startswith(f"Error: {locked / 'run'}: cannot create the folder (")
    assert in_place.startswith(f"Error: {locked / 'predictions.parquet'}: cannot write (")
    assert a_file.read_text() == "kept\n" and list(locked.iterdir()) == []


def test_import_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "outputs.fifo"
    os.mkfifo(fifo)
    with no_hang():
        assert _one_error_line(invoke("import", fifo, "--out", tmp_path / "r1")) == (
            f"Error: {fifo}: a FIFO; give a JSON Lines file"
        )
        assert _one_error_line(invoke("import", tmp_path, "--out", tmp_path / "r2")) == (
            f"Error: {tmp_path}: a folder; give a JSON Lines file"
        )
        if Path("/dev/zero").exists():
            assert _one_error_line(invoke("import", "/dev/zero", "--out", tmp_path / "r3")) == (
                "Error: /dev/zero: not a regular file; give a JSON Lines file"
            )
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3"))


def test_import_of_an_image_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "page.png")
    outputs = write_jsonl(tmp_path / "o.jsonl", [{"image": "page.png", "text": "hello"}])
    with no_hang():
        result = invoke("import", outputs, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "1 image files unreadable now" in result.output


def test_import_symlink_loop_and_nul_arguments(outputs: Path, tmp_path: Path) -> None:
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    line = _one_error_line(invoke("import", loop, "--out", tmp_path / "run"))
    assert line.startswith(f"Error: {loop}: unreadable (") and "Too many levels of symbolic links" in line
    line = _one_error_line(invoke("import", f"{outputs}\0", "--out", tmp_path / "run"))
    assert line == "Error: Invalid value for 'outputs': Value error, embedded null byte"
    line = _one_error_line(invoke("import", outputs, "--out", f"{tmp_path}/run\0"))
    assert line == "Error: Invalid value for '--out' / '-o': Value error, embedded null byte"
    assert not (tmp_path / "run").exists()


def test_import_image_path_through_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "pages").symlink_to(tmp_path / "pages")
    outputs = write_jsonl(tmp_path / "o.jsonl", [{"image": "pages/a.png", "text": "hello"}])
    line = _one_error_line(invoke("import", outputs, "--out", tmp_path / "run"))
    assert line.startswith(f"Error: {outputs}:1: image pages/a.png: cannot be resolved (")


def test_committed_fixture_is_untouched() -> None:
    """The damaged-page test works on a copy: the fixture itself still reads."""
    gpu_run_or_skip()
    for path in sorted((GPU_RUN / "trace").rglob("*.parquet")):
        assert pq.read_table(path).num_rows > 0


# ---------------------------------------------------------------- issue 25: readers of run.json and rows


def test_emit_of_an_imported_image_that_is_a_fifo_is_a_failed_row_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "page.png")
    outputs = write_jsonl(tmp_path / "o.jsonl", [{"image": "page.png", "text": "hello"}])
    assert invoke("import", outputs, "--out", tmp_path / "run").exit_code == 0
    with no_hang():
        result = invoke("emit", tmp_path / "run")
    assert f"cannot read source image {tmp_path / 'page.png'}: not a regular file (a FIFO)" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"images": {"total": 10**30, "ok": 0, "failed": 0}}, "images.total must be an integer from 0 to "),
        ({"images": {"total": 2, "ok": -5, "failed": 0}}, "images.ok must be an integer from 0 to "),
        ({"images": {"total": 2, "ok": 2, "failed": 1}}, "images: ok (2) + failed (1) must be at most total (2)"),
        ({"world_size": -3}, "world_size must be an integer from 1 to "),
    ],
)
def test_run_json_counts_no_run_can_have_are_refused_by_every_reader(run: Path, change: dict, error: str) -> None:
    payload = json.loads((run / "run.json").read_text(encoding="utf-8"))
    (run / "run.json").write_text(json.dumps({**payload, **change}), encoding="utf-8")
    for command in ("analyze", "emit", "report", "export-trace"):
        line = _one_error_line(invoke(command, run))
        assert line.startswith(f"Error: {run}/run.json: {error}"), (command, line)


def test_analyze_and_report_of_a_finished_run_without_predictions_is_one_line(run: Path) -> None:
    # The synthetic run keeps its rows as parts (an unfinished merge); a captured run as the one file.
    for rows in (run / "predictions.parquet", run / "predictions.parts"):
        if rows.is_dir():
            shutil.rmtree(rows)
        else:
            rows.unlink(missing_ok=True)
    for command in ("analyze", "report"):
        assert _one_error_line(invoke(command, run)) == (
            f"Error: {run}/predictions.parquet: missing, though run.json says the run finished 2 images: "
            "restore it, or capture the run again"
        )
