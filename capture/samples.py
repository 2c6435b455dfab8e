"""Sample document pages the project draws itself, so the demo needs nothing from outside."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PAGE_SIZE = (1240, 1754)  # A4 at 150 dpi
MARGIN = 90
BODY_FONT_SIZE = 26
TITLE_FONT_SIZE = 54
LINE_SPACING = 12
INK = (20, 20, 20)
PAPER = (255, 255, 255)

#: One drawn block: its DeepSeek-OCR label and pixel box (x1, y1, x2, y2), for scoring a layout model.
Block = tuple[str, tuple[int, int, int, int]]

_PARAGRAPH = (
    "DeepSeek-OCR compresses a page into a few hundred vision tokens and decodes it back into "
    "markdown. This sample page is drawn by dsocr so that capture, analyze and emit can run on a "
    "machine with nothing downloaded."
)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_block(draw: ImageDraw.ImageDraw, top: int, text: str, width: int) -> int:
    font = _font(BODY_FONT_SIZE)
    words, line = text.split(), ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) > width and line:
            draw.text((MARGIN, top), line, fill=INK, font=font)
            top += BODY_FONT_SIZE + LINE_SPACING
            line = word
        else:
            line = candidate
    if line:
        draw.text((MARGIN, top), line, fill=INK, font=font)
        top += BODY_FONT_SIZE + LINE_SPACING
    return top


def _ink_box(draw: ImageDraw.ImageDraw, top: int, text: str, size: int) -> tuple[int, int, int, int]:
    """The box of one line drawn at (MARGIN, top), from the line's top to its ink's bottom."""
    _, _, right, bottom = draw.textbbox((MARGIN, top), text, font=_font(size))
    return (MARGIN, top, int(right), int(bottom))


def _paragraph(draw: ImageDraw.ImageDraw, top: int, width: int, blocks: list[Block]) -> int:
    """A text block of _PARAGRAPH at ``top``, recorded in ``blocks``; returns the next line's top."""
    next_top = _text_block(draw, top, _PARAGRAPH, width)
    blocks.append(("text", (MARGIN, top, MARGIN + width, next_top - LINE_SPACING)))
    return next_top


def _page(title: str, blocks: list[Block]) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    image = Image.new("RGB", PAGE_SIZE, PAPER)
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), title, fill=INK, font=_font(TITLE_FONT_SIZE))
    blocks.append(("title", _ink_box(draw, MARGIN, title, TITLE_FONT_SIZE)))
    return image, draw, MARGIN + TITLE_FONT_SIZE + 3 * LINE_SPACING


def _text_page(blocks: list[Block]) -> Image.Image:
    image, draw, top = _page("1. Optical compression", blocks)
    text_width = PAGE_SIZE[0] - 2 * MARGIN
    for _ in range(4):
        top = _paragraph(draw, top, text_width, blocks) + 2 * LINE_SPACING
    subtitle = "1.1 Why tokens matter"
    draw.text((MARGIN, top), subtitle, fill=INK, font=_font(BODY_FONT_SIZE + 10))
    blocks.append(("sub_title", _ink_box(draw, top, subtitle, BODY_FONT_SIZE + 10)))
    top += BODY_FONT_SIZE + 4 * LINE_SPACING
    _paragraph(draw, top, text_width, blocks)
    return image


def _table_page(blocks: list[Block]) -> Image.Image:
    image, draw, top = _page("Table 2: pipeline stages", blocks)
    font = _font(BODY_FONT_SIZE)
    rows = [("stage", "input", "output"), ("vision", "pixels", "image tokens"), ("prefill", "prompt", "KV cache")]
    rows += [("decode", "KV cache", "text"), ("emit", "Parquet", "boxes")]
    column_width, row_height = 300, 60
    for row_number, row in enumerate(rows):
        y = top + row_number * row_height
        for column_number, cell in enumerate(row):
            x = MARGIN + column_number * column_width
            draw.rectangle([x, y, x + column_width, y + row_height], outline=INK, width=2)
            draw.text((x + 14, y + 16), cell, fill=INK, font=font)
    columns = len(rows[0])
    blocks.append(("table", (MARGIN, top, MARGIN + columns * column_width, top + len(rows) * row_height)))
    _paragraph(draw, top + len(rows) * row_height + 40, PAGE_SIZE[0] - 2 * MARGIN, blocks)
    return image


def _figure_page(blocks: list[Block]) -> Image.Image:
    image, draw, top = _page("Figure 1", blocks)
    box = [MARGIN, top, PAGE_SIZE[0] - MARGIN, top + 700]
    draw.rectangle(box, fill=(210, 225, 240), outline=INK, width=3)
    for index in range(12):
        x0 = box[0] + 40 + index * 85
        bar_height = 80 + (index * 53) % 500
        draw.rectangle([x0, box[3] - 40 - bar_height, x0 + 55, box[3] - 40], fill=(60, 110, 170))
    draw.ellipse([box[2] - 300, box[1] + 40, box[2] - 60, box[1] + 280], fill=(230, 150, 60))
    blocks.append(("image", (box[0], box[1], box[2], box[3])))
    caption_top = box[3] + 30
    caption = "Figure 1: tokens per page."
    draw.text((MARGIN, caption_top), caption, fill=INK, font=_font(BODY_FONT_SIZE))
    blocks.append(("image_caption", _ink_box(draw, caption_top, caption, BODY_FONT_SIZE)))
    _paragraph(draw, caption_top + 80, PAGE_SIZE[0] - 2 * MARGIN, blocks)
    return image


SAMPLE_PAGES: dict[str, Callable[[list[Block]], Image.Image]] = {
    "text-page.png": _text_page,
    "table-page.png": _table_page,
    "figure-page.png": _figure_page,
}


def draw_sample(file_name: str) -> tuple[Image.Image, list[Block]]:
    """The sample page ``file_name`` and its blocks in reading order (labels and pixel boxes)."""
    blocks: list[Block] = []
    image = SAMPLE_PAGES[file_name](blocks)
    return image, blocks


def sample_image_paths(directory: Path) -> list[Path]:
    """Where ``write_sample_images`` puts the pages in ``directory``."""
    return [directory / file_name for file_name in SAMPLE_PAGES]


def write_sample_images(directory: Path) -> list[Path]:
    """Draw the sample pages into ``directory`` (kept if already there) and return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, _draw_page in SAMPLE_PAGES.items():
        path = directory / file_name
        if not path.exists():
            temp = path.with_name(f".{file_name}.tmp.png")
            draw_sample(file_name)[0].save(temp)
            temp.replace(path)
        paths.append(path)
    return paths
