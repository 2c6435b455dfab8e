"""A run's model family (run.json ``model.family``) and its outputs read by that family's grammar.

The family's torch-free facts (dsocr/families.py) say how its output is written: which
parser reads it, the scale of its box coordinates, its end-of-sentence text and which labels
are headings or figures. A run that names an unknown family is refused; a run that names
none (imports written before dsocr recorded the family) is read as DeepSeek-OCR-2, with a
warning in emit's summary (the CLI prints it as a WARNING), since DeepSeek-OCR was the only
family then.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from dsocr.emit._warnings import WarningList
from dsocr.emit.grounding import MAX_BOXES, Grounding, cut_at_eos, parse_grounding

from dsocr.families import UNRECORDED_FAMILY, FamilyFacts, OutputGrammar, facts_for
from dsocr.records import RunRecord

_BLANK_LINES = re.compile(r"\n{3,}")


def run_family(run: RunRecord, *, where: str) -> tuple[FamilyFacts, str | None]:
    """The facts of the family that wrote ``run`` (its run.json) and the warning of the fallback,
    if taken; BadInputError for a family that is not known."""
    family = run.model.family
    if family is None:
        warning = (
            f"{where} names no model.family (a run written before dsocr recorded it): "
            f"its outputs are read as {UNRECORDED_FAMILY.name}"
        )
        return UNRECORDED_FAMILY, warning
    return facts_for(family, where=f"{where} model.family"), None


def _parse_deepseek(text_raw: str, facts: FamilyFacts) -> Grounding:
    scale = facts.coordinate_scale
    if scale is None:  # FamilyFacts refuses a grounding grammar without a scale
        raise AssertionError(f"family {facts.name!r}: a grounding grammar without a coordinate scale")
    return parse_grounding(text_raw, max_boxes=MAX_BOXES, scale=scale, eos=facts.eos_text)


def _parse_plain(text_raw: str, facts: FamilyFacts) -> Grounding:
    warnings = WarningList()
    body = cut_at_eos(text_raw, facts.eos_text, warnings)
    return Grounding((), _BLANK_LINES.sub("\n\n", body).strip(), warnings.as_tuple())


_PARSERS: dict[OutputGrammar, Callable[[str, FamilyFacts], Grounding]] = {
    OutputGrammar.deepseek_grounding: _parse_deepseek,
    OutputGrammar.plain: _parse_plain,
}


def parse_output(text_raw: str, facts: FamilyFacts) -> Grounding:
    """One model output (special tokens kept) read by its family's grammar. Never raises on bad output."""
    return _PARSERS[facts.grammar](text_raw, facts)
