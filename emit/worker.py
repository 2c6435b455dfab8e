"""Render one image: read its source, draw its boxes, write its folder. Runs in worker processes.

Everything a worker needs travels in a picklable :class:`RenderJob`; a worker returns a small
:class:`RenderOutcome`, so the parent never holds decoded images.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsocr.emit._warnings import WarningList
from dsocr.emit.artifacts import INFO_FILE, SUBFOLDERS, Page, write_artifacts
from dsocr.emit.family import parse_output
from dsocr.emit.folder import StagedFolder, check_not_linked
from dsocr.emit.grounding import Grounding
from dsocr.emit.options import RenderStyle
from dsocr.emit.render import place_boxes
from dsocr.emit.timings import StageTimings
from PIL import Image

from dsocr.families import FamilyFacts
from dsocr.pixels import check_regular_file, page_rgb

# Pillow reports an unreadable file with any of these, depending on the format and the damage
# (SyntaxError and EOFError come from its decoders, DecompressionBombError from huge images).
_IMAGE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
MOVED_HINT = "(if the images moved, map their folder with --image-root OLD=NEW)"


@dataclass(frozen=True)
class RenderJob:
    """One image to render: its prediction row, resolved timings, where to read and where to write."""

    row: dict[str, Any]
    timings: StageTimings
    model_id: str
    out_dir: Path
    style: RenderStyle
    family: FamilyFacts  # travels with the job: a worker never looks a family up by name
    source: Path  # absolute, after --image-root (emit/sources.py)


@dataclass(frozen=True)
class RenderOutcome:
    """What happened to one image (error is None when its folder was written), and the parse
    facts predictions.jsonl needs, so that the parent never parses a rendered row itself.
    ``kept``: the render failed and the folder still holds its previous complete render."""

    image_index: int
    error: str | None
    text_clean: str
    boxes: int
    kept: bool = False


def init_worker(parent_pid: int) -> None:
    """Set up a pool worker: Ctrl-C is the parent's to handle, and the worker dies with it.

    Without this a terminal's Ctrl-C prints a traceback from every worker, and a killed emit
    leaves workers rendering into folders that the next emit may be writing.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked while it started (emit/runner.py)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def open_source(path: Path) -> Image.Image:
    """The source page as capture fed it to the model (dsocr.pixels): DeepSeek-OCR's boxes refer
    to that image. Only a regular file is opened: a FIFO would block the render forever."""
    check_regular_file(path)
    with Image.open(path) as opened:
        opened.load()
        return page_rgb(opened)


def _size_warning(row: dict[str, Any], size: tuple[int, int]) -> list[str]:
    recorded = (row.get("width"), row.get("height"))
    if None in recorded or recorded == size:
        return []
    return [f"source image is {size[0]}x{size[1]} now, {recorded[0]}x{recorded[1]} when the model read it"]


def render_image(job: RenderJob) -> RenderOutcome:
    """Render one image's folder: every artifact its style asks for (emit/artifacts.py).

    A missing or unreadable source, or a failed write, is this image's error; the folder then
    keeps its previous render untouched (emit/folder.py): a render is replaced only by a complete one.
    """
    row = job.row
    text_raw = row.get("text_raw")
    grounding = parse_output(text_raw or "", job.family)
    source = job.source
    try:
        image = open_source(source)
    except FileNotFoundError:
        return _failed(job, grounding, f"source image {source} does not exist {MOVED_HINT}")
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
        folder=StagedFolder(job.out_dir),
    )
    try:
        # Checked again here, not only when planning: a link made since must not be followed.
        check_not_linked(job.out_dir, SUBFOLDERS)
        write_artifacts(page)
    except OSError as exc:
        page.folder.discard()
        return _failed(job, grounding, f"cannot write {job.out_dir}: {_reason(exc)}")
    except BaseException:
        page.folder.discard()  # Ctrl-C (one worker: this process) or a bug: no temp file stays
        raise
    finally:
        page.image.close()
    return RenderOutcome(row["image_index"], None, grounding.text_clean, grounding.box_count)


def _reason(exc: BaseException) -> str:
    """The error without the path repeated (OSError's str() names the file again)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _failed(job: RenderJob, grounding: Grounding, error: str) -> RenderOutcome:
    kept = not job.out_dir.is_symlink() and (job.out_dir / INFO_FILE).is_file()
    return RenderOutcome(job.row["image_index"], error, grounding.text_clean, grounding.box_count, kept)


def render_images(jobs: list[RenderJob]) -> list[RenderOutcome]:
    """Render several images in order (one task of the process pool)."""
    return [render_image(job) for job in jobs]
