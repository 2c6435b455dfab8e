"""Synthetic document pages with their layout target in DeepSeek-OCR's grounding grammar.

A page is drawn from a seed: a page size, margins, a font family and size, one to three
columns, and blocks (title, sub_title, text, table, table_caption, image, image_caption)
laid out in reading order (title first, then each column top to bottom). The target is one
``<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>`` line per block, coordinates on
DeepSeek-OCR's 0..999 scale of the page, then the tokenizer's EOS (added by the trainer).

Pillow only: the generator is imported by the training and evaluation scripts, never by dsocr.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

#: DeepSeek-OCR's box coordinates run 0..999 of the image's width and height.
COORDINATE_SCALE = 999
#: Coordinates are written with three digits ("045"): the grounding parser reads the same numbers,
#: and a fixed width keeps every box the same number of tokens.
COORDINATE_DIGITS = 3
#: Page sizes in pixels (A4, Letter, A5 at 150 dpi, A4 landscape, a square scan), drawn at a scale.
PAGE_SIZES = ((1240, 1754), (1275, 1650), (874, 1240), (1754, 1240), (1200, 1200))
PAGE_SCALE_RANGE = (0.75, 1.25)
MARGIN_FRACTION_RANGE = (0.04, 0.11)
BODY_FONT_FRACTION_RANGE = (0.014, 0.026)  # body font size as a fraction of the page width
MAX_COLUMNS = 3
MIN_COLUMN_WIDTH_PX = 260
#: Answers stay within the context: a block is ~35 tokens, so at most this many per page.
MAX_BLOCKS = 18
COLUMN_GAP_FRACTION = 0.035
LABELS = ("title", "sub_title", "text", "table", "table_caption", "image", "image_caption")

_VOCABULARY = (
    "the model reads each page as a grid of vision tokens and decodes its layout into blocks with "
    "boxes and labels while the profiler records every kernel of the prefill and decode stages "
    "results depend on batch size context length cache layout and the attention kernel measured on "
    "the device across many runs of synthetic documents data tables figures captions columns "
    "margins fonts sizes and reading order of the text"
)
_WORDS = tuple(_VOCABULARY.split())
_INKS = ((20, 20, 20), (0, 0, 0), (40, 40, 60), (30, 30, 30))
_PAPERS = ((255, 255, 255), (250, 248, 240), (245, 245, 245), (255, 253, 250))
_FILLS = ((210, 225, 240), (60, 110, 170), (230, 150, 60), (120, 170, 90), (200, 80, 80), (150, 150, 150))


@dataclass(frozen=True)
class Block:
    """One block of a page: its DeepSeek-OCR label and pixel box (x1, y1, x2, y2), inclusive."""

    label: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Page:
    """A drawn page and its blocks in reading order."""

    image: Image.Image
    blocks: tuple[Block, ...]


@lru_cache(maxsize=64)
def pillow_font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's own scalable font (Aileron, shipped inside Pillow) at ``size`` pixels."""
    return ImageFont.load_default(size=size)


