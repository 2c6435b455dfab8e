"""Start a capture as several processes through torchrun (torch-free: the parent only launches).

The parent validates the whole configuration first (see capture.preflight), so a bad option is
one ``Error:`` line from the parent, not one per rank and a launcher traceback.

Stopping: torchrun runs in its own session, so a Ctrl-C at the terminal reaches only this
parent. The parent then sends SIGTERM to the ranks themselves (not to torchrun, which would
answer with its own traceback); each rank keeps its finished images and exits quietly, and the
parent marks the run ``interrupted`` with the final counts and prints one line. torchrun gets
SIGTERM when this parent dies (even by SIGKILL), and the ranks when torchrun dies.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

from dsocr.capture.signals import exit_with_parent, stop_once_on_signals

from dsocr.errors import DsocrError
from dsocr.rundir import RUN_JSON, read_predictions, read_run_json, write_run_json
from dsocr.vocab import ImageStatus, RunStatus

LAUNCHER = "torch.distributed.run"
#: Set for the ranks a dsocr parent launched: the parent reports an interruption, so a rank that
#: was stopped exits with status 0 and prints nothing (torchrun would print a traceback otherwise).
LAUNCHED_ENV = "DSOCR_LAUNCHED_RANKS"


class LaunchInterrupted(DsocrError):
    """The user stopped a multi-process capture; finished images are kept."""


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc; empty elsewhere or once it is gone)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def _stop_ranks(launcher_pid: int) -> None:
    """SIGTERM to each rank; to torchrun itself while it has started none yet (it then stops them)."""
    for pid in _children(launcher_pid) or [launcher_pid]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue  # it ended on its own meanwhile


def _mark_interrupted(run_dir: Path) -> None:
    """Recount the finished images once every rank is gone (each rank wrote its last rows)."""
    if not (run_dir / RUN_JSON).is_file():
        return
    record = read_run_json(run_dir)
    if record.status is RunStatus.complete:
        return
    statuses = read_predictions(run_dir).column("status").to_pylist()
    ok = statuses.count(ImageStatus.ok)
    counts = dataclasses.replace(record.images, ok=ok, failed=len(statuses) - ok)
    write_run_json(run_dir, dataclasses.replace(record, status=RunStatus.interrupted, images=counts))


def launch(argv: list[str], processes: int, run_dir: Path) -> int:
    """Re-run this capture command under torchrun with ``processes`` ranks; return its exit status.

    Raises LaunchInterrupted after SIGINT or SIGTERM, once the ranks have saved what they finished.
    """
    command = [sys.executable, "-m", LAUNCHER, "--standalone", f"--nproc-per-node={processes}"]
    command += ["-m", "dsocr.cli", *argv]
    environment = {**os.environ, LAUNCHED_ENV: "1"}
    parent = os.getpid()
    with stop_once_on_signals():
        launcher = subprocess.Popen(
            command,
            env=environment,
            start_new_session=True,
            preexec_fn=lambda: exit_with_parent(signal.SIGTERM, parent_pid=parent),
        )
        try:
            return launcher.wait()
        except KeyboardInterrupt:
            _stop_ranks(launcher.pid)
            launcher.wait()  # further signals are ignored until the ranks have saved their rows
            _mark_interrupted(run_dir)
    raise LaunchInterrupted(f"interrupted; finished images are kept, continue with --resume --out {run_dir}")
