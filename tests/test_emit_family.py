"""emit dispatches on run.json model.family: grammar, coordinate scale and labels are the family's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dsocr.emit.family import parse_output
from emit_helpers import (
    GOLDEN_PIXEL_BOXES,
    GOLDEN_TEXT,
    draw_page,
    make_run,
    prediction_row,
    read_info,
    read_jsonl,
    run_cli,
    write_jsonl,
)

from dsocr.errors import BadInputError
from dsocr.families import (
    DEEPSEEK_OCR2,
    FamilyFacts,
    OutputGrammar,
    facts_for,
    family_names,
    register_facts,
    unregister_facts,
)

PAGE = (1000, 500)
# A grounding family of its own: coordinates 0..99, "heading" is its title, "figure" its image.
PERCENT_FAMILY = FamilyFacts(
    name="percent_grounding",
    model_types=("percent_vlm",),
    default_prompt="<img> Find the blocks.",
    image_placeholder="<img>",
    grammar=OutputGrammar.deepseek_grounding,
    coordinate_scale=99,
    eos_text="</s>",
    labels=("heading", "figure"),
    emphasis_labels=frozenset({"heading"}),
    crop_labels=frozenset({"figure"}),
)
PERCENT_TEXT = (
    "<|ref|>heading<|/ref|><|det|>[[0, 0, 99, 10]]<|/det|>\nA heading"
    "<|ref|>figure<|/ref|><|det|>[[10, 20, 50, 60]]<|/det|>"
    "<|ref|>image<|/ref|><|det|>[[60, 20, 120, 60]]<|/det|></s>ignored"
)
PLAIN_FAMILY = FamilyFacts(
    name="plain_captioner",
    model_types=("plain_vlm",),
    default_prompt="<image>",
    image_placeholder="<image>",
    grammar=OutputGrammar.plain,
    coordinate_scale=None,
    eos_text="</s>",
)


@pytest.fixture
def registered() -> Iterator[None]:
    register_facts(PERCENT_FAMILY)
    register_facts(PLAIN_FAMILY)
    yield
    unregister_facts(PERCENT_FAMILY.name)
    unregister_facts(PLAIN_FAMILY.name)


def test_a_family_with_its_own_scale_and_labels_is_drawn_by_them_in_worker_processes(
    tmp_path: Path, registered: None
) -> None:
    pages = [draw_page(tmp_path / f"p{index}.png", PAGE, shade=index) for index in range(2)]
    rows = [prediction_row(index, page, PERCENT_TEXT) for index, page in enumerate(pages)]
    run_dir = make_run(tmp_path / "run", rows, family=PERCENT_FAMILY.name)

    # Two workers: the family's facts travel with each job, the workers never look it up.
    result = run_cli("emit", run_dir, "--jobs", "2", "--crops")

    assert result.exit_code == 0, result.output
    for page in pages:
        info = read_info(run_dir, page)
        assert [box["label"] for box in info["boxes"]] == ["heading", "figure", "image"]
        # int(v / 99 * size): the family's scale, not DeepSeek's 999; 120 is clamped to 99.
        assert [box["box"] for box in info["boxes"]] == [[0, 0, 1000, 50], [101, 101, 505, 303], [606, 101, 1000, 303]]
        assert [box["crop"] for box in info["boxes"]] == [None, "images/0.jpg", None]
        assert info["text_clean"] == "A heading"
        assert info["warnings"] == [
            "7 characters after the end-of-sentence token ignored: 'ignored'",
            "box '60, 20, 120, 60' of 'image' is outside 0..99: clamped",
        ]


def test_heading_labels_of_the_family_get_the_thick_outline() -> None:
    from dsocr.emit.options import RenderStyle
    from dsocr.emit.render import outline_width, place_boxes

    placed = place_boxes(parse_output(PERCENT_TEXT, PERCENT_FAMILY), *PAGE, PERCENT_FAMILY)
    assert RenderStyle(line_width=3).line_width == 3
    assert [outline_width(box, 3) for box in placed] == [6, 3, 3]
    deepseek = place_boxes(parse_output(GOLDEN_TEXT, DEEPSEEK_OCR2), 1240, 1754, DEEPSEEK_OCR2)
    assert [outline_width(box, 3) for box in deepseek] == [6, 3, 3, 3, 3]
    assert [list(box.pixels) for box in deepseek] == GOLDEN_PIXEL_BOXES


def test_a_plain_text_family_gets_no_boxes_and_its_text_up_to_its_eos() -> None:
    grounding = parse_output("Two cats\n\n\n\non a mat.</s>", PLAIN_FAMILY)
    assert (grounding.blocks, grounding.text_clean, grounding.warnings) == ((), "Two cats\n\non a mat.", ())
    # Grounding markup means nothing to a plain family: it stays text.
    assert parse_output("<|ref|>x<|/ref|>", PLAIN_FAMILY).text_clean == "<|ref|>x<|/ref|>"


def test_an_unknown_family_is_one_error_line_and_nothing_is_written(tmp_path: Path) -> None:
    page = draw_page(tmp_path / "p.png")
    run_dir = make_run(tmp_path / "run", [prediction_row(0, page)], family="qwen_ocr")

    result = run_cli("emit", run_dir, "--jobs", "1")

    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {run_dir / 'run.json'} model.family: unknown model family 'qwen_ocr' (known: deepseek_ocr2)"
    )
    assert sorted(path.name for path in run_dir.iterdir()) == ["predictions.parquet", "run.json"]


def test_a_run_without_a_family_is_read_as_deepseek_ocr2_with_a_warning(tmp_path: Path) -> None:
    page = draw_page(tmp_path / "p.png", (1240, 1754))
    run_dir = make_run(tmp_path / "run", [prediction_row(0, page)], family=None)

    result = run_cli("emit", run_dir, "--jobs", "1")

    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"WARNING: {run_dir / 'run.json'} names no model.family (a run written before dsocr recorded it): "
        "its outputs are read as deepseek_ocr2\n"
    )
    assert [box["box"] for box in read_info(run_dir, page)["boxes"]] == GOLDEN_PIXEL_BOXES
    as_json = run_cli("emit", run_dir, "--jobs", "1", "--json", "--force")
    assert '"warnings": [\n    "' in as_json.stdout


def test_import_records_the_family_and_refuses_an_unknown_one(tmp_path: Path, registered: None) -> None:
    page = draw_page(tmp_path / "p.png")
    outputs = write_jsonl(tmp_path / "out.jsonl", [{"image": str(page), "text": "A caption.</s>"}])

    refused = run_cli("import", outputs, "--out", tmp_path / "bad", "--family", "nope")
    imported = run_cli("import", outputs, "--out", tmp_path / "run", "--family", PLAIN_FAMILY.name)
    emitted = run_cli("emit", tmp_path / "run", "--jobs", "1")

    assert refused.exit_code == 1
    assert refused.output.strip() == (
        f"Error: --family: unknown model family 'nope' (known: {', '.join(family_names())})"
    )
    assert not (tmp_path / "bad").exists()
    assert imported.exit_code == 0, imported.output
    assert emitted.exit_code == 0, emitted.output
    (record,) = read_jsonl(tmp_path / "run" / "predictions.jsonl")
    assert (record["text_clean"], record["boxes"]) == ("A caption.", 0)


def test_family_facts_are_checked_when_declared_and_looked_up() -> None:
    with pytest.raises(ValueError, match="a coordinate_scale exactly when the grammar has boxes"):
        FamilyFacts("x", ("x",), "<image>", "<image>", OutputGrammar.plain, coordinate_scale=999)
    with pytest.raises(ValueError, match="model_types is empty"):
        FamilyFacts("x", (), "<image>", "<image>", OutputGrammar.plain, coordinate_scale=None)
    assert facts_for("deepseek_ocr2", where="w") is DEEPSEEK_OCR2
    for bad in (None, ["deepseek_ocr2"], 3):
        with pytest.raises(Exception, match=r"^w: unknown model family .* \(known: deepseek_ocr2\)$"):
            facts_for(bad, where="w")
    with pytest.raises(ValueError, match="built in"):
        unregister_facts(DEEPSEEK_OCR2.name)


def test_a_prompt_must_hold_its_own_familys_image_placeholder() -> None:
    PERCENT_FAMILY.check_prompt("<img> Where is the title?")
    with pytest.raises(BadInputError) as raised:
        PERCENT_FAMILY.check_prompt("<image> Where is the title?")
    assert str(raised.value) == "--prompt must contain the <img> placeholder, got '<image> Where is the title?'"