def normalized(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A pixel box on DeepSeek-OCR's 0..999 scale of an image of ``size`` (width, height)."""
    width, height = size
    x1, y1, x2, y2 = box
    scale = COORDINATE_SCALE

    def clamp(value: float) -> int:
        return max(0, min(scale, round(value)))

    return (
        clamp(x1 * scale / width),
        clamp(y1 * scale / height),
        clamp(x2 * scale / width),
        clamp(y2 * scale / height),
    )


def target_text(blocks: tuple[Block, ...] | list[Block], size: tuple[int, int]) -> str:
    """The grounding answer for ``blocks``: one ref/det line per block, in order (EOS not included)."""
    lines = []
    for block in blocks:
        coordinates = ", ".join(f"{value:0{COORDINATE_DIGITS}d}" for value in normalized(block.box, size))
        lines.append(f"<|ref|>{block.label}<|/ref|><|det|>[[{coordinates}]]<|/det|>\n")
    return "".join(lines)


class _Writer:
    """Draws words of one font; the ink and the line spacing are the page's."""

    def __init__(self, draw: ImageDraw.ImageDraw, rng: random.Random, ink: tuple[int, int, int]) -> None:
        self.draw = draw
        self.rng = rng
        self.ink = ink

    def words(self, count: int) -> list[str]:
        return [self.rng.choice(_WORDS) for _ in range(count)]

    def paragraph(self, x: int, top: int, width: int, size: int, lines: int, *, stroke: int = 0) -> int:
        """Draw ``lines`` lines of justified-ish text; returns the bottom of the last line's ink."""
        font = pillow_font(size)
        spacing = round(size * 1.35)
        bottom = top
        for line_number in range(lines):
            last = line_number == lines - 1
            target = width * (self.rng.uniform(0.35, 0.9) if last else self.rng.uniform(0.93, 1.0))
            line = ""
            while True:
                word = self.rng.choice(_WORDS)
                candidate = f"{line} {word}".strip()
                if self.draw.textlength(candidate, font=font) > target:
                    break
                line = candidate
            if not line:
                line = self.rng.choice(_WORDS)[:3]
            y = top + line_number * spacing
            self.draw.text((x, y), line, fill=self.ink, font=font, stroke_width=stroke, stroke_fill=self.ink)
            bottom = max(bottom, self.draw.textbbox((x, y), line, font=font, stroke_width=stroke)[3])
        return bottom

    def line(self, x: int, top: int, width: int, size: int, words: int, *, stroke: int = 0) -> tuple[int, int]:
        """One line of up to ``words`` words that fits ``width``; returns its right and bottom ink."""
        font = pillow_font(size)
        text = ""
        for word in self.words(words):
            candidate = f"{text} {word}".strip()
            if self.draw.textlength(candidate, font=font) > width and text:
                break
            text = candidate
        self.draw.text((x, top), text, fill=self.ink, font=font, stroke_width=stroke, stroke_fill=self.ink)
        _left, _, right, bottom = self.draw.textbbox((x, top), text, font=font, stroke_width=stroke)
        return right, bottom


def _title(writer: _Writer, page_width: int, margin: int, top: int, body: int) -> tuple[Block, int]:
    rng = writer.rng
    size = round(body * rng.uniform(1.5, 2.4))
    font = pillow_font(size)
    stroke = rng.choice((0, 0, 1))
    width = page_width - 2 * margin
    texts = []
    for _ in range(1 if rng.random() < 0.75 else 2):
        text = ""
        for word in writer.words(rng.randint(2, 7)):
            candidate = f"{text} {word}".strip()
            if writer.draw.textlength(candidate, font=font) > width and text:
                break
            text = candidate
        texts.append(text)
    centered = rng.random() < 0.4
    left, right, line_top, bottom = page_width, 0, top, top
    for text in texts:
        x = margin
        if centered:
            x = margin + round(width - writer.draw.textlength(text, font=font)) // 2
        writer.draw.text((x, line_top), text, fill=writer.ink, font=font, stroke_width=stroke, stroke_fill=writer.ink)
        ink = writer.draw.textbbox((x, line_top), text, font=font, stroke_width=stroke)
        left, right, bottom = min(left, ink[0]), max(right, ink[2]), ink[3]
        line_top = bottom + round(size * 0.3)
    return Block("title", (left, top, right, bottom)), bottom


def _table(writer: _Writer, x: int, top: int, width: int, body: int, max_height: int) -> Block | None:
    rng = writer.rng
    columns = rng.randint(2, 5) if width > 500 else rng.randint(2, 3)
    size = max(10, round(body * rng.uniform(0.8, 1.0)))
    row_height = round(size * rng.uniform(1.8, 2.4))
    rows = rng.randint(3, 9)
    while rows > 2 and rows * row_height > max_height:
        rows -= 1
    if rows * row_height > max_height:
        return None
    table_width = round(width * rng.uniform(0.75, 1.0))
    column_width = table_width // columns
    table_width = column_width * columns
    grid = rng.random() < 0.6
    line_width = rng.choice((1, 2, 2, 3))
    font = pillow_font(size)
    header_fill = rng.choice((None, (230, 230, 230), (215, 225, 240)))
    for row in range(rows):
        y = top + row * row_height
        if row == 0 and header_fill is not None:
            writer.draw.rectangle([x, y, x + table_width, y + row_height], fill=header_fill)
        for column in range(columns):
            cx = x + column * column_width
            if grid:
                writer.draw.rectangle([cx, y, cx + column_width, y + row_height], outline=writer.ink, width=line_width)
            cell = " ".join(writer.words(rng.randint(1, 2)))
            if rng.random() < 0.4 and row > 0:
                cell = f"{rng.uniform(0, 999):.{rng.randint(0, 2)}f}"
            while cell and writer.draw.textlength(cell, font=font) > column_width - 12:
                cell = cell[:-1]
            writer.draw.text((cx + 8, y + (row_height - size) // 2), cell, fill=writer.ink, font=font)
    bottom = top + rows * row_height
    if not grid:  # booktabs: rules above, below the header and at the end
        for y in (top, top + row_height, bottom):
            writer.draw.line([x, y, x + table_width, y], fill=writer.ink, width=line_width)
    return Block("table", (x, top, x + table_width, bottom))


def _figure(writer: _Writer, x: int, top: int, width: int, height: int) -> Block:
    rng = writer.rng
    draw = writer.draw
    figure_width = round(width * rng.uniform(0.6, 1.0))
    x = x + (width - figure_width) // 2 if rng.random() < 0.5 else x
    box = [x, top, x + figure_width, top + height]
    kind = rng.choice(("bars", "shapes", "photo", "plot"))
    if kind == "photo":
        steps = rng.randint(6, 16)
        base = rng.choice(_FILLS)
        for step in range(steps):
            shade = tuple(max(0, min(255, c + rng.randint(-60, 60))) for c in base)
            y0 = top + step * height // steps
            draw.rectangle([box[0], y0, box[2], top + (step + 1) * height // steps], fill=shade)
        for _ in range(rng.randint(2, 6)):
            cx, cy = rng.randint(box[0], box[2]), rng.randint(box[1], box[3])
            radius = rng.randint(10, max(11, height // 4))
            ellipse = [
                max(box[0], cx - radius),
                max(box[1], cy - radius),
                min(box[2], cx + radius),
                min(box[3], cy + radius),
            ]
            draw.ellipse(ellipse, fill=rng.choice(_FILLS))
    else:
        draw.rectangle(box, fill=rng.choice(((255, 255, 255), (240, 244, 250), (210, 225, 240))))
        if rng.random() < 0.7:
            draw.rectangle(box, outline=writer.ink, width=rng.randint(1, 3))
        inner = [box[0] + 20, box[1] + 20, box[2] - 20, box[3] - 20]
        if kind == "bars":
            bars = rng.randint(3, 14)
            bar_width = max(4, (inner[2] - inner[0]) // (bars * 2))
            fill = rng.choice(_FILLS[1:])
            for bar in range(bars):
                bx = inner[0] + bar * 2 * bar_width + bar_width // 2
                bar_height = rng.randint((inner[3] - inner[1]) // 8, inner[3] - inner[1])
                draw.rectangle([bx, inner[3] - bar_height, bx + bar_width, inner[3]], fill=fill)
        elif kind == "plot":
            draw.line([inner[0], inner[3], inner[2], inner[3]], fill=writer.ink, width=2)
            draw.line([inner[0], inner[1], inner[0], inner[3]], fill=writer.ink, width=2)
            for _ in range(rng.randint(1, 3)):
                points = []
                for step in range(12):
                    px = inner[0] + step * (inner[2] - inner[0]) // 11
                    points.append((px, rng.randint(inner[1], inner[3])))
                draw.line(points, fill=rng.choice(_FILLS[1:]), width=rng.randint(2, 4))
        else:
            for _ in range(rng.randint(2, 7)):
                sx = sorted(rng.randint(inner[0], inner[2]) for _ in range(2))
                sy = sorted(rng.randint(inner[1], inner[3]) for _ in range(2))
                shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
                shape([sx[0], sy[0], sx[1] + 5, sy[1] + 5], fill=rng.choice(_FILLS))
    return Block("image", (box[0], box[1], box[2], box[3]))


def _caption(writer: _Writer, kind: str, x: int, top: int, width: int, body: int) -> Block:
    rng = writer.rng
    size = max(10, round(body * rng.uniform(0.8, 1.0)))
    number = rng.randint(1, 12)
    prefix = "Figure" if kind == "image_caption" else "Table"
    font = pillow_font(size)
    text = f"{prefix} {number}: " + " ".join(writer.words(rng.randint(2, 14)))
    lines, line, bottom, right = [], "", top, x
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if writer.draw.textlength(candidate, font=font) > width and line:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    for number_of_line, line in enumerate(lines[:3]):
        y = top + number_of_line * round(size * 1.35)
        writer.draw.text((x, y), line, fill=writer.ink, font=font)
        _, _, line_right, bottom = writer.draw.textbbox((x, y), line, font=font)
        right = max(right, line_right)
    return Block(kind, (x, top, right, bottom))


def _column_blocks(
    writer: _Writer, x: int, top: int, width: int, bottom_limit: int, body: int, budget: int, counters: dict[str, int]
) -> list[Block]:
    """Fill one column top to bottom with blocks; at most ``budget`` blocks."""
    rng = writer.rng
    blocks: list[Block] = []
    y = top
    gap = round(body * rng.uniform(0.9, 2.0))
    spacing = round(body * 1.35)
    while len(blocks) < budget:
        room = bottom_limit - y
        if room < spacing * 2:
            break
        kind = rng.choices(("text", "sub_title", "table", "image"), weights=(6, 1.2, 1.3, 1.5))[0]
        if kind == "sub_title" and (not blocks or blocks[-1].label != "sub_title"):
            size = round(body * rng.uniform(1.15, 1.5))
            right, bottom = writer.line(x, y, width, size, rng.randint(2, 5), stroke=rng.choice((0, 1)))
            blocks.append(Block("sub_title", (x, y, right, bottom)))
            y = bottom + round(gap * 0.6)
            continue
        if kind == "table" and budget - len(blocks) >= 2 and room > body * 8:
            caption_above = rng.random() < 0.6
            with_caption = rng.random() < 0.8
            table_top = y
            caption = None
            if with_caption and caption_above:
                caption = _caption(writer, "table_caption", x, y, width, body)
                table_top = caption.box[3] + round(body * 0.6)
            table = _table(
                writer, x, table_top, width, body, bottom_limit - table_top - (body * 4 if with_caption else 0)
            )
            if table is None:
                if caption is not None:  # no room after all: white out the caption
                    writer.draw.rectangle(caption.box, fill=writer.paper)  # type: ignore[attr-defined]
                break
            if caption is not None:
                blocks.append(caption)
            blocks.append(table)
            y = table.box[3] + round(body * 0.6)
            if with_caption and not caption_above:
                caption = _caption(writer, "table_caption", x, y, width, body)
                blocks.append(caption)
                y = caption.box[3]
            y += gap
            counters["table"] += 1
            continue
        if kind == "image" and budget - len(blocks) >= 2 and room > body * 10:
            height = min(room - body * 5, round(width * rng.uniform(0.35, 0.9)))
            if height < body * 4:
                break
            figure = _figure(writer, x, y, width, height)
            blocks.append(figure)
            y = figure.box[3] + round(body * 0.7)
            if rng.random() < 0.85:
                caption = _caption(writer, "image_caption", x, y, width, body)
                blocks.append(caption)
                y = caption.box[3]
            y += gap
            continue
        lines = rng.randint(2, 9)
        lines = min(lines, max(0, (room - body) // spacing))
        if lines < 1:
            break
        indent = round(body * 1.5) if rng.random() < 0.3 else 0
        bottom = writer.paragraph(x + indent, y, width - indent, body, lines)
        blocks.append(Block("text", (x, y, x + width, bottom)))
        y = bottom + gap
    return blocks


def draw_page(seed: int) -> Page:
    """The synthetic page of ``seed``: same seed, same pixels and blocks."""
    rng = random.Random(seed)
    base_width, base_height = rng.choice(PAGE_SIZES)
    scale = rng.uniform(*PAGE_SCALE_RANGE)
    width, height = round(base_width * scale), round(base_height * scale)
    paper = rng.choice(_PAPERS)
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    writer = _Writer(draw, rng, rng.choice(_INKS))
    writer.paper = paper  # type: ignore[attr-defined]
    margin_x = round(width * rng.uniform(*MARGIN_FRACTION_RANGE))
    margin_y = round(height * rng.uniform(*MARGIN_FRACTION_RANGE))
    body = max(11, round(width * rng.uniform(*BODY_FONT_FRACTION_RANGE)))
    blocks: list[Block] = []
    top = margin_y
    if rng.random() < 0.85:
        title, bottom = _title(writer, width, margin_x, top, body)
        blocks.append(title)
        top = bottom + round(body * rng.uniform(1.2, 2.5))
    content_width = width - 2 * margin_x
    max_columns = max(1, min(MAX_COLUMNS, content_width // MIN_COLUMN_WIDTH_PX))
    columns = rng.randint(1, max_columns)
    gap = round(width * COLUMN_GAP_FRACTION)
    column_width = (content_width - (columns - 1) * gap) // columns
    counters = {"table": 0}
    bottom_limit = height - margin_y
    remaining = MAX_BLOCKS - len(blocks)
    for column in range(columns):
        budget = remaining // (columns - column)
        x = margin_x + column * (column_width + gap)
        column_blocks = _column_blocks(writer, x, top, column_width, bottom_limit, body, budget, counters)
        blocks.extend(column_blocks)
        remaining -= len(column_blocks)
    return Page(image, tuple(blocks))


def page_and_target(seed: int) -> tuple[Image.Image, str]:
    """The page of ``seed`` and its grounding answer (without EOS)."""
    page = draw_page(seed)
    return page.image, target_text(page.blocks, page.image.size)
