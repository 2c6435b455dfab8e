"""Runs a sweep's captures, each ``dsocr capture`` in its own process, and records how each ended.

A process per run: every variant loads its model, allocates and compiles in a fresh process,
as a user's own run would, and no variant inherits another's warm caches (cuDNN plans, compiled
graphs, the allocator's pool). sweep.json is rewritten after every run, so a sweep cut short
keeps what ran; ``--resume`` runs the rest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dsocr.sweep_plan import STATUS_FAILED, STATUS_OK, PlannedRun, SweepManifest, write_manifest

ERROR_PREFIX = "Error: "


def capture_argv(manifest: SweepManifest, run: PlannedRun, sweep_dir: Path) -> list[str]:
    """The capture command of one run: the sweep's pages and passed options, the variant's options."""
    variant = manifest.variant(run.variant)
    return [
        "capture",
        *manifest.images,
        *manifest.capture_args,
        *variant.flags(),
        "--profile",
        manifest.profile,
        "--out",
        str(sweep_dir / run.run_dir),
    ]


def _reason(log: Path, exit_code: int) -> str:
    """The capture's own ``Error:`` line (the last), else its exit status and where its log is."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [line[len(ERROR_PREFIX) :] for line in lines if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1]
    return f"capture exited with status {exit_code}; see {log}"


def _run_one(argv: list[str], log: Path) -> int:
    # -P: the working directory does not go on sys.path, so a checkout's dsocr/ folder cannot
    # shadow the installed package when a sweep starts from the repository root.
    command = [sys.executable, "-P", "-m", "dsocr.cli", *argv]
    with log.open("w", encoding="utf-8") as handle:
        handle.write(f"$ dsocr {' '.join(argv)}\n")
        handle.flush()
        return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False).returncode


def run_sweep(
    sweep_dir: Path,
    manifest: SweepManifest,
    *,
    on_run: Callable[[PlannedRun], None] | None = None,
) -> SweepManifest:
    """Run every run of ``manifest`` not yet ``ok``, in order; a failed run is recorded with its
    reason and the sweep goes on. ``on_run`` is called after each run."""
    for run in manifest.runs:
        if run.status == STATUS_OK:
            continue
        out = sweep_dir / run.run_dir
        if out.exists():
            # Left by a run that failed or was cut short: its figures would mix two processes.
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        log = out.with_suffix(out.suffix + ".log")
        started = time.perf_counter()
        exit_code = _run_one(capture_argv(manifest, run, sweep_dir), log)
        run.seconds = time.perf_counter() - started
        run.exit_code = exit_code
        run.status = STATUS_OK if exit_code == 0 else STATUS_FAILED
        run.reason = None if exit_code == 0 else _reason(log, exit_code)
        write_manifest(sweep_dir, manifest)
        if on_run is not None:
            on_run(run)
    return manifest
