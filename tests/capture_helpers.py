"""Helpers for capture tests: invoke the real CLI in-process."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr._app import app

#: The fastest model (random weights, tiny widths). Tests use it unless they name a model, so they
#: stay on it whatever the embedded default becomes (a trained layout model: docs/layout-model.md).
FAST_MODEL = ("--model", "embedded:tiny-deepseek-ocr2")


def with_fast_model(args: list[str]) -> list[str]:
    """``args`` of a capture, with FAST_MODEL unless they name a model or resume a run (recorded model)."""
    if "--model" in args or "--resume" in args:
        return args
    return [*args, *FAST_MODEL]


def run_capture(*args: str | Path) -> Result:
    """`dsocr capture ARGS...` (on FAST_MODEL unless ARGS name one) through the real CLI."""
    return CliRunner().invoke(app, ["capture", *with_fast_model(list(map(str, args)))])
