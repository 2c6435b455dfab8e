"""Sample document pages the project draws itself, so the demo needs nothing from outside."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PAGE_SIZE = (1240, 1754)  # A4 at 150 dpi
MARGIN = 90
BODY_FONT_SIZE = 26
TITLE_FONT_SIZE = 54
LINE_SPACING = 12
INK = (20, 20, 20)
PAPER = (255, 255, 255)

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


def _page(title: str) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    image = Image.new("RGB", PAGE_SIZE, PAPER)
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), title, fill=INK, font=_font(TITLE_FONT_SIZE))
    return image, draw, MARGIN + TITLE_FONT_SIZE + 3 * LINE_SPACING


def _text_page() -> Image.Image:
    image, draw, top = _page("1. Optical compression")
    text_width = PAGE_SIZE[0] - 2 * MARGIN
    for _ in range(4):
        top = _text_block(draw, top, _PARAGRAPH, text_width) + 2 * LINE_SPACING
    draw.text((MARGIN, top), "1.1 Why tokens matter", fill=INK, font=_font(BODY_FONT_SIZE + 10))
    top += BODY_FONT_SIZE + 4 * LINE_SPACING
    _text_block(draw, top, _PARAGRAPH, text_width)
    return image


def _table_page() -> Image.Image:
    image, draw, top = _page("Table 2: pipeline stages")
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
    _text_block(draw, top + len(rows) * row_height + 40, _PARAGRAPH, PAGE_SIZE[0] - 2 * MARGIN)
    return image


def _figure_page() -> Image.Image:
    image, draw, top = _page("Figure 1")
    box = [MARGIN, top, PAGE_SIZE[0] - MARGIN, top + 700]
    draw.rectangle(box, fill=(210, 225, 240), outline=INK, width=3)
    for index in range(12):
        x0 = box[0] + 40 + index * 85
        bar_height = 80 + (index * 53) % 500
        draw.rectangle([x0, box[3] - 40 - bar_height, x0 + 55, box[3] - 40], fill=(60, 110, 170))
    draw.ellipse([box[2] - 300, box[1] + 40, box[2] - 60, box[1] + 280], fill=(230, 150, 60))
    caption_top = box[3] + 30
    draw.text((MARGIN, caption_top), "Figure 1: tokens per page.", fill=INK, font=_font(BODY_FONT_SIZE))
    _text_block(draw, caption_top + 80, _PARAGRAPH, PAGE_SIZE[0] - 2 * MARGIN)
    return image


SAMPLE_PAGES = {"text-page.png": _text_page, "table-page.png": _table_page, "figure-page.png": _figure_page}


def sample_image_paths(directory: Path) -> list[Path]:
    """Where ``write_sample_images`` puts the pages in ``directory``."""
    return [directory / file_name for file_name in SAMPLE_PAGES]


def write_sample_images(directory: Path) -> list[Path]:
    """Draw the sample pages into ``directory`` (kept if already there) and return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, draw_page in SAMPLE_PAGES.items():
        path = directory / file_name
        if not path.exists():
            temp = path.with_name(f".{file_name}.tmp.png")
            draw_page().save(temp)
            temp.replace(path)
        paths.append(path)
    return paths
