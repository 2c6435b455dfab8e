"""What ``dsocr emit`` may be asked: validated, frozen option objects."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dsocr.emit.sources import ImageRoot

from dsocr.errors import BadInputError
from dsocr.options import DEFAULT_QUALITY, VIZ_DIR

MAX_LINE_WIDTH = 64
MIN_QUALITY = 1
MAX_QUALITY = 95  # Pillow's documented ceiling: above it files grow with no visible gain


@dataclass(frozen=True)
class RenderStyle:
    """How a page is drawn and saved. Recorded in info.json; a change makes outputs stale."""

    #: Outline width in pixels; None: scaled with each page (emit/render.py, line_width).
    line_width: int | None = None
    labels: bool = True
    quality: int = DEFAULT_QUALITY
    crops: bool = False
    markdown: bool = False

    def __post_init__(self) -> None:
        if self.line_width is not None and not 1 <= self.line_width <= MAX_LINE_WIDTH:
            raise BadInputError(f"--line-width {self.line_width}: must be 1..{MAX_LINE_WIDTH}")
        if not MIN_QUALITY <= self.quality <= MAX_QUALITY:
            raise BadInputError(f"--quality {self.quality}: must be {MIN_QUALITY}..{MAX_QUALITY}")

    def as_json(self) -> dict[str, Any]:
        """The style as info.json's ``render`` object."""
        return asdict(self)


@dataclass(frozen=True)
class EmitOptions:
    """Options of :func:`emit.render_run`.

    viz_dir: root of the per-image folders, relative to the run unless absolute (default ``viz``).
    only: image md5s or paths to render (default: all). force: re-render up-to-date images.
    jobs: worker processes (default: os.cpu_count()). image_roots: ``--image-root`` remaps of
    moved image folders (default: none).
    """

    viz_dir: Path = Path(VIZ_DIR)
    style: RenderStyle = field(default_factory=RenderStyle)
    only: tuple[str, ...] = ()
    force: bool = False
    jobs: int | None = None
    image_roots: tuple[ImageRoot, ...] = ()

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise BadInputError(f"--jobs {self.jobs}: must be at least 1")

    @property
    def worker_count(self) -> int:
        """Worker processes to use at most."""
        return self.jobs or os.cpu_count() or 1
