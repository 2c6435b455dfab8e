"""Drawing: vendor-style fill, an outline outside the box scaled with the page, one fixed colour per label."""

from __future__ import annotations

import pytest
from dsocr.emit.grounding import parse_grounding
from dsocr.emit.options import RenderStyle
from dsocr.emit.render import (
    FILL_ALPHA,
    FILL_BUDGET_PAGES,
    LABEL_COLOURS,
    draw_boxes,
    encode_jpeg,
    label_colour,
    line_width,
    place_boxes,
    tag_text,
)
from PIL import Image

from dsocr.errors import BadInputError
from dsocr.families import DEEPSEEK_OCR2

WHITE = (255, 255, 255)
SIZE = (1000, 1000)  # 999 normalized units span it almost one to one
WCAG_AA = 4.5


def _render(text: str, style: RenderStyle, size: tuple[int, int] = SIZE) -> Image.Image:
    image = Image.new("RGB", size, WHITE)
    draw_boxes(image, place_boxes(parse_grounding(text), *size), style)
    return image


def _blend(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """White under the translucent fill of ``colour``, as Pillow blends it (to within rounding)."""
    return tuple(round(255 + (channel - 255) * FILL_ALPHA / 255) for channel in colour)  # type: ignore[return-value]


def _contrast_with_white(colour: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of ``colour`` against white."""

    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in colour)
    return 1.05 / (0.2126 * red + 0.7152 * green + 0.0722 * blue + 0.05)


def test_each_label_has_one_fixed_high_contrast_colour() -> None:
    text = "".join(f"<|ref|>{label}<|/ref|><|det|>[[10, 10, 50, 50]]<|/det|>" for label in ["text", "title", "text"])
    placed = place_boxes(parse_grounding(text), *SIZE)
    known = [label_colour(label) for label in DEEPSEEK_OCR2.labels]
    others = [label_colour(f"odd label {number}") for number in range(50)]

    assert placed[0].colour == placed[2].colour == label_colour("text") != placed[1].colour
    assert len(set(known)) == len(known)  # the family's labels are told apart
    assert set(LABEL_COLOURS) >= set(DEEPSEEK_OCR2.labels)
    assert label_colour("odd label 7") == label_colour("odd label 7")
    assert min(_contrast_with_white(colour) for colour in known + others) >= WCAG_AA


def test_outline_lies_outside_the_box_and_the_inside_is_only_tinted() -> None:
    image = _render("<|ref|>text<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>", RenderStyle(labels=False))
    colour = label_colour("text")
    x1, y1, x2, y2 = (int(v / 999 * 1000) for v in (100, 500, 600, 800))
    middle = (y1 + y2) // 2

    assert image.getpixel((x1 - 1, middle)) == image.getpixel((x1 - 2, middle)) == colour  # 2 px on a 1000 px page
    assert image.getpixel((x1 - 3, middle)) == WHITE
    assert image.getpixel((x2 + 2, middle)) == colour and image.getpixel((x2 + 3, middle)) == WHITE
    for inside in ((x1, middle), ((x1 + x2) // 2, middle), (x2, middle)):  # the block's content is not covered
        tinted = image.getpixel(inside)
        assert all(abs(a - b) <= 1 for a, b in zip(tinted, _blend(colour), strict=True)), (inside, tinted)


def test_line_width_grows_with_the_page_unless_given() -> None:
    auto = RenderStyle()
    assert [line_width(auto, side, side) for side in (300, 1000, 1754, 4000)] == [2, 2, 4, 8]
    assert line_width(auto, 4000, 900) == 2  # the shorter side decides
    assert line_width(RenderStyle(line_width=5), 4000, 4000) == 5
    with pytest.raises(BadInputError, match=r"--line-width 0: must be 1\.\.64"):
        RenderStyle(line_width=0)

    large = _render("<|ref|>text<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>", auto, size=(4000, 4000))
    x1, middle = int(100 / 999 * 4000), int(650 / 999 * 4000)
    assert large.getpixel((x1 - 8, middle)) == label_colour("text")
    assert large.getpixel((x1 - 9, middle)) == WHITE


def test_titles_get_twice_the_line_width() -> None:
    style = RenderStyle(line_width=3, labels=False)
    title = _render("<|ref|>title<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>", style)
    text = _render("<|ref|>text<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>", style)
    x1, middle = 100, 650

    assert title.getpixel((x1 - 6, middle)) == label_colour("title")
    assert title.getpixel((x1 - 7, middle)) == WHITE
    assert text.getpixel((x1 - 3, middle)) == label_colour("text")
    assert text.getpixel((x1 - 4, middle)) == WHITE


def test_a_box_at_the_page_edge_keeps_its_outline_on_the_page() -> None:
    image = _render("<|ref|>text<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>", RenderStyle(labels=False))

    assert image.getpixel((0, 500)) == image.getpixel((999, 500)) == label_colour("text")


def test_label_tag_is_drawn_above_the_box_unless_labels_are_off() -> None:
    text = "<|ref|>sub_title<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>"
    above_box = (100, 460, 300, 497)  # above the 2 px outline

    with_label = _render(text, RenderStyle()).crop(above_box)
    without = _render(text, RenderStyle(labels=False)).crop(above_box)

    assert label_colour("sub_title") in {colour for _, colour in with_label.getcolors(maxcolors=100_000)}
    assert without.getcolors() == [(200 * 37, WHITE)]


def test_same_input_encodes_to_identical_bytes() -> None:
    text = "<|ref|>title<|/ref|><|det|>[[1, 2, 300, 40]]<|/det|><|ref|>text<|/ref|><|det|>[[1, 50, 900, 990]]<|/det|>"

    first = encode_jpeg(_render(text, RenderStyle()), quality=90)
    second = encode_jpeg(_render(text, RenderStyle()), quality=90)

    assert first == second


def test_odd_labels_are_drawn_without_error_and_long_ones_are_cut() -> None:
    labels = ["", "\x00\nsecond line", "光学", "😀" * 100, "x" * 10_000]
    text = "".join(f"<|ref|>{label}<|/ref|><|det|>[[10, 10, 500, 500]]<|/det|>" for label in labels)

    image = _render(text, RenderStyle())

    assert image.size == SIZE
    assert tag_text("x" * 10_000) == "x" * 40
    assert tag_text("\x00\nsecond line") == "?"


def test_fills_stop_after_covering_the_page_a_few_times() -> None:
    text = "<|ref|>a<|/ref|><|det|>[" + ", ".join("[0, 0, 999, 999]" for _ in range(10)) + "]<|/det|>"
    image = Image.new("RGB", SIZE, WHITE)

    unfilled = draw_boxes(image, place_boxes(parse_grounding(text), *SIZE), RenderStyle(labels=False))

    assert unfilled == 10 - FILL_BUDGET_PAGES
