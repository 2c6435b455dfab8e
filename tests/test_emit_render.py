"""Drawing: vendor-style fill, outline and label tag, deterministic colours."""

from __future__ import annotations

from dsocr.emit.grounding import parse_grounding
from dsocr.emit.options import RenderStyle
from dsocr.emit.render import (
    COLOUR_LIMITS,
    FILL_ALPHA,
    FILL_BUDGET_PAGES,
    block_colour,
    draw_boxes,
    encode_jpeg,
    place_boxes,
    tag_text,
)
from PIL import Image

WHITE = (255, 255, 255)
SIZE = (1000, 1000)  # 999 normalized units span it almost one to one


def _render(text: str, style: RenderStyle) -> Image.Image:
    image = Image.new("RGB", SIZE, WHITE)
    draw_boxes(image, place_boxes(parse_grounding(text), *SIZE), style)
    return image


def _blend(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """White under the translucent fill of ``colour``, as Pillow blends it (to within rounding)."""
    return tuple(round(255 + (channel - 255) * FILL_ALPHA / 255) for channel in colour)  # type: ignore[return-value]


def test_colours_are_deterministic_per_label_and_block_and_within_vendor_ranges() -> None:
    colours = {block_colour(label, index) for label in ("title", "text", "image") for index in range(20)}

    assert block_colour("text", 3) == block_colour("text", 3)
    assert len(colours) > 50  # distinct blocks get distinct colours almost always
    assert all(channel < limit for colour in colours for channel, limit in zip(colour, COLOUR_LIMITS, strict=True))


def test_box_has_opaque_outline_translucent_fill_and_untouched_outside() -> None:
    image = _render("<|ref|>text<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>", RenderStyle(labels=False))
    colour = block_colour("text", 0)
    x1, y1, x2, y2 = (int(v / 999 * 1000) for v in (100, 500, 600, 800))

    assert image.getpixel((x1, (y1 + y2) // 2)) == colour
    assert image.getpixel((x1 + 1, (y1 + y2) // 2)) == colour  # default width 2
    assert image.getpixel((x1 + 2, (y1 + y2) // 2)) != colour
    inside = image.getpixel(((x1 + x2) // 2, (y1 + y2) // 2))
    assert all(abs(a - b) <= 1 for a, b in zip(inside, _blend(colour), strict=True)), (inside, _blend(colour))
    assert image.getpixel((x2 + 5, y2 + 5)) == WHITE


def test_titles_get_twice_the_line_width() -> None:
    style = RenderStyle(line_width=3, labels=False)
    title = _render("<|ref|>title<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>", style)
    text = _render("<|ref|>text<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>", style)
    x1, middle = 100, 650

    assert title.getpixel((x1 + 5, middle)) == block_colour("title", 0)
    assert title.getpixel((x1 + 6, middle)) != block_colour("title", 0)
    assert text.getpixel((x1 + 2, middle)) == block_colour("text", 0)
    assert text.getpixel((x1 + 3, middle)) != block_colour("text", 0)


def test_label_tag_is_drawn_above_the_box_unless_labels_are_off() -> None:
    text = "<|ref|>sub_title<|/ref|><|det|>[[100, 500, 600, 800]]<|/det|>"
    above_box = (100, 470, 300, 499)

    with_label = _render(text, RenderStyle()).crop(above_box)
    without = _render(text, RenderStyle(labels=False)).crop(above_box)

    assert block_colour("sub_title", 0) in {colour for _, colour in with_label.getcolors(maxcolors=100_000)}
    assert without.getcolors() == [(200 * 29, WHITE)]


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
