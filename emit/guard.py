"""What emit checks before it writes: one emit per run at a time, no link out of the run, a
writable viz root. Each failure is one DsocrError line; nothing has been written by then."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dsocr.errors import RunDirError
from dsocr.rundir import PREDICTIONS_JSONL
from dsocr.runlock import run_lock
from dsocr.tempnames import temp_final_name

#: Held (flock) by the emit writing a run; stays in the run, empty of meaning once released.
LOCK_FILE = ".emit.lock"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextmanager
def emit_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's emit lock while the block runs; a second emit of the run is refused.

    Two emits with different options writing the same folders would leave a JPEG of one beside
    the info.json of the other; refusing is clearer than waiting (dsocr.runlock).
    """
    with run_lock(run_dir, LOCK_FILE, "emit", again="run emit again when it has finished"):
        yield


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
