"""The torch-free facts of each model family: what emit and the CLI need without loading a model.

A family is a kind of model dsocr can profile (DeepSeek-OCR-2 first). Its loading and ranges
live in ``capture/families/`` (torch); the facts here (name, the config ``model_type`` values
it loads, default prompt, image placeholder, output grammar, coordinate scale, labels) are
what emit reads to parse and draw a run's outputs, dispatching on run.json ``model.family``.
docs/families.md says how to add one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dsocr.errors import BadInputError


class OutputGrammar(enum.StrEnum):
    """How a family's output text is read (emit picks its parser by this)."""

    #: ``<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>`` blocks, then text.
    deepseek_grounding = "deepseek-grounding"
    #: Plain text: no boxes; emit only cuts at the end-of-sentence text and strips.
    plain = "plain"


@dataclass(frozen=True)
class FamilyFacts:
    """What is known about a family's inputs and outputs without torch."""

    name: str  # recorded as run.json model.family
    model_types: tuple[str, ...]  # the config.json ``model_type`` values it loads
    default_prompt: str
    image_placeholder: str  # a prompt must contain it: the processor expands it into image tokens
    grammar: OutputGrammar
    #: Box coordinates are written as 0..coordinate_scale of the original image (None: no boxes).
    coordinate_scale: int | None
    #: The end-of-sentence token as decoded text; output after it is ignored.
    eos_text: str | None = None
    #: Block labels the model is known to write (documentation; other labels are still drawn).
    labels: tuple[str, ...] = ()
    #: Labels drawn with a thicker outline (headings).
    emphasis_labels: frozenset[str] = frozenset()
    #: Labels whose boxes are cut out as images/N.jpg (figures).
    crop_labels: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.model_types:
            raise ValueError(f"family {self.name!r}: model_types is empty")
        if (self.grammar is OutputGrammar.deepseek_grounding) != (self.coordinate_scale is not None):
            raise ValueError(f"family {self.name!r}: a coordinate_scale exactly when the grammar has boxes")
        if self.coordinate_scale is not None and self.coordinate_scale < 1:
            raise ValueError(f"family {self.name!r}: coordinate_scale must be >= 1, got {self.coordinate_scale}")

    def check_prompt(self, prompt: str) -> None:
        """BadInputError unless ``prompt`` holds the image placeholder this family's processor expands."""
        if self.image_placeholder not in prompt:
            raise BadInputError(f"--prompt must contain the {self.image_placeholder} placeholder, got {prompt!r}")


#: DeepSeek's end-of-sentence token, spelled with full-width bars and U+2581 (▁).
DEEPSEEK_EOS_TEXT = "<\uff5cend\u2581of\u2581sentence\uff5c>"

DEEPSEEK_OCR2 = FamilyFacts(
    name="deepseek_ocr2",
    model_types=("deepseek_ocr2",),
    default_prompt="<image>\n<|grounding|>Convert the document to markdown.",
    image_placeholder="<image>",
    grammar=OutputGrammar.deepseek_grounding,
    coordinate_scale=999,
    eos_text=DEEPSEEK_EOS_TEXT,
    labels=("title", "sub_title", "text", "image", "image_caption", "table", "table_caption", "equation"),
    emphasis_labels=frozenset({"title"}),
    crop_labels=frozenset({"image"}),
)

#: The family of runs whose run.json names none: imports written before dsocr recorded the
#: family, when DeepSeek-OCR was the only one (capture runs have always recorded it).
UNRECORDED_FAMILY = DEEPSEEK_OCR2

_FACTS: dict[str, FamilyFacts] = {DEEPSEEK_OCR2.name: DEEPSEEK_OCR2}


def register_facts(facts: FamilyFacts) -> None:
    """Make ``facts`` known by name (the capture registry calls this for each family it registers)."""
    known = _FACTS.get(facts.name)
    if known is not None and known != facts:
        raise ValueError(f"family {facts.name!r} is already registered with other facts")
    _FACTS[facts.name] = facts


def unregister_facts(name: str) -> None:
    """Forget family ``name`` (tests that register a family of their own clean up with this)."""
    if name == DEEPSEEK_OCR2.name:
        raise ValueError(f"family {name!r} is built in")
    _FACTS.pop(name, None)


def family_names() -> list[str]:
    """The names of every known family, sorted."""
    return sorted(_FACTS)


def facts_for(name: object, *, where: str) -> FamilyFacts:
    """The facts of family ``name``; BadInputError naming ``where`` and the known families otherwise."""
    facts = _FACTS.get(name) if isinstance(name, str) else None
    if facts is None:
        raise BadInputError(f"{where}: unknown model family {name!r} (known: {', '.join(family_names())})")
    return facts
