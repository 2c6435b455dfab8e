"""Stage 3: per-image result_with_boxes.jpg and info.json from the Parquet alone (no torch).

Public API: :func:`render_run` (``dsocr emit``), :func:`import_outputs` (``dsocr import``),
:func:`parse_grounding` (DeepSeek-OCR output to blocks, boxes and clean text),
:func:`parse_output` (any family's output, by its grammar).
"""

from dsocr.emit.family import parse_output
from dsocr.emit.grounding import Grounding, parse_grounding
from dsocr.emit.importer import ImportSummary, import_outputs
from dsocr.emit.options import EmitOptions, RenderStyle
from dsocr.emit.runner import render_run
from dsocr.emit.sources import ImageRoot, parse_image_root
from dsocr.emit.summary import EmitFailedError, EmitSummary

__all__ = [
    "EmitFailedError",
    "EmitOptions",
    "EmitSummary",
    "Grounding",
    "ImageRoot",
    "ImportSummary",
    "RenderStyle",
    "import_outputs",
    "parse_grounding",
    "parse_image_root",
    "parse_output",
    "render_run",
]
