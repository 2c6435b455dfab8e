"""Torch-free checks of capture's ``--out`` and the lock one capture holds on its run.

The CLI runs these before importing torch, so a refusable ``--out`` costs well under a second;
the runner runs them again (library use) and holds the lock while it writes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dsocr.errors import RunDirError
from dsocr.rundir import (
    CAPTURE_LOG,
    PREDICTIONS_FILE,
    PREDICTIONS_PARTS_DIR,
    RUN_JSON,
    TRACE_DIR,
    inside_run,
)
from dsocr.runlock import run_lock

#: Held (flock) by the capture writing a run; stays in the run, empty of meaning once released.
CAPTURE_LOCK = ".capture.lock"
SAMPLES_DIR = "samples"
#: What capture writes or deletes in a run's root: each, and each file or folder in the folders
#: among them, is checked not to be a link leading out of the run.
_WRITTEN = (RUN_JSON, PREDICTIONS_FILE, PREDICTIONS_PARTS_DIR, TRACE_DIR, CAPTURE_LOG, SAMPLES_DIR)
_RANK_LOGS = "capture-rank*.log"


def check_out(run_dir: Path) -> None:
    """Refuse an ``--out`` that cannot become a run directory: a file, a path through a file, a
    folder this user cannot write. (A full or read-only disk shows at the first write.)"""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file, not a directory")
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"--out {run_dir}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {run_dir}: {existing} is not writable")
    if existing != run_dir:
        _probe_creatable(run_dir, existing)


def _probe_creatable(run_dir: Path, existing: Path) -> None:
    """Create the missing folders of ``run_dir`` and remove them again: only that tells, before the
    model loads, that a writable-looking place refuses folders (``/proc/x``, a read-only mount).

    Every rank of a ``--gpus N`` capture probes at once: a folder another rank made meanwhile
    proves the place takes folders, and one that another rank has filled meanwhile is its run, left
    in place."""
    created: list[Path] = []
    missing = [existing / folder for folder in reversed(run_dir.relative_to(existing).parents[:-1])]
    try:
        for folder in [*missing, run_dir]:
            try:
                folder.mkdir()
            except FileExistsError:
                if folder.is_dir():
                    continue
                raise
            created.append(folder)
    except OSError as exc:
        raise RunDirError(f"--out {run_dir}: cannot create it ({exc.strerror or exc})") from None
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):  # not empty: another rank's run is starting in it
                folder.rmdir()


def _written_paths(run_dir: Path) -> Iterator[Path]:
    """Every path capture may write or delete that is already there: the root's files and folders,
    and what the folders hold, two levels deep (trace/rank=N/*.parquet, trace/.pending/*.json)."""
    folders = []
    for path in [run_dir / name for name in _WRITTEN] + sorted(run_dir.glob(_RANK_LOGS)):
        yield path
        if path.is_dir() and not path.is_symlink():
            folders.append(path)
    for folder in folders:
        for child in folder.iterdir():
            yield child
            if child.is_dir() and not child.is_symlink():
                yield from child.iterdir()


def check_links(run_dir: Path) -> None:
    """Refuse (RunDirError) a link among capture's paths in ``run_dir`` that leads out of the run.

    Through ``predictions.parts -> /elsewhere`` a resumed capture would write its parts there and
    its final merge delete every ``*.parquet`` in it; a ``capture.log`` link would be appended
    to. A link that stays inside the run is followed, as analyze and emit do.
    """
    if not run_dir.is_dir():
        return
    for path in _written_paths(run_dir):
        if path.is_symlink():
            inside_run(run_dir, path)


def check_run_dir(run_dir: Path, *, resume: bool) -> bool:
    """Whether ``run_dir`` holds a run to continue; RunDirError when capture may not write there:
    not a folder, a link out of the run, a run without ``--resume``, ``--resume`` of no run, or a
    folder holding other files."""
    check_out(run_dir)
    check_links(run_dir)
    if (run_dir / RUN_JSON).is_file():
        if not resume:
            raise RunDirError(f"--out {run_dir} already holds a run: pass --resume to continue it, or another --out")
        return True
    if resume:
        what = "no such folder" if not run_dir.exists() else f"not a dsocr run (no {RUN_JSON})"
        raise RunDirError(f"--resume --out {run_dir}: {what}, nothing to continue; drop --resume to start a new run")
    if run_dir.is_dir() and any(child.name != CAPTURE_LOCK for child in run_dir.iterdir()):
        raise RunDirError(f"--out {run_dir} is not empty and holds no dsocr run")
    return False


@contextmanager
def capture_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s capture lock while the block runs: a second capture of the run (two
    ``--resume`` at once) is refused with one line naming the holder's pid."""
    with run_lock(run_dir, CAPTURE_LOCK, "capture", again="let it finish, or stop it, before capturing again"):
        yield
