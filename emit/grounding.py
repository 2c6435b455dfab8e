"""Parse DeepSeek-OCR output: grounding blocks, their boxes and text, and the clean text.

The grammar is ``<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>`` followed by the
block's text. The output is split into special tokens and plain text by one regex, then read
by a small state machine that never raises: malformed markup (unclosed or stray tags, a ref
without boxes) is recovered from as well as possible and recorded as a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, auto

from dsocr.emit._warnings import WarningList, quote
from dsocr.emit.boxes import NORM_MAX, NormBox, parse_box_list

from dsocr.families import DEEPSEEK_EOS_TEXT

REF_OPEN = "<|ref|>"
REF_CLOSE = "<|/ref|>"
DET_OPEN = "<|det|>"
DET_CLOSE = "<|/det|>"
#: DeepSeek's end-of-sentence token, spelled with full-width bars and U+2581 (▁).
EOS = DEEPSEEK_EOS_TEXT

#: Boxes kept per image; a model stuck in a loop may write thousands.
MAX_BOXES = 1000

# Every special token: the four grounding tags, <image>, and any <|name|> or <｜name｜>
# (ASCII or full-width bars, as DeepSeek tokenizers spell them). Names are short words, so
# ordinary text such as "a <| b" is left alone.
_SPECIAL = re.compile(
    r"<\|/?(?:ref|det)\|>"
    r"|<image>"
    r"|<\|[A-Za-z_/\u2581][\w/\u2581]{0,31}\|>"
    r"|<\uff5c[A-Za-z_/\u2581][\w/\u2581]{0,31}\uff5c>"
)
_BLANK_LINES = re.compile(r"\n{3,}")
_GROUNDING_TAGS = frozenset({REF_OPEN, REF_CLOSE, DET_OPEN, DET_CLOSE})


@dataclass(frozen=True)
class Block:
    """One ``<|ref|>`` block: its label, boxes and the text that follows it (stripped)."""

    index: int
    label: str
    boxes: tuple[NormBox, ...]
    text: str


@dataclass(frozen=True)
class Grounding:
    """Everything emit reads from one ``text_raw``."""

    blocks: tuple[Block, ...]
    text_clean: str
    warnings: tuple[str, ...]
    scale: int = NORM_MAX  # the boxes' coordinates are 0..scale of the original image

    @property
    def box_count(self) -> int:
        """Boxes kept over all blocks."""
        return sum(len(block.boxes) for block in self.blocks)


class _State(Enum):
    TEXT = auto()
    LABEL = auto()  # after <|ref|>
    AFTER_REF = auto()  # after <|/ref|>, waiting for <|det|>
    DET = auto()  # after <|det|>


@dataclass
class _OpenBlock:
    label: str
    boxes: tuple[NormBox, ...]
    text_parts: list[str]


class _Parser:
    """The state machine: feed it text and special tokens in order, then call finish()."""

    def __init__(self, max_boxes: int, scale: int, warnings: WarningList) -> None:
        self._state = _State.TEXT
        self._scale = scale
        self._warnings = warnings
        self._box_room = max_boxes
        self._over_budget = 0
        self._label_parts: list[str] = []
        self._label = ""
        self._det_parts: list[str] = []
        self._blocks: list[_OpenBlock] = []
        self._clean_parts: list[str] = []

    def on_text(self, text: str) -> None:
        if self._state is _State.TEXT:
            self._clean_parts.append(text)
            if self._blocks:
                self._blocks[-1].text_parts.append(text)
        elif self._state is _State.LABEL:
            self._label_parts.append(text)
        elif self._state is _State.DET:
            self._det_parts.append(text)
        elif text.strip():  # AFTER_REF: blanks between <|/ref|> and <|det|> are tolerated
            self._drop_ref("is not followed by <|det|>")
            self.on_text(text)

    def on_token(self, token: str) -> None:
        if token not in _GROUNDING_TAGS:
            return  # other special tokens (<image>, <|grounding|>, ...) are not text a person reads
        if self._state is _State.TEXT:
            self._on_tag_in_text(token)
        elif self._state is _State.LABEL:
            self._on_tag_in_label(token)
        elif self._state is _State.AFTER_REF:
            if token == DET_OPEN:
                self._open_det()
            else:
                self._drop_ref("is not followed by <|det|>")
                self.on_token(token)
        elif token == DET_CLOSE:
            self._close_det(closed=True)
        else:
            self._close_det(closed=False)
            self.on_token(token)

    def finish(self) -> tuple[tuple[Block, ...], str]:
        if self._state is _State.LABEL:
            self._warnings.add(f"unclosed {REF_OPEN} {quote(''.join(self._label_parts))} at the end: dropped")
        elif self._state is _State.AFTER_REF:
            self._drop_ref("ends the output without <|det|>")
        elif self._state is _State.DET:
            self._close_det(closed=False)
        if self._over_budget:
            self._warnings.add(f"{self._over_budget} boxes beyond the first {MAX_BOXES} ignored")
        blocks = tuple(
            Block(index, block.label, block.boxes, "".join(block.text_parts).strip())
            for index, block in enumerate(self._blocks)
        )
        return blocks, _BLANK_LINES.sub("\n\n", "".join(self._clean_parts)).strip()

    def _on_tag_in_text(self, token: str) -> None:
        if token == REF_OPEN:
            self._label_parts = []
            self._state = _State.LABEL
        elif token == DET_OPEN:
            self._warnings.add(f"{DET_OPEN} without {REF_OPEN}: its boxes get an empty label")
            self._label = ""
            self._open_det()
        else:
            self._warnings.add(f"stray {token} ignored")

    def _on_tag_in_label(self, token: str) -> None:
        label = "".join(self._label_parts).strip()
        if token == REF_CLOSE:
            self._set_label(label)
            self._state = _State.AFTER_REF
        elif token == DET_OPEN:
            self._warnings.add(f"{REF_OPEN}{quote(label)} not closed before {DET_OPEN}: closed there")
            self._set_label(label)
            self._open_det()
        elif token == REF_OPEN:
            self._warnings.add(f"{REF_OPEN}{quote(label)} not closed before the next {REF_OPEN}: dropped")
            self._label_parts = []
        else:
            self._warnings.add(f"stray {token} inside a label ignored")

    def _set_label(self, label: str) -> None:
        if not label:
            self._warnings.add(f"empty label in {REF_OPEN}{REF_CLOSE}")
        self._label = label

    def _drop_ref(self, why: str) -> None:
        self._warnings.add(f"{REF_OPEN}{quote(self._label)}{REF_CLOSE} {why}: dropped")
        self._state = _State.TEXT

    def _open_det(self) -> None:
        self._det_parts = []
        self._state = _State.DET

    def _close_det(self, *, closed: bool) -> None:
        content = "".join(self._det_parts)
        trailing = ""
        if not closed:
            # A truncated or unclosed list: boxes up to its last ']', the rest is text again.
            end = content.rfind("]") + 1
            content, trailing = content[:end], content[end:]
            self._warnings.add(f"unclosed {DET_OPEN} of {quote(self._label)}: read up to its last ']'")
        box_list = parse_box_list(
            content, label=self._label, budget=self._box_room, warnings=self._warnings, scale=self._scale
        )
        self._box_room -= len(box_list.boxes)
        self._over_budget += box_list.over_budget
        self._blocks.append(_OpenBlock(self._label, box_list.boxes, []))
        self._state = _State.TEXT
        if trailing:
            self.on_text(trailing)


def cut_at_eos(text_raw: str, eos: str | None, warnings: WarningList) -> str:
    """The output up to the first ``eos``; anything written after it is ignored with a warning."""
    if not eos:
        return text_raw
    body, found, after = text_raw.partition(eos)
    if found and after.strip():
        warnings.add(f"{len(after)} characters after the end-of-sentence token ignored: {quote(after)}")
    return body


def parse_grounding(
    text_raw: str, *, max_boxes: int = MAX_BOXES, scale: int = NORM_MAX, eos: str | None = EOS
) -> Grounding:
    """Parse one model output (special tokens kept) into blocks, clean text and warnings.

    Never raises on malformed output. ``text_clean`` is the text a person reads: grounding
    blocks and special tokens removed, runs of blank lines collapsed, stripped. Boxes are
    read in coordinates 0..``scale``; output after ``eos`` is ignored.
    """
    warnings = WarningList()
    body = cut_at_eos(text_raw, eos, warnings)
    parser = _Parser(max_boxes, scale, warnings)
    position = 0
    for match in _SPECIAL.finditer(body):
        if match.start() > position:
            parser.on_text(body[position : match.start()])
        parser.on_token(match.group())
        position = match.end()
    if position < len(body):
        parser.on_text(body[position:])
    blocks, text_clean = parser.finish()
    return Grounding(blocks, text_clean, warnings.as_tuple(), scale)
