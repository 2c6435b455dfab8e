"""The model families capture can load, keyed by the config's ``model_type``.

DeepSeek-OCR-2 is built in; :func:`register` adds another (docs/families.md shows how).
"""

from __future__ import annotations

from dsocr.capture.families import deepseek_ocr2
from dsocr.capture.families.base import LoadOptions, ModelFamily

from dsocr.errors import ModelLoadError
from dsocr.families import register_facts, unregister_facts

#: DeepSeek-OCR v1 ships remote code whose config names these types; dsocr does not run remote code.
V1_MODEL_TYPES = ("deepseek_vl_v2", "deepseek_ocr")

_BY_MODEL_TYPE: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> None:
    """Load configs of ``family.facts.model_types`` with ``family`` (and make its facts known to emit)."""
    taken = [t for t in family.facts.model_types if t in _BY_MODEL_TYPE and _BY_MODEL_TYPE[t] is not family]
    if taken:
        raise ValueError(f"family {family.name!r}: model_type {taken[0]!r} is already registered")
    register_facts(family.facts)
    for model_type in family.facts.model_types:
        _BY_MODEL_TYPE[model_type] = family


def unregister(family: ModelFamily) -> None:
    """Undo :func:`register` (for tests that register a family of their own)."""
    for model_type in family.facts.model_types:
        if _BY_MODEL_TYPE.get(model_type) is family:
            del _BY_MODEL_TYPE[model_type]
    unregister_facts(family.name)


def registered_model_types() -> list[str]:
    """Every model_type a family loads, sorted."""
    return sorted(_BY_MODEL_TYPE)


def family_for(model_type: object, *, where: str) -> ModelFamily:
    """The family that loads ``model_type``; ModelLoadError naming ``where`` otherwise."""
    if model_type in V1_MODEL_TYPES:
        raise ModelLoadError(
            f"{where}: DeepSeek-OCR v1 ({model_type}) needs its remote code; "
            "this version profiles DeepSeek-OCR-2 (native in transformers)"
        )
    family = _BY_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise ModelLoadError(
            f"{where}: model_type {model_type!r} is not a registered model family "
            f"(registered: {', '.join(registered_model_types())})"
        )
    return family


register(deepseek_ocr2.FAMILY)

__all__ = [
    "V1_MODEL_TYPES",
    "LoadOptions",
    "ModelFamily",
    "family_for",
    "register",
    "registered_model_types",
    "unregister",
]
