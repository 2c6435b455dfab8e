"""Helpers for capture tests: invoke the real CLI in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner, Result

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr._app import app

#: The fastest model (random weights, tiny widths). Tests use it unless they name a model, so they
#: stay on it whatever the embedded default becomes (a trained layout model: docs/layout-model.md).
FAST_MODEL = ("--model", "embedded:tiny-deepseek-ocr2")
#: The same, for a ``CaptureConfig(model=...)`` in tests that capture in-process.
FAST_MODEL_PATH = Path(FAST_MODEL[1])


def with_fast_model(args: list[str]) -> list[str]:
    """``args`` of a capture, with FAST_MODEL unless they name a model or resume a run (recorded model)."""
    if "--model" in args or "--resume" in args:
        return args
    return [*args, *FAST_MODEL]


def run_capture(*args: str | Path) -> Result:
    """`dsocr capture ARGS...` (on FAST_MODEL unless ARGS name one) through the real CLI."""
    return CliRunner().invoke(app, ["capture", *with_fast_model(list(map(str, args)))])


def run_capture_process(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`dsocr capture ARGS...` in a process of its own, as a user runs it: GPU tests use it because
    Kineto's CUPTI settings (``TEARDOWN_CUPTI``, set per profile mode) are process-wide state that
    one capture would leave to the next in a shared test process. ``cwd`` must not be the
    repository root, whose ``dsocr/`` folder would shadow the installed package."""
    command = [sys.executable, "-m", "dsocr.cli", "capture"]
    return subprocess.run(
        [*command, *with_fast_model(list(map(str, args)))], cwd=cwd, capture_output=True, text=True, check=False
    )
