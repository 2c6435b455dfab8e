"""Every file emit writes in an image folder, in one list.

Each :class:`Artifact` names its file (or folder), the RenderStyle flag that turns it on (None:
always written) and the function that stages it from the rendered :class:`Page` (emit/folder.py:
nothing replaces the previous render until every file is written). Writing, removing stale
outputs and the up-to-date check (emit/plan.py) all walk ``ARTIFACTS``. To add
one (e.g. ``result.mmd``): one entry here, one RenderStyle flag with its CLI option
(dsocr/cli_emit.py), one row in docs/run-format.md's artifact table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsocr.emit._warnings import WarningList
from dsocr.emit.folder import StagedFolder
from dsocr.emit.grounding import Grounding
from dsocr.emit.info import build_info
from dsocr.emit.options import RenderStyle
from dsocr.emit.render import PlacedBox, draw_boxes, encode_jpeg, image_crops
from dsocr.emit.timings import StageTimings
from PIL import Image

from dsocr.tempnames import temp_final_name

INFO_FILE = "info.json"
RESULT_IMAGE = "result_with_boxes.jpg"
RESULT_MMD = "result.mmd"
CROPS_DIR = "images"
_CROP_NAME = re.compile(r"\d+\.jpg")


@dataclass
class Page:
    """One image being rendered: what its artifacts are written from (filled in as they go)."""

    row: dict[str, Any]
    timings: StageTimings
    model_id: str
    style: RenderStyle
    out_dir: Path
    source: Path
    #: The source image (RGB, EXIF orientation applied); the result image draws on it.
    image: Image.Image
    grounding: Grounding
    placed: list[PlacedBox]
    warnings: WarningList
    #: Where the artifacts are staged until the render is complete.
    folder: StagedFolder
    #: Position in ``placed`` -> crop file, relative to the folder (written by the crops artifact).
    crops: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    """One output of an image folder."""

    #: File name in the image folder (a folder when ``files`` is set).
    name: str
    write: Callable[[Page], None]
    #: The RenderStyle flag (and CLI option) that turns it on; None: always written.
    option: str | None = None
    #: For a folder: the names of the files emit owns in it (only those are ever removed).
    files: re.Pattern[str] | None = None

    def wanted(self, style: RenderStyle) -> bool:
        return self.option is None or bool(getattr(style, self.option))

    def clear_temps(self, out_dir: Path) -> None:
        """Delete temp files of this artifact that an earlier, killed emit left in ``out_dir``.

        Only temps of emit's own file names go; called while the run's emit lock is held, so no
        other emit is writing them.
        """
        folder = out_dir if self.files is None else out_dir / self.name
        if not folder.is_dir() or folder.is_symlink():
            return
        for child in folder.iterdir():
            if self._owns(temp_final_name(child.name)) and child.is_file():
                child.unlink(missing_ok=True)

    def present(self, out_dir: Path) -> list[str]:
        """The files of this artifact in ``out_dir`` now, by name relative to it."""
        path = out_dir / self.name
        if self.files is None:
            return [self.name] if path.is_file() else []
        if not path.is_dir():
            return []
        return [f"{self.name}/{child.name}" for child in path.iterdir() if self.files.fullmatch(child.name)]

    def _owns(self, final: str | None) -> bool:
        """True when ``final`` (a file name in this artifact's folder) is one this artifact writes."""
        if final is None:
            return False
        return final == self.name if self.files is None else self.files.fullmatch(final) is not None

    def remove_stale(self, out_dir: Path, kept: set[str]) -> None:
        """Delete what an earlier render of this artifact left in ``out_dir`` and the new one did
        not write (names relative to ``out_dir`` in ``kept`` stay), and nothing else."""
        path = out_dir / self.name
        if self.files is None:
            if self.name not in kept:
                path.unlink(missing_ok=True)
        elif path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if self.files.fullmatch(child.name) and f"{self.name}/{child.name}" not in kept:
                    child.unlink()


def _write_crops(page: Page) -> None:
    """Each ``image`` box cut from the undrawn source as images/N.jpg (N counts image boxes, as the vendor's).

    Each crop is encoded and written before the next is cut: memory holds one crop at a time.
    """
    for number, (position, crop) in enumerate(image_crops(page.image, page.placed)):
        if crop is None:
            page.warnings.add(f"image box {page.placed[position].pixels} is empty: no crop")
            continue
        relative = f"{CROPS_DIR}/{number}.jpg"
        page.folder.add(relative, encode_jpeg(crop, page.style.quality))
        page.crops[position] = relative
        del crop  # before the next one is cut


def _write_markdown(page: Page) -> None:
    """The text a person reads (info.json's text_clean), as the Markdown it is."""
    text = page.grounding.text_clean
    page.folder.add(RESULT_MMD, (text + "\n" if text else "").encode("utf-8"))


def _write_result_image(page: Page) -> None:
    unfilled = draw_boxes(page.image, page.placed, page.style)
    if unfilled:
        page.warnings.add(f"{unfilled} boxes drawn without fill: the fills already covered the page many times")
    page.folder.add(RESULT_IMAGE, encode_jpeg(page.image, page.style.quality))


def _write_info(page: Page) -> None:
    info = build_info(
        row=page.row,
        source_image=str(page.source),
        result_image=RESULT_IMAGE,
        size=page.image.size,
        grounding=page.grounding,
        placed=page.placed,
        crops=page.crops,
        timings=page.timings,
        model_id=page.model_id,
        style=page.style,
        warnings=page.warnings.as_tuple(),
        files=dict(page.folder.digests),
    )
    text = json.dumps(info, ensure_ascii=False, indent=2) + "\n"
    page.folder.add(INFO_FILE, text.encode("utf-8"))


#: In writing order: crops before the boxes are drawn over the source, info.json last (a folder
#: with an info.json holds a complete render).
ARTIFACTS: tuple[Artifact, ...] = (
    Artifact(CROPS_DIR, _write_crops, option="crops", files=_CROP_NAME),
    Artifact(RESULT_MMD, _write_markdown, option="markdown"),
    Artifact(RESULT_IMAGE, _write_result_image),
    Artifact(INFO_FILE, _write_info),
)


#: Folders of an image folder that emit writes into (never followed when they are links).
SUBFOLDERS = tuple(artifact.name for artifact in ARTIFACTS if artifact.files is not None)


def write_artifacts(page: Page) -> None:
    """Stage every artifact ``page.style`` asks for, in order, then put them in place together
    (info.json last) and remove what an earlier render wrote that this one did not."""
    for artifact in ARTIFACTS:
        if artifact.wanted(page.style):
            artifact.write(page)
    kept = set(page.folder.digests)
    page.folder.commit()
    for artifact in ARTIFACTS:
        artifact.remove_stale(page.out_dir, kept)


def clear_temps(out_dir: Path) -> None:
    """Delete the temp files a killed emit left in an image folder (and nothing else)."""
    for artifact in ARTIFACTS:
        artifact.clear_temps(out_dir)


def present_files(out_dir: Path) -> set[str]:
    """Every file emit writes that ``out_dir`` holds now (names relative to it), info.json aside."""
    return {name for artifact in ARTIFACTS if artifact.name != INFO_FILE for name in artifact.present(out_dir)}


def expected_files(style: RenderStyle) -> list[str]:
    """The files (not folders) a complete render in ``style`` has: what the up-to-date check reads."""
    return [artifact.name for artifact in ARTIFACTS if artifact.files is None and artifact.wanted(style)]
