"""One writer per run directory and command: an exclusive ``flock`` on a lock file in the run.

emit holds ``RUN/.emit.lock`` and capture ``RUN/.capture.lock`` while they write. The kernel
drops a lock when its holder exits, however it exits (SIGKILL included), so a killed writer
never blocks the next one. The lock file is opened without following a link: a lock file that is
a link (to a file outside the run) is refused, never written through.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dsocr.errors import RunDirError
from dsocr.rundir import FILE_MODE

#: What O_NOFOLLOW on a link raises: ELOOP on Linux, EMLINK on the BSDs.
_LINK_ERRNOS = (errno.ELOOP, errno.EMLINK)
#: Enough bytes for any pid and its newline.
_PID_BYTES = 32


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def lock_holder(fd: int) -> str:
    """`` (pid N)`` as the lock's holder wrote it into the lock file; empty when unknown."""
    try:
        text = os.pread(fd, _PID_BYTES, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f" (pid {text})" if text.isdigit() else ""


@contextmanager
def run_lock(run_dir: Path, lock_name: str, command: str, *, again: str) -> Iterator[None]:
    """Hold ``run_dir/lock_name`` exclusively while the block runs; RunDirError when another
    process holds it: ``RUN: another dsocr COMMAND (pid N) is writing this run; AGAIN``."""
    path = run_dir / lock_name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise RunDirError(f"{path} is a symbolic link: {command} never writes through a link") from None
        raise RunDirError(f"{run_dir}: cannot write in the run directory ({_reason(exc)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(
                f"{run_dir}: another dsocr {command}{lock_holder(fd)} is writing this run; {again}"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:  # a full disk shows here first: name the file, as every write error does
            raise RunDirError(f"{path}: cannot write ({_reason(exc)})") from None
        yield
    finally:
        os.close(fd)
