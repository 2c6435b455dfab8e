"""Draw grounding boxes the way DeepSeek-OCR's own script does, deterministically.

Per box: a translucent fill, an opaque outline (thicker for headings such as ``title``) and the label on a
white tag above the box, in the label's colour. The vendor picks colours at random per box; here
each label has one fixed, high-contrast colour (so a reader learns them, and two renders are
byte-identical). Outlines are drawn outside the box, so they never cover the block's content,
and their width grows with the page so they stay visible on large scans.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

from dsocr.emit.grounding import Grounding
from dsocr.emit.options import RenderStyle
from PIL import Image, ImageDraw, ImageFont

from dsocr.families import DEEPSEEK_OCR2, FamilyFacts

RGB = tuple[int, int, int]
PixelBox = tuple[int, int, int, int]

TITLE_WIDTH_FACTOR = 2  # vendor: 4 px outlines for titles, 2 px for everything else
FILL_ALPHA = 20  # vendor's fill opacity, out of 255
# Automatic outline width: the vendor's 2 px suits a page about 1000 px across; a 4000 px scan
# needs 8 px to show at the same size on screen.
MIN_AUTO_LINE_WIDTH = 2
AUTO_LINE_WIDTH_PER_PX = 2 / 1000  # of the page's shorter side
# One colour per label, each at least 4.5:1 against white (WCAG AA for text), so outlines and
# tags read on any paper; the labels DeepSeek-OCR writes get distinct ones.
LABEL_COLOURS: dict[str, tuple[int, int, int]] = {
    "title": (200, 0, 0),
    "sub_title": (230, 0, 120),
    "text": (0, 70, 200),
    "image": (0, 130, 0),
    "image_caption": (140, 60, 0),
    "table": (110, 0, 170),
    "table_caption": (0, 110, 130),
    "equation": (180, 90, 0),
}
# Labels not in LABEL_COLOURS (other families, odd outputs) get one of these by a hash of the label.
OTHER_COLOURS: tuple[tuple[int, int, int], ...] = (
    (90, 90, 90),
    (0, 0, 120),
    (120, 0, 60),
    (60, 100, 0),
    *LABEL_COLOURS.values(),
)
TAG_FILL = (255, 255, 255)
TAG_PADDING_PX = 2
# Label size grows with the page so tags stay readable on large scans; never below the
# vendor's default-font size.
LABEL_FONT_MIN_PX = 15
LABEL_FONT_PAGE_FRACTION = 1 / 80
LABEL_MAX_CHARS = 40
# Blending costs time in proportion to the area filled. A sane page covers itself about once;
# a model stuck in a loop may stack a thousand full-page boxes (seconds of blending), so past
# this many page areas the remaining boxes get their outline only.
FILL_BUDGET_PAGES = 4
JPEG_FORMAT = "JPEG"


@dataclass(frozen=True)
class PlacedBox:
    """A box in pixels of the image it is drawn on, with its block's label, index and colour.

    ``emphasis``: drawn thicker (a heading label of the family); ``crop``: cut out as an image
    (a figure label of the family).
    """

    block: int
    label: str
    pixels: PixelBox
    colour: RGB
    emphasis: bool = False
    crop: bool = False


def label_colour(label: str) -> RGB:
    """The colour of every box labelled ``label``: fixed, identical on every run and page."""
    if label in LABEL_COLOURS:
        return LABEL_COLOURS[label]
    digest = hashlib.md5(label.encode("utf-8", "surrogatepass")).digest()
    return OTHER_COLOURS[int.from_bytes(digest[:4], "big") % len(OTHER_COLOURS)]


def place_boxes(grounding: Grounding, width: int, height: int, family: FamilyFacts = DEEPSEEK_OCR2) -> list[PlacedBox]:
    """Every kept box of ``grounding`` in pixels of a ``width`` x ``height`` image, in order;
    ``family`` says which labels are headings and which are figures."""
    return [
        PlacedBox(
            block.index,
            block.label,
            box.to_pixels(width, height, grounding.scale),
            label_colour(block.label),
            emphasis=block.label in family.emphasis_labels,
            crop=block.label in family.crop_labels,
        )
        for block in grounding.blocks
        for box in block.boxes
    ]


@functools.lru_cache(maxsize=8)
def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (loaded once per process and size)."""
    return ImageFont.load_default(size=size)


def label_font_size(width: int, height: int) -> int:
    """The label font size for a page of ``width`` x ``height``."""
    return max(LABEL_FONT_MIN_PX, round(min(width, height) * LABEL_FONT_PAGE_FRACTION))


