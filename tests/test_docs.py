"""Docs that cannot go stale: every capture option is documented, README's commands are real."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

import dsocr.cli  # noqa: F401
from dsocr import schema
from dsocr._app import app

ROOT = Path(__file__).resolve().parents[1]


def _options(command: str) -> set[str]:
    help_text = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text)) - {"--help"}


def test_every_capture_option_is_documented() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(option for option in _options("capture") if f"`{option}" not in documented)
    assert missing == []


def test_every_predictions_and_trace_column_is_documented() -> None:
    documented = (ROOT / "docs" / "run-format.md").read_text()
    for table in (schema.PREDICTIONS, schema.TRACE):
        missing = [name for name in table.names if f"`{name}`" not in documented]
        assert missing == [], missing


def test_readme_starts_with_the_demo_and_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    assert "dsocr capture" in blocks[0] and "torch==2.13.0" in blocks[0]
    assert "pytest" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci
