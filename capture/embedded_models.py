"""The models that ship inside dsocr, by name: ``--model embedded:NAME`` (no ``--model``: the default).

- ``embedded:layout-deepseek-ocr2`` (the default): a layout model trained on synthetic pages by
  train/train_layout.py (run 3, installed by ``python -m train.ship``): it writes where a page's
  blocks are and what kind, not their text; below the targets of docs/layout-model.md, above the
  random model on every figure there.
- ``embedded:tiny-deepseek-ocr2``: DeepSeek-OCR-2's architecture at tiny widths with seeded random
  weights, the fastest model (its output is meaningless; shapes, kernels and stop logic are real).
  Tests name it; it is also the default of a checkout whose layout folder is missing.
"""

from __future__ import annotations

from pathlib import Path

from dsocr.errors import BadInputError

EMBEDDED_DIR = Path(__file__).parent / "embedded"
PREFIX = "embedded:"
LAYOUT = "layout-deepseek-ocr2"
TINY = "tiny-deepseek-ocr2"
_CANDIDATES = {LAYOUT: EMBEDDED_DIR / LAYOUT, TINY: EMBEDDED_DIR / f"{TINY}.json"}
#: Name -> a checkpoint folder (trained weights) or an architecture .json (random weights), for the
#: models whose files are installed.
EMBEDDED = {name: path for name, path in _CANDIDATES.items() if path.exists()}
DEFAULT_NAME = LAYOUT if LAYOUT in EMBEDDED else TINY
#: What the layout model's folder says about itself (training and evaluation figures) for run.json.
MODEL_CARD = "dsocr-model.json"


def embedded_name(model: Path | None) -> str | None:
    """The embedded model ``--model`` names (``None``: the default), or None when it is a path."""
    if model is None:
        return DEFAULT_NAME
    text = str(model)
    if not text.startswith(PREFIX):
        return None
    name = text.removeprefix(PREFIX)
    if name not in EMBEDDED:
        raise BadInputError(f"--model {text}: no such embedded model (embedded: {', '.join(sorted(EMBEDDED))})")
    return name


def model_id(name: str) -> str:
    """The id run.json records for embedded model ``name``."""
    return f"{PREFIX}{name}"