def tag_text(label: str) -> str:
    """A label as drawn: first line only, printable characters, at most LABEL_MAX_CHARS."""
    first_line = label.splitlines()[0] if label else ""
    printable = "".join(char if char.isprintable() else "?" for char in first_line)
    return printable[:LABEL_MAX_CHARS]


def line_width(style: RenderStyle, width: int, height: int) -> int:
    """The outline width on a ``width`` x ``height`` page: the style's, or scaled with the page."""
    if style.line_width is not None:
        return style.line_width
    return max(MIN_AUTO_LINE_WIDTH, round(min(width, height) * AUTO_LINE_WIDTH_PER_PX))


def outline_width(box: PlacedBox, base: int) -> int:
    """Outline width of a box: TITLE_WIDTH_FACTOR times the page's ``base`` width for headings."""
    return base * TITLE_WIDTH_FACTOR if box.emphasis else base


def outline_rectangle(pixels: PixelBox, width: int, image_size: tuple[int, int]) -> PixelBox:
    """The rectangle whose ``width``-px outline lies just outside ``pixels`` (Pillow draws
    outlines inward), kept on the page: at a page edge the line falls inside the box instead."""
    x1, y1, x2, y2 = pixels
    last_x, last_y = image_size[0] - 1, image_size[1] - 1
    return (max(0, x1 - width), max(0, y1 - width), min(last_x, x2 + width), min(last_y, y2 + width))


def _area(pixels: PixelBox) -> int:
    x1, y1, x2, y2 = pixels
    return (x2 - x1) * (y2 - y1)


def draw_boxes(image: Image.Image, placed: list[PlacedBox], style: RenderStyle) -> int:
    """Draw ``placed`` onto the RGB ``image`` in place: fills, then outlines, then labels.

    Labels go last so that no other box's outline crosses them. Returns how many boxes got no
    fill because the fills already covered FILL_BUDGET_PAGES page areas.
    """
    # An "RGBA" draw on an RGB image blends each fill into the pixels it covers, which
    # costs only the box areas instead of a full-page overlay and composite.
    blend = ImageDraw.Draw(image, "RGBA")
    budget = FILL_BUDGET_PAGES * image.width * image.height
    unfilled = 0
    for box in placed:
        budget -= _area(box.pixels)
        if budget < 0:
            unfilled += 1
            continue
        blend.rectangle(box.pixels, fill=(*box.colour, FILL_ALPHA))
    draw = ImageDraw.Draw(image)
    base = line_width(style, *image.size)
    for box in placed:
        width = outline_width(box, base)
        draw.rectangle(outline_rectangle(box.pixels, width, image.size), outline=box.colour, width=width)
    if style.labels:
        _draw_labels(draw, placed, label_font(label_font_size(*image.size)), base)
    return unfilled


def _draw_labels(draw: ImageDraw.ImageDraw, placed: list[PlacedBox], font: ImageFont.ImageFont, base: int) -> None:
    for box in placed:
        text = tag_text(box.label)
        if not text:
            continue
        x1 = box.pixels[0]
        y1 = box.pixels[1] - outline_width(box, base)  # above the outline, which lies outside the box
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        # Above the box like the vendor's, but pushed down inside the page at the top edge.
        origin = (x1, max(0, y1 - bottom - TAG_PADDING_PX))
        draw.rectangle(
            (
                origin[0] + left - TAG_PADDING_PX,
                origin[1] + top - TAG_PADDING_PX,
                origin[0] + right + TAG_PADDING_PX,
                origin[1] + bottom + TAG_PADDING_PX,
            ),
            fill=TAG_FILL,
        )
        draw.text(origin, text, fill=box.colour, font=font)


def image_crops(image: Image.Image, placed: list[PlacedBox]) -> Iterator[tuple[int, Image.Image | None]]:
    """``(position, crop)`` for each figure box (``crop``, e.g. labelled ``image``), cut from ``image`` as it is now.

    ``position`` is the box's position in ``placed``; the crop is None for an empty box. One
    crop at a time: a page of a thousand full-page figures must not hold a thousand copies.
    """
    for position, box in enumerate(placed):
        if not box.crop:
            continue
        x1, y1, x2, y2 = box.pixels
        yield position, (image.crop(box.pixels) if x2 > x1 and y2 > y1 else None)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """``image`` as JPEG bytes (deterministic for equal pixels and quality)."""
    buffer = io.BytesIO()
    image.save(buffer, JPEG_FORMAT, quality=quality)
    return buffer.getvalue()
