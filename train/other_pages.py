"""Evaluation pages drawn by code the model never trained on: other fonts, page sizes and drawing.

Text is Pillow's built-in bitmap font (not the scalable font of train/pages.py), enlarged with
nearest-neighbour so its glyphs are blocky; page sizes are none of train/pages.py's; tables
are zebra-striped, figures are hatched or gradient panels. The layout rules are written
separately: a full-width header, then one or two columns stacked top to bottom. Blocks and
labels follow the same grammar, so the same scorer reads both sets.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFont

from train.pages import Block, Page

#: Page sizes absent from train/pages.py (B5, US half-letter, a wide slide, a tall receipt-like page).
OTHER_PAGE_SIZES = ((1039, 1476), (825, 1275), (1600, 1000), (900, 1500), (1100, 1400))
_BITMAP_FONT = ImageFont.load_default_imagefont()
_BITMAP_LINE_PX = 11  # the bitmap font's line height before enlarging
_VOCABULARY = "alpha beta gamma delta report summary value method result figure sample layout region"
_WORDS = tuple(_VOCABULARY.split())


def _bitmap_text(text: str, zoom: int, ink: tuple[int, int, int]) -> Image.Image:
    """``text`` in the bitmap font, enlarged ``zoom`` times (an RGBA image, transparent paper)."""
    _left, _top, right, _bottom = _BITMAP_FONT.getbbox(text)
    small = Image.new("L", (max(1, right), _BITMAP_LINE_PX), 0)
    ImageDraw.Draw(small).text((0, 0), text, fill=255, font=_BITMAP_FONT)
    mask = small.resize((small.width * zoom, small.height * zoom), Image.NEAREST)
    layer = Image.new("RGBA", mask.size, (*ink, 0))
    layer.putalpha(mask)
    return layer


def _text_lines(page: Image.Image, rng: random.Random, x: int, top: int, width: int, zoom: int, lines: int) -> int:
    ink = (10, 10, 10)
    line_height = _BITMAP_LINE_PX * zoom + zoom * 3
    for line_number in range(lines):
        words: list[str] = []
        fraction = rng.uniform(0.4, 0.85) if line_number == lines - 1 else 0.97
        while True:
            candidate = [*words, rng.choice(_WORDS)]
            if _BITMAP_FONT.getlength(" ".join(candidate)) * zoom > width * fraction:
                break
            words = candidate
        text = " ".join(words) or rng.choice(_WORDS)[:4]
        layer = _bitmap_text(text, zoom, ink)
        page.paste(layer, (x, top + line_number * line_height), layer)
    return top + lines * line_height - zoom * 3


def draw_other_page(seed: int) -> Page:
    """The evaluation page of ``seed`` (a different generator from train/pages.py)."""
    rng = random.Random(seed)
    width, height = rng.choice(OTHER_PAGE_SIZES)
    page = Image.new("RGB", (width, height), (252, 252, 252))
    draw = ImageDraw.Draw(page)
    margin = rng.randint(50, 110)
    zoom = rng.choice((2, 2, 3))
    blocks: list[Block] = []
    top = margin
    header_zoom = zoom + rng.choice((1, 2))
    header = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 4))).upper()
    layer = _bitmap_text(header, header_zoom, (0, 0, 0))
    page.paste(layer, (margin, top), layer)
    blocks.append(Block("title", (margin, top, margin + layer.width, top + layer.height)))
    top += layer.height + 30
    columns = 2 if width >= 1000 and rng.random() < 0.5 else 1
    gap = 40
    column_width = (width - 2 * margin - (columns - 1) * gap) // columns
    line_height = _BITMAP_LINE_PX * zoom + zoom * 3
    for column in range(columns):
        x = margin + column * (column_width + gap)
        y = top
        while len(blocks) < 16:
            room = height - margin - y
            choice = rng.random()
            if choice < 0.15 and room > 260:
                panel_height = min(room - 80, rng.randint(160, 420))
                box = (x, y, x + column_width, y + panel_height)
                if rng.random() < 0.5:
                    for row in range(panel_height):
                        shade = 90 + row * 140 // panel_height
                        draw.line([box[0], y + row, box[2], y + row], fill=(shade, shade // 2 + 60, 200))
                else:
                    draw.rectangle(box, outline=(0, 0, 0), width=2)
                    for offset in range(0, column_width + panel_height, 18):
                        draw.line([box[0] + offset, box[1], box[0] + offset - panel_height, box[3]], fill=(90, 90, 90))
                    draw.rectangle(box, outline=(0, 0, 0), width=2)
                    draw.rectangle([0, box[1], box[0] - 1, box[3]], fill=(252, 252, 252))
                    draw.rectangle([box[2] + 1, box[1], width, box[3]], fill=(252, 252, 252))
                blocks.append(Block("image", box))
                y = box[3] + 14
                bottom = _text_lines(page, rng, x, y, column_width, zoom, 1)
                blocks.append(Block("image_caption", (x, y, x + column_width * 3 // 4, bottom)))
                y = bottom + 30
            elif choice < 0.3 and room > 220:
                rows = rng.randint(3, 7)
                row_height = line_height + 14
                if rows * row_height > room - 40:
                    break
                cells = rng.randint(2, 4)
                for row in range(rows):
                    if row % 2 == 0:
                        draw.rectangle(
                            [x, y + row * row_height, x + column_width, y + (row + 1) * row_height],
                            fill=(225, 230, 235),
                        )
                    for cell in range(cells):
                        word = rng.choice(_WORDS) if row == 0 else str(rng.randint(0, 9999))
                        layer = _bitmap_text(word, zoom, (0, 0, 0))
                        page.paste(layer, (x + 8 + cell * column_width // cells, y + row * row_height + 7), layer)
                bottom = y + rows * row_height
                draw.line([x, y, x + column_width, y], fill=(0, 0, 0), width=2)
                draw.line([x, bottom, x + column_width, bottom], fill=(0, 0, 0), width=2)
                blocks.append(Block("table", (x, y, x + column_width, bottom)))
                y = bottom + 30
            else:
                lines = min(rng.randint(2, 7), max(0, (room - 10) // line_height))
                if lines < 2:
                    break
                bottom = _text_lines(page, rng, x, y, column_width, zoom, lines)
                blocks.append(Block("text", (x, y, x + column_width, bottom)))
                y = bottom + rng.randint(20, 40)
    return Page(page, tuple(blocks))
