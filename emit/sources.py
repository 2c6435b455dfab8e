"""Where each prediction's source image is now: relative paths and moved image folders.

Capture records absolute paths; a run written by an older dsocr may hold paths relative to the
directory it ran in, which is not recorded. The row's ``image_md5`` is the md5 of the absolute
path at capture, so the candidate base whose path gives that md5 is the right one.
``--image-root OLD=NEW`` then maps a folder that moved since the capture.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dsocr.errors import BadInputError
from dsocr.rundir import PAGES_DIR, path_md5

_SEPARATOR = "="


@dataclass(frozen=True)
class ImageRoot:
    """``--image-root OLD=NEW``: images recorded under ``old`` are read from ``new``."""

    old: Path
    new: Path

    def remap(self, path: Path) -> Path | None:
        """``path`` moved from ``old`` to ``new``, or None when it is not under ``old``."""
        return self.new / path.relative_to(self.old) if path.is_relative_to(self.old) else None


def parse_image_root(value: str) -> ImageRoot:
    """An ``OLD=NEW`` option value (split at the first '='); NEW must be an existing folder."""
    old, separator, new = value.partition(_SEPARATOR)
    if not separator or not old or not new:
        raise BadInputError(f"--image-root {value}: must be OLD=NEW (the folder at capture, and where it is now)")
    new_path = Path(os.path.abspath(Path(new).expanduser()))
    if not new_path.is_dir():
        raise BadInputError(f"--image-root {value}: {new_path} is not a folder")
    return ImageRoot(Path(os.path.abspath(Path(old).expanduser())), new_path)


def _relative_source(path: Path, image_md5: str, run_dir: Path) -> Path:
    """The absolute path a relative ``path`` had at capture: the base that reproduces the md5."""
    bases = [Path.cwd(), *[run_dir.absolute(), *run_dir.absolute().parents]]
    for base in bases:
        candidate = base / path
        if path_md5(candidate) == image_md5:
            return candidate.resolve()
    return (Path.cwd() / path).resolve()  # not found: the error names where it was looked for


def recorded_source(image_path: str, image_md5: str, run_dir: Path) -> Path:
    """The absolute path a prediction row's image had at capture."""
    path = Path(image_path)
    return path if path.is_absolute() else _relative_source(path, image_md5, run_dir)


def source_now(recorded: Path, roots: Iterable[ImageRoot]) -> Path:
    """Where the image recorded at ``recorded`` is read from: the longest matching root's remap."""
    for root in sorted(roots, key=lambda root: len(root.old.parts), reverse=True):
        moved = root.remap(recorded)
        if moved is not None:
            return moved
    return recorded


def check_roots_used(roots: Iterable[ImageRoot], recorded: Iterable[Path]) -> None:
    """A root under which no image of the run lies is a typo: refuse it rather than ignore it."""
    unused = list(roots)
    for path in recorded:
        unused = [root for root in unused if root.remap(path) is None]
        if not unused:
            return
    if unused:
        raise BadInputError(f"--image-root {unused[0].old}: no image of this run was recorded under it")


def stored_page(run_dir: Path, image_md5: str) -> Path:
    """The rendered PDF page capture kept for a row: ``pages/<image_md5>.png`` in the run.

    Built from the md5 (checked to be a digest before a job is made), never from a stored
    path: emit reads nothing outside the run for a page.
    """
    return run_dir.absolute() / PAGES_DIR / f"{image_md5}.png"
