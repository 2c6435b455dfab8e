"""Render one image: read its source, draw its boxes, write its folder. Runs in worker processes.

Everything a worker needs travels in a picklable :class:`RenderJob`; a worker returns a small
:class:`RenderOutcome`, so the parent never holds decoded images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsocr.emit._warnings import WarningList
from dsocr.emit.artifacts import Page, remove_outputs, write_artifacts
from dsocr.emit.family import parse_output
from dsocr.emit.grounding import Grounding
from dsocr.emit.options import RenderStyle
from dsocr.emit.render import place_boxes
from dsocr.emit.timings import StageTimings
from PIL import Image, ImageOps

from dsocr.families import FamilyFacts

# Pillow reports an unreadable file with any of these, depending on the format and the damage
# (SyntaxError and EOFError come from its decoders, DecompressionBombError from huge images).
_IMAGE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)
_RGB = "RGB"


@dataclass(frozen=True)
class RenderJob:
    """One image to render: its prediction row, resolved timings, and where to write."""

    row: dict[str, Any]
    timings: StageTimings
    model_id: str
    out_dir: Path
    style: RenderStyle
    family: FamilyFacts  # travels with the job: a worker never looks a family up by name


@dataclass(frozen=True)
class RenderOutcome:
    """What happened to one image (error is None when its folder was written), and the parse
    facts predictions.jsonl needs, so that the parent never parses a rendered row itself."""

    image_index: int
    error: str | None
    text_clean: str
    boxes: int


def source_path(recorded: str) -> Path:
    """The absolute source path of a prediction row (capture records absolute paths already)."""
    path = Path(recorded)
    return path if path.is_absolute() else path.resolve()


def open_source(path: Path) -> Image.Image:
    """The source image as RGB, EXIF orientation applied: DeepSeek-OCR's boxes refer to that image."""
    with Image.open(path) as opened:
        opened.load()
        ImageOps.exif_transpose(opened, in_place=True)
        return opened if opened.mode == _RGB else opened.convert(_RGB)


def _size_warning(row: dict[str, Any], size: tuple[int, int]) -> list[str]:
    recorded = (row.get("width"), row.get("height"))
    if None in recorded or recorded == size:
        return []
    return [f"source image is {size[0]}x{size[1]} now, {recorded[0]}x{recorded[1]} when the model read it"]


def render_image(job: RenderJob) -> RenderOutcome:
    """Render one image's folder: every artifact its style asks for (emit/artifacts.py).

    A missing or unreadable source, or a failed write, is this image's error; the folder is
    then left without outputs, so that nothing stale stands beside the new predictions.
    """
    row = job.row
    text_raw = row.get("text_raw")
    grounding = parse_output(text_raw or "", job.family)
    source = source_path(row["image_path"])
    try:
        image = open_source(source)
    except _IMAGE_ERRORS as exc:
        return _failed(job, grounding, f"cannot read source image {source}: {_reason(exc)}")
    warnings = WarningList()
    if text_raw is None:
        warnings.add("the prediction has no text_raw: nothing to draw")
    warnings.extend(_size_warning(row, image.size))
    warnings.extend(grounding.warnings)
    page = Page(
        row=row,
        timings=job.timings,
        model_id=job.model_id,
        style=job.style,
        out_dir=job.out_dir,
        source=source,
        image=image,
        grounding=grounding,
        placed=place_boxes(grounding, *image.size, job.family),
        warnings=warnings,
    )
    try:
        remove_outputs(job.out_dir)
        write_artifacts(page)
    except OSError as exc:
        return _failed(job, grounding, f"cannot write {job.out_dir}: {_reason(exc)}")
    return RenderOutcome(row["image_index"], None, grounding.text_clean, grounding.box_count)


def _reason(exc: BaseException) -> str:
    """The error without the path repeated (OSError's str() names the file again)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _failed(job: RenderJob, grounding: Grounding, error: str) -> RenderOutcome:
    try:
        remove_outputs(job.out_dir)
    except OSError as exc:
        error = f"{error}; and cannot clear {job.out_dir}: {_reason(exc)}"
    return RenderOutcome(job.row["image_index"], error, grounding.text_clean, grounding.box_count)


def render_images(jobs: list[RenderJob]) -> list[RenderOutcome]:
    """Render several images in order (one task of the process pool)."""
    return [render_image(job) for job in jobs]
