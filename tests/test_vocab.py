"""The shared vocabulary (dsocr/vocab.py): the range-name protocol, and docs that match the types."""

from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsocr import records, vocab
from dsocr.vocab import STAGES, RangeStage, Stage, parse_range_name, range_name

RUN_FORMAT = Path(__file__).resolve().parents[1] / "docs" / "run-format.md"


@pytest.mark.parametrize(
    ("stage", "step", "name"),
    [
        (RangeStage.prefill, None, "dsocr.prefill"),
        (RangeStage.vision, None, "dsocr.vision"),
        (RangeStage.decode, None, "dsocr.decode"),
        (RangeStage.decode_step, 12, "dsocr.decode_step#12"),
    ],
)
def test_range_names(stage: RangeStage, step: int | None, name: str) -> None:
    assert range_name(stage, step) == name
    assert parse_range_name(name) == (stage, step)


@given(st.sampled_from(list(RangeStage)), st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)))
def test_parsing_inverts_building(stage: RangeStage, step: int | None) -> None:
    assert parse_range_name(range_name(stage, step)) == (stage, step)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("aten::mm", (None, None)),
        ("dsocrx.prefill", (None, None)),
        ("ProfilerStep#3", (None, None)),
        ("dsocr.decode_step#", ("decode_step", None)),
        ("dsocr.decode_step#x1", ("decode_step", None)),
        ("dsocr.decode_step#²", ("decode_step", None)),  # a digit to str.isdigit, not to int()
        ("dsocr.future_stage", ("future_stage", None)),  # a newer capture's stage is kept as written
    ],
)
def test_parsing_other_names(name: str, parsed: tuple[str | None, int | None]) -> None:
    assert parse_range_name(name) == parsed


def test_stages_in_display_order() -> None:
    assert (Stage.vision, Stage.prefill_text, Stage.prefill, Stage.decode) == STAGES
    assert set(vocab.REFERENCE_STAGES) <= set(STAGES)


def _doc_section(heading: str) -> str:
    text = RUN_FORMAT.read_text(encoding="utf-8")
    start = text.index(f"{heading}\n")
    following = re.search(r"\n#{2,3} ", text[start + len(heading) :])
    return text[start : start + len(heading) + (following.start() if following else len(text))]


def _table_rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _enums() -> dict[str, type[enum.StrEnum]]:
    return {
        name: value
        for name, value in vars(vocab).items()
        if isinstance(value, type) and issubclass(value, enum.StrEnum) and value.__module__ == vocab.__name__
    }


def test_the_vocabulary_table_lists_every_enum_with_its_values() -> None:
    documented = {row[0]: _codes(row[1]) for row in _table_rows(_doc_section("## Vocabulary"))}
    assert documented == {name: [member.value for member in members] for name, members in _enums().items()}


def _documented_keys(heading: str) -> list[str]:
    return [key for row in _table_rows(_doc_section(heading)) for key in _codes(row[0])]


def test_the_run_json_table_lists_every_run_record_key() -> None:
    assert sorted(_documented_keys("## run.json")) == sorted(f.name for f in dataclasses.fields(records.RunRecord))


def test_the_model_table_lists_every_model_record_key() -> None:
    documented = _documented_keys("### run.json: `model`")
    assert documented == [field.name for field in dataclasses.fields(records.ModelRecord)]
