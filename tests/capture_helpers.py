"""Helpers for capture tests: invoke the real CLI in-process."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr._app import app


def run_capture(*args: str | Path) -> Result:
    """`dsocr capture ARGS...` through the real CLI; returns the click Result."""
    return CliRunner().invoke(app, ["capture", *map(str, args)])
