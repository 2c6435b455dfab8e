"""The DeepSeek-OCR output parser: golden outputs, malformed outputs, random and adversarial strings."""

from __future__ import annotations

import pytest
from dsocr.emit._warnings import MAX_WARNINGS
from dsocr.emit.boxes import NORM_MAX, NormBox
from dsocr.emit.grounding import MAX_BOXES, parse_grounding
from emit_helpers import EOS, GOLDEN_CLEAN, GOLDEN_LABELS, GOLDEN_NORM_BOXES, GOLDEN_PIXEL_BOXES, GOLDEN_TEXT
from hypothesis import given, settings
from hypothesis import strategies as st


def _boxes(text: str) -> list[list[int | float]]:
    return [box.as_list() for block in parse_grounding(text).blocks for box in block.boxes]


def test_golden_output_parses_to_its_blocks_boxes_and_clean_text() -> None:
    grounding = parse_grounding(GOLDEN_TEXT)

    assert [block.label for block in grounding.blocks for _ in block.boxes] == GOLDEN_LABELS
    assert _boxes(GOLDEN_TEXT) == GOLDEN_NORM_BOXES
    assert [block.text for block in grounding.blocks] == [
        "# 1. Optical compression",
        "DeepSeek-OCR compresse une page — 光学压缩.",
        "",
        "<center>Figure 1</center>",
    ]
    assert grounding.text_clean == GOLDEN_CLEAN
    assert grounding.warnings == ()


def test_vendor_pixel_formula_on_the_original_image_size() -> None:
    pixels = [NormBox(*box).to_pixels(1240, 1754) for box in GOLDEN_NORM_BOXES]

    assert [list(box) for box in pixels] == GOLDEN_PIXEL_BOXES
    assert NormBox(0, 0, NORM_MAX, NORM_MAX).to_pixels(1240, 1754) == (0, 0, 1240, 1754)


def test_special_tokens_are_removed_from_clean_text_but_look_alikes_stay() -> None:
    text = "<\uff5cbegin\u2581of\u2581sentence\uff5c><image>\n<|grounding|>Price <| 5 and a<b>c</b>" + EOS

    assert parse_grounding(text).text_clean == "Price <| 5 and a<b>c</b>"


@pytest.mark.parametrize(
    ("text", "boxes", "warning"),
    [
        # A run cut by max_new_tokens in the middle of a box list: complete boxes are kept.
        ("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4], [5, 6, 7", [[1, 2, 3, 4]], "unclosed <|det|>"),
        ("<|ref|>text<|/ref|><|det|>[[1, 2, 3, nan]]<|/det|>x", [], "non-numeric or non-finite"),
        ("<|ref|>text<|/ref|><|det|>[[1, 2, 3, inf]]<|/det|>x", [], "non-numeric or non-finite"),
        ("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 1e999]]<|/det|>x", [], "non-numeric or non-finite"),
        ("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 1_0]]<|/det|>x", [], "non-numeric or non-finite"),
        ("<|ref|>text<|/ref|><|det|>[[a, 2, 3, 4]]<|/det|>x", [], "non-numeric or non-finite"),
        ("<|ref|>text<|/ref|><|det|>[[1, 2, 3]]<|/det|>x", [], "has 3 values, not 4"),
        ("<|ref|>text<|/ref|><|det|>[[500, 2, 100, 4]]<|/det|>x", [], "x2 < x1 or y2 < y1"),
        ("<|ref|>text<|/ref|><|det|>[[-5, 2, 1200, 4]]<|/det|>x", [[0, 2, 999, 4]], "outside 0..999: clamped"),
        ("<|ref|>text<|/ref|><|det|>[[1.5, 2, 3.25, 4]]<|/det|>x", [[1.5, 2, 3.25, 4]], None),
        ("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]] junk<|/det|>x", [[1, 2, 3, 4]], "text outside boxes"),
        ("<|ref|>text<|/ref|><|det|>nothing<|/det|>x", [], "holds no box"),
        ("<|ref|><|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>x", [[1, 2, 3, 4]], "empty label"),
        ("<|det|>[[1, 2, 3, 4]]<|/det|>x", [[1, 2, 3, 4]], "<|det|> without <|ref|>"),
        ("<|ref|>text<|/ref|>no det here", [], "is not followed by <|det|>"),
        ("<|ref|>text<|/ref|>", [], "ends the output without <|det|>"),
        ("intro <|ref|>text", [], "unclosed <|ref|>"),
        ("<|ref|>a<|ref|>b<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>", [[1, 2, 3, 4]], "not closed before the next"),
        ("<|ref|>a<|det|>[[1, 2, 3, 4]]<|/det|>", [[1, 2, 3, 4]], "not closed before <|det|>"),
        ("a<|/det|>b<|/ref|>c", [], "stray <|/det|> ignored"),
        (
            "<|ref|>t<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>ok" + EOS + "<|ref|>t<|/ref|><|det|>[[5, 6, 7, 8]]",
            [[1, 2, 3, 4]],
            "after the end-of-sentence",
        ),
    ],
)
def test_malformed_output_keeps_good_boxes_and_says_what_it_dropped(
    text: str, boxes: list[list[int | float]], warning: str | None
) -> None:
    grounding = parse_grounding(text)

    assert _boxes(text) == boxes
    if warning is None:
        assert grounding.warnings == ()
    else:
        assert any(warning in message for message in grounding.warnings), grounding.warnings


