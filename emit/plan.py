"""Which prediction rows emit renders: --only selection, safe folder names, up-to-date checks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from dsocr.emit.artifacts import INFO_FILE, expected_files, present_files
from dsocr.emit.folder import file_sha256
from dsocr.emit.options import RenderStyle
from dsocr.emit.timings import timings_path

from dsocr.errors import BadInputError
from dsocr.rundir import PREDICTIONS_FILE, PREDICTIONS_PARTS_DIR, path_md5, resolved

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def is_md5(value: str) -> bool:
    """True for a lowercase md5 hex digest: the only folder names emit writes under viz/."""
    return _MD5_HEX.fullmatch(value) is not None


#: Between a PDF's path and its page number in a page key (``<pdf>#page=<N>``, capture/pdf.py).
PAGE_SEPARATOR = "#page="


def select_md5s(only: tuple[str, ...], rows: Iterable[tuple[str, str]]) -> set[str] | None:
    """The image md5s picked by ``--only`` values (md5s, image paths or page keys, or a PDF's
    path for all its pages); None when not given.

    ``rows`` are ``(image_md5, image_path)`` pairs of the run. A value that names no image of
    the run is a BadInputError, so that a typo is not a silent no-op.
    """
    if not only:
        return None
    by_path: dict[str, str] = {}
    by_document: dict[str, set[str]] = {}
    known: set[str] = set()
    for image_md5, image_path in rows:
        known.add(image_md5)
        by_path[image_path] = image_md5
        document, page_separator, _page = image_path.rpartition(PAGE_SEPARATOR)
        if page_separator:
            by_document.setdefault(document, set()).add(image_md5)
    selected: set[str] = set()
    for value in only:
        if value in known:
            selected.add(value)
        elif value in by_path:
            selected.add(by_path[value])
        elif path_md5(value) in known:
            selected.add(path_md5(value))
        elif str(resolved(value)) in by_document:
            selected.update(by_document[str(resolved(value))])
        else:
            raise BadInputError(f"--only {value}: no image of this run has that md5 or path")
    return selected


def _mtime_ns(path: Path) -> int:
    return path.stat().st_mtime_ns if path.is_file() else 0


def inputs_mtime_ns(run_dir: Path) -> int:
    """When emit's inputs last changed: predictions (file and parts) and analyze's timings."""
    parts_dir = run_dir / PREDICTIONS_PARTS_DIR
    parts = list(parts_dir.glob("*.parquet")) if parts_dir.is_dir() else []
    return max(_mtime_ns(path) for path in [run_dir / PREDICTIONS_FILE, timings_path(run_dir), *parts])


def is_up_to_date(out_dir: Path, inputs_ns: int, style: RenderStyle) -> bool:
    """True when the folder holds a complete render in ``style`` of the current inputs.

    Judged from what is on disk, not from any record of an earlier emit: every file ``style``
    asks for exists and is newer than the inputs, info.json says it was drawn in ``style``, and
    every file info.json lists has the sha256 it records (a render killed between its renames,
    or two emits that wrote one folder, leave files that do not match).
    """
    if min(_mtime_ns(out_dir / name) for name in expected_files(style)) <= inputs_ns:
        return False
    info_path = out_dir / INFO_FILE
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # unreadable: render it again
    if not isinstance(info, dict) or info.get("render") != style.as_json():
        return False
    files = _recorded_files(info.get("files"))
    if files is None or not all(name in files for name in expected_files(style) if name != INFO_FILE):
        return False
    if not present_files(out_dir) <= set(files):
        return False  # a kill between the renames and the removal of an earlier render's extra files
    return all(_inside(out_dir, name) and file_sha256(out_dir / name) == digest for name, digest in files.items())


def _recorded_files(entries: object) -> dict[str, str] | None:
    """info.json's ``files`` as name -> sha256, or None when it is not the documented list."""
    if not isinstance(entries, list):
        return None
    files: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return None
        if not isinstance(entry.get("sha256"), str):
            return None
        files[entry["name"]] = entry["sha256"]
    return files


def _inside(out_dir: Path, name: str) -> bool:
    """True when ``name`` (from info.json) is a plain relative path that stays in ``out_dir``."""
    relative = Path(name)
    return not relative.is_absolute() and ".." not in relative.parts
