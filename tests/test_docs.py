"""Docs that cannot go stale: options, README commands, and docs/run-format.md against the real
artifacts: every Parquet schema column with its type, and the keys of every JSON file."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from capture_helpers import run_capture
from emit_helpers import draw_page, make_run, prediction_row, read_jsonl, run_cli, viz_folder
from typer.testing import CliRunner

import dsocr.cli  # noqa: F401
from dsocr import rundir, schema
from dsocr._app import app

ROOT = Path(__file__).resolve().parents[1]
RUN_FORMAT = (ROOT / "docs" / "run-format.md").read_text(encoding="utf-8")
#: The heading of the doc section whose table documents each Parquet schema of dsocr/schema.py.
SCHEMA_SECTIONS = {
    "predictions": "## predictions.parquet",
    "trace": "## trace/",
    "timings": "### analysis/timings.parquet",
    "kernels": "### analysis/kernels.parquet",
    "roofline": "### analysis/roofline.parquet",
    "steps": "### analysis/steps.parquet",
}
# A table cell boundary: a pipe not escaped as \|.
_CELL = re.compile(r"(?<!\\)\|")
_CODE = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _options(command: str) -> set[str]:
    help_text = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text)) - {"--help"}


def _section(heading: str) -> str:
    """The text under the first heading line that starts with ``heading``, up to the next heading
    of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    lines = RUN_FORMAT.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(heading))
    end = next(
        (
            index
            for index in range(start + 1, len(lines))
            if lines[index].startswith("#") and len(lines[index].split(" ", 1)[0]) <= len(level)
        ),
        len(lines),
    )
    return "\n".join(lines[start + 1 : end])


def _table(heading: str) -> dict[str, list[str]]:
    """The first table of a section: each name of a row's first cell -> the row's other cells."""
    lines = _section(heading).splitlines()
    start = next((index for index, line in enumerate(lines) if line.startswith("|")), len(lines))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    assert len(rows) > 2, f"no table under {heading}"
    table: dict[str, list[str]] = {}
    for row in rows[2:]:  # header and separator
        cells = [cell.strip() for cell in _CELL.split(row.strip())[1:-1]]
        for name in cells[0].split(","):
            table[name.strip().strip("`")] = cells[1:]
    return table


def _doc_type(arrow: pa.DataType) -> str:
    """An Arrow type as docs/run-format.md spells it."""
    if pa.types.is_dictionary(arrow):
        return f"dictionary<{_doc_type(arrow.value_type)}>"
    if pa.types.is_list(arrow):
        return f"list<{_doc_type(arrow.value_type)}>"
    return {pa.float64(): "float64", pa.string(): "string"}.get(arrow, str(arrow))


def _keys(value: Any) -> set[str]:
    """Every object key in a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in _keys(item)}
    return set()


def _named_in(*headings: str) -> set[str]:
    """Every name inside `code` of some doc sections (how prose lists nested keys, `{median, p90}` too)."""
    code = [span for heading in headings for span in _CODE.findall(_section(heading))]
    return {name for span in code for name in _NAME.findall(span)}


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    """A real capture (embedded model, every step traced), analyzed."""
    run_dir = tmp_path_factory.mktemp("docs") / "run"
    result = run_capture(sample_pages[0], "--out", run_dir, "--max-new-tokens", "3", "--profile", "full")
    assert result.exit_code == 0, result.output
    assert run_cli("analyze", run_dir).exit_code == 0
    return run_dir


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run whose output has boxes of every kind, emitted with every optional artifact."""
    folder = tmp_path_factory.mktemp("emitted")
    page = draw_page(folder / "page.png")
    run_dir = make_run(folder / "run", [prediction_row(0, page)])
    result = run_cli("emit", run_dir, "--crops", "--markdown", "--jobs", "1")
    assert result.exit_code == 0, result.output
    return run_dir, page


def test_every_capture_option_is_documented() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(option for option in _options("capture") if f"`{option}" not in documented)
    assert missing == []


@pytest.mark.parametrize("name", sorted(schema.SCHEMAS))
def test_every_parquet_column_is_documented_with_its_type(name: str) -> None:
    assert set(SCHEMA_SECTIONS) == set(schema.SCHEMAS)  # a new schema needs its doc section here
    documented = {column: cells[0].strip("`") for column, cells in _table(SCHEMA_SECTIONS[name]).items()}
    declared = {field.name: _doc_type(field.type) for field in schema.SCHEMAS[name]}
    assert documented == declared


def test_run_json_keys_are_documented(captured: Path) -> None:
    record = rundir.read_run_json(captured).to_json()
    assert set(_table("## run.json")) == set(record)
    assert set(_table("### run.json: `model`")) == set(record["model"])


def test_summary_json_parts_and_their_keys_are_documented(captured: Path) -> None:
    from dsocr.analyze.summary import METRICS

    summary = json.loads((captured / rundir.ANALYSIS_DIR / "summary.json").read_text())
    parts = list(_table("### analysis/summary.json"))
    assert parts == list(summary) == [name for name, _ in METRICS]
    nested = _keys(summary) - set(summary)
    sections = ("### analysis/summary.json", "### summary.json: `ranks`", "### summary.json: `roofline` and `findings`")
    assert nested - _named_in(*sections) == set()


def test_the_glossary_table_is_the_code_s_glossary() -> None:
    from dsocr.figures import GLOSSARY

    documented = {name: cells[0] for name, cells in _table("### Glossary").items()}
    assert documented == GLOSSARY


def test_info_json_and_predictions_jsonl_keys_are_documented(emitted: tuple[Path, Path]) -> None:
    run_dir, page = emitted
    info = json.loads((viz_folder(run_dir, page) / "info.json").read_text(encoding="utf-8"))
    assert info["boxes"] and any(box["crop"] for box in info["boxes"])  # every kind of entry is there
    assert set(_table("### info.json")) == set(info)
    assert _keys(info) - set(info) - _named_in("### info.json") == set()
    line = read_jsonl(run_dir / rundir.PREDICTIONS_JSONL)[0]
    assert set(_table("### predictions.jsonl")) == set(line)
    assert _keys(line) - set(line) - _named_in("### info.json", "### predictions.jsonl") == set()


def test_every_image_folder_artifact_is_documented_with_its_option(emitted: tuple[Path, Path]) -> None:
    from dsocr.emit.artifacts import ARTIFACTS

    documented = _table("## viz/<md5>/info.json")
    for artifact in ARTIFACTS:
        shown = f"{artifact.name}/<N>.jpg" if artifact.files is not None else artifact.name
        option = "always" if artifact.option is None else f"`--{artifact.option.replace('_', '-')}`"
        assert documented[shown][0] == option, artifact
    run_dir, page = emitted
    written = {path.name for path in viz_folder(run_dir, page).iterdir()}
    assert written == {artifact.name for artifact in ARTIFACTS}  # everything was asked for


def test_readme_starts_with_the_demo_and_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    assert "dsocr capture" in blocks[0] and "torch==2.13.0" in blocks[0]
    assert "pytest" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci
    # The fast loop skips the slow tests; CI runs them all.
    assert '-m "not slow"' in (ROOT / "justfile").read_text() and "not slow" not in ci