def test_unclosed_det_gives_back_the_text_after_the_box_list() -> None:
    grounding = parse_grounding("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]\nHello<|ref|>x")

    assert grounding.blocks[0].text == "Hello"
    assert grounding.text_clean == "Hello"


def test_thousands_of_boxes_are_capped_and_warnings_are_bounded() -> None:
    many = ", ".join("[1, 2, 3, 4]" for _ in range(3 * MAX_BOXES))
    bad = ", ".join("[9, 9, 1, 1]" for _ in range(100))
    grounding = parse_grounding(f"<|ref|>a<|/ref|><|det|>[{bad}, {many}]<|/det|>")

    assert grounding.box_count == MAX_BOXES
    assert len(grounding.warnings) == MAX_WARNINGS + 1
    assert grounding.warnings[-1] == "... and 81 more warnings"


# Fragments that, shuffled, make adversarial outputs: tags in any order, broken lists, EOS.
_FRAGMENTS = st.sampled_from(
    [
        "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>", "<image>", EOS,
        "[", "]", "[[", "]]", ",", ", ", "0", "999", "1000", "-3", "12.5", "nan", "inf", "1e400",
        "title", "image", "text", " ", "\n", "\n\n\n", "<", "|", "｜", "é", "光",
    ]
)  # fmt: skip
_ADVERSARIAL = st.one_of(st.text(max_size=300), st.lists(_FRAGMENTS, max_size=120).map("".join))


@settings(max_examples=300, deadline=None)
@given(_ADVERSARIAL)
def test_any_string_parses_without_error_into_valid_boxes(text: str) -> None:
    grounding = parse_grounding(text)

    for block in grounding.blocks:
        for box in block.boxes:
            assert 0 <= box.x1 <= box.x2 <= NORM_MAX
            assert 0 <= box.y1 <= box.y2 <= NORM_MAX
    assert grounding.box_count <= MAX_BOXES
    assert len(grounding.warnings) <= MAX_WARNINGS + 1
    for tag in ("<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", EOS):
        assert tag not in grounding.text_clean
    assert parse_grounding(text) == grounding


_LABELS = st.text(st.characters(blacklist_characters="<>|｜[]", blacklist_categories=("Cs",)), min_size=1, max_size=12)
_PROSE = st.text(st.characters(blacklist_characters="<>｜", blacklist_categories=("Cs",)), max_size=40)
_COORD = st.integers(0, NORM_MAX)
_BOX = st.tuples(_COORD, _COORD, _COORD, _COORD).map(
    lambda b: [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
)
_BLOCKS = st.lists(
    st.tuples(_LABELS.map(str.strip).filter(bool), st.lists(_BOX, min_size=1, max_size=4), _PROSE), max_size=8
)


@settings(max_examples=200, deadline=None)
@given(_BLOCKS)
def test_well_formed_output_round_trips_exactly(blocks: list[tuple[str, list[list[int]], str]]) -> None:
    text = "".join(
        f"<|ref|>{label}<|/ref|><|det|>[{', '.join(str(box) for box in boxes)}]<|/det|>\n{prose}\n"
        for label, boxes, prose in blocks
    )
    grounding = parse_grounding(text + EOS)

    assert grounding.warnings == ()
    assert [(block.label, [box.as_list() for box in block.boxes], block.text) for block in grounding.blocks] == [
        (label, boxes, prose.strip()) for label, boxes, prose in blocks
    ]
