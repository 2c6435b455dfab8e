"""What emit checks before it writes: one emit per run at a time, no link out of the run, a
writable viz root. Each failure is one DsocrError line; nothing has been written by then."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dsocr.errors import RunDirError
from dsocr.rundir import FILE_MODE, PREDICTIONS_JSONL
from dsocr.tempnames import temp_final_name

#: Held (flock) by the emit writing a run; stays in the run, empty of meaning once released.
LOCK_FILE = ".emit.lock"
_LINK_ERRNOS = (errno.ELOOP, errno.EMLINK)  # O_NOFOLLOW on a link: Linux ELOOP, BSDs EMLINK


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _holder(fd: int) -> str:
    """The pid the lock's holder wrote into the lock file, for the error line."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f" (pid {text})" if text.isdigit() else ""


@contextmanager
def emit_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's emit lock while the block runs; a second emit of the run is refused.

    Two emits with different options writing the same folders would leave a JPEG of one beside
    the info.json of the other; refusing is clearer than waiting. The kernel drops the lock when
    the holder dies, however it dies, so a killed emit never blocks the next one.
    """
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise RunDirError(f"{path} is a symbolic link: emit never writes through a link") from None
        raise RunDirError(f"{run_dir}: cannot write in the run directory ({_reason(exc)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(
                f"{run_dir}: another dsocr emit{_holder(fd)} is writing this run; run emit again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def clear_run_temps(run_dir: Path) -> None:
    """Remove predictions.jsonl temp files a killed emit left in the run (lock held)."""
    for child in run_dir.iterdir():
        if temp_final_name(child.name) == PREDICTIONS_JSONL and child.is_file():
            child.unlink(missing_ok=True)


def check_viz_root(run_dir: Path, viz_dir: Path) -> None:
    """Refuse a viz root reached through a symbolic link inside the run (``viz`` -> elsewhere).

    A ``--viz-dir`` that is absolute or climbs out with ``..`` is outside the run by the user's
    own choice and is taken as given.
    """
    if viz_dir.is_absolute() or ".." in viz_dir.parts:
        return
    path = run_dir
    for part in viz_dir.parts:
        path = path / part
        if path.is_symlink():
            raise RunDirError(
                f"{path} is a symbolic link: emit never writes through a link out of the run directory "
                "(remove the link, or name the folder with --viz-dir)"
            )


def check_writable(viz_root: Path) -> None:
    """Create the viz root if needed and prove that files can be created in it."""
    try:
        viz_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=viz_root):
            pass
    except OSError as exc:
        raise RunDirError(f"{viz_root}: cannot write image folders there ({_reason(exc)})") from None
