"""Thumbnails of emit's renders (viz/<md5>/result_with_boxes.jpg), embedded, linking to the full files."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import pyarrow.compute as pc
from dsocr.report._unavailable import Unavailable
from dsocr.report.inputs import RunInputs
from PIL import Image

from dsocr import rundir
from dsocr.vocab import ImageStatus

RESULT_IMAGE = "result_with_boxes.jpg"
THUMB_SIZE = (180, 255)
THUMB_QUALITY = 60
#: Thumbnails embedded per page; a larger run links the rest from nowhere and says so.
MAX_THUMBS = 200


def _thumbnail(path: Path) -> str | None:
    """A small JPEG as a data URI; None when the render cannot be read (the page says which)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", THUMB_SIZE)  # JPEG: decode at a reduced scale, much faster
            image.thumbnail(THUMB_SIZE)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=THUMB_QUALITY)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnails_html(run: RunInputs, page_dir: Path) -> str | Unavailable:
    """A grid of linked thumbnails; links are relative to the page so the run folder can move."""
    ok = run.predictions.filter(pc.equal(run.predictions["status"], ImageStatus.ok)).select(
        ["image_index", "image_md5", "image_path"]
    )
    renders = [
        (row, run.run_dir / rundir.VIZ_DIR / row["image_md5"] / RESULT_IMAGE)
        for row in ok.to_pylist()
        if (run.run_dir / rundir.VIZ_DIR / row["image_md5"] / RESULT_IMAGE).is_file()
    ]
    if not renders:
        return Unavailable(f"no {rundir.VIZ_DIR}/<md5>/{RESULT_IMAGE} (run `dsocr emit {run.run_dir}` to draw them)")
    cells = []
    for row, path in renders[:MAX_THUMBS]:
        link = html.escape(os.path.relpath(path, page_dir))
        name = html.escape(f"img {row['image_index']}: {Path(row['image_path']).name}")
        source = _thumbnail(path)
        inner = f'<img src="{source}" alt="{name}">' if source else "(unreadable render)"
        cells.append(f'<figure><a href="{link}">{inner}</a><figcaption>{name}</figcaption></figure>')
    note = f"<p>first {MAX_THUMBS} of {len(renders)} renders</p>" if len(renders) > MAX_THUMBS else ""
    return f'<div class="thumbs">{"".join(cells)}</div>{note}'
