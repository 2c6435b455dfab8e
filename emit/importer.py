"""``dsocr import``: DeepSeek-OCR outputs produced elsewhere (vLLM, the vendor's script) to a run.

Input is JSON Lines, one object per image::

    {"image": "pages/p1.png", "text_raw": "<|ref|>title<|/ref|>...", "timings_ms": {"decode": 812.5}}

``image`` is required (relative paths are relative to the JSONL file's folder); exactly one of
``text_raw`` or ``text`` (the model output, special tokens kept), unless ``error`` says the
image failed. Optional: ``timings_ms`` (``vision``, ``prefill``, ``decode``), ``prompt``,
``prompt_tokens``, ``generated_tokens``, ``stop_reason``. Other keys are ignored.
The result is a run directory (run.json and predictions.parquet) that emit and analyze read;
run.json records the model family (``--family``, default DeepSeek-OCR-2), which tells emit
how to read the outputs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from dsocr import schema
from dsocr.errors import BadInputError, RunDirError
from dsocr.families import facts_for
from dsocr.options import DEFAULT_FAMILY, DEFAULT_MODEL_ID
from dsocr.records import ImageCounts, ModelRecord, PredictionRow, RunRecord
from dsocr.rundir import (
    content_sha256,
    path_md5,
    rows_to_table,
    write_predictions,
    write_run_json,
)
from dsocr.vocab import REFERENCE_STAGES, ImageStatus, RunKind, RunStatus, StopReason

INTEGER_KEYS = ("prompt_tokens", "generated_tokens")
#: The largest value of their Parquet column (int32): a larger one is refused by range, before
#: anything is written, instead of failing at the Parquet write.
INTEGER_MAX = 2**31 - 1
#: How much of a bad value an error line shows.
SHOWN_VALUE_CHARS = 40
TEXT_KEYS = ("text_raw", "text")
# EXIF orientations that swap width and height (rotations by 90 or 270 degrees).
_EXIF_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class ImportSummary:
    """What one import wrote."""

    run_dir: Path
    images: int
    failed: int
    unreadable: list[str]
    seconds: float

    def line(self) -> str:
        """One line for the CLI."""
        text = f"import: {self.images} images -> {self.run_dir} in {self.seconds:.1f} s"
        if self.failed:
            text += f"; {self.failed} recorded as failed"
        if self.unreadable:
            text += f"; {len(self.unreadable)} image files unreadable now (emit will report them)"
        return text


def _is_regular_file(path: Path) -> bool:
    """True for a regular file (links followed). A FIFO or device would block or never end a read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _image_size(path: Path) -> tuple[int, int] | None:
    """Width and height after EXIF orientation, read from the header; None when unreadable."""
    if not _is_regular_file(path):
        return None
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            orientation = opened.getexif().get(_EXIF_ORIENTATION_TAG)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _text(entry: dict[str, Any], where: str) -> str | None:
    given = [key for key in TEXT_KEYS if key in entry]
    if len(given) > 1:
        raise BadInputError(f"{where}: give text_raw or text, not both")
    if not given:
        if entry.get("error") is None:
            raise BadInputError(f"{where}: no text_raw or text (and no error)")
        return None
    value = entry[given[0]]
    if not isinstance(value, str):
        raise BadInputError(f"{where}: {given[0]} must be a string")
    return _unicode(value, given[0], where)


def _unicode(value: str, key: str, where: str) -> str:
    """``value``, refused when it cannot be stored as UTF-8 (a lone surrogate such as "\\ud800")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ascii(value[exc.start : exc.end])
        raise BadInputError(f"{where}: {key} holds {bad}, a lone surrogate: not valid Unicode") from None
    return value


def _timings(entry: dict[str, Any], where: str) -> dict[str, float | None]:
    timings = entry.get("timings_ms") or {}
    if not isinstance(timings, dict):
        raise BadInputError(f"{where}: timings_ms must be an object")
    unknown = sorted(set(timings) - set(REFERENCE_STAGES))
    if unknown:
        raise BadInputError(
            f"{where}: timings_ms has unknown stages {', '.join(unknown)} (known: {', '.join(REFERENCE_STAGES)})"
        )
    values: dict[str, float | None] = {}
    for stage in REFERENCE_STAGES:
        value = timings.get(stage)
        valid = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and value >= 0
            and (value <= sys.float_info.max if isinstance(value, int) else math.isfinite(value))
        )
        if value is not None and not valid:
            raise BadInputError(f"{where}: timings_ms.{stage} must be a number >= 0, not {_short(value)}")
        values[f"{stage}_ms"] = None if value is None else float(value)
    return values


def _optional(entry: dict[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in INTEGER_KEYS:
        value = entry.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INTEGER_MAX
        ):
            raise BadInputError(f"{where}: {key} must be an integer 0..{INTEGER_MAX}, not {_short(value)}")
        values[key] = value
    prompt = entry.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise BadInputError(f"{where}: prompt must be a string")
    if prompt is not None:
        _unicode(prompt, "prompt", where)
    stop_reason = entry.get("stop_reason")
    if stop_reason is not None and stop_reason not in set(StopReason):
        raise BadInputError(f"{where}: stop_reason {stop_reason!r} is not one of {', '.join(StopReason)}")
    error = entry.get("error")
    if error is not None and not isinstance(error, str):
        raise BadInputError(f"{where}: error must be a string")
    if error is not None:
        _unicode(error, "error", where)
    return {**values, "prompt": prompt, "stop_reason": stop_reason, "error": error}


def _image_path(entry: dict[str, Any], base: Path, where: str) -> Path:
    image = entry.get("image")
    if not isinstance(image, str) or not image:
        raise BadInputError(f"{where}: 'image' (a path) is required")
    _unicode(image, "image", where)
    if "\0" in image:
        raise BadInputError(f"{where}: image {image!a} holds a NUL character: not a path")
    path = Path(image).expanduser()
    try:
        resolved = (path if path.is_absolute() else base / path).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise BadInputError(f"{where}: image {image}: cannot be resolved ({exc})") from None
    # A folder name that is not UTF-8 (bytes kept as surrogates) cannot be stored as text.
    _unicode(str(resolved), "the resolved image path", where)
    return resolved


def _row(entry: Any, index: int, base: Path, where: str) -> PredictionRow:
    """The prediction row of one JSONL object."""
    if not isinstance(entry, dict):
        raise BadInputError(f"{where}: expected a JSON object")
    path = _image_path(entry, base, where)
    optional = _optional(entry, where)
    failed = optional["error"] is not None
    size = _image_size(path)
    return {
        "image_index": index,
        "image_path": str(path),
        "image_md5": path_md5(path),
        "image_sha256": content_sha256(path),
        "status": ImageStatus.failed if failed else ImageStatus.ok,
        "text_raw": _text(entry, where),
        "width": None if size is None else size[0],
        "height": None if size is None else size[1],
        **optional,
        "stop_reason": StopReason.error if failed else optional["stop_reason"],
        **_timings(entry, where),
    }


def _short(value: Any) -> str:
    """A value for an error line: a 10**23 or a 4,000-digit number is named by its size."""
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else f"{text[:SHOWN_VALUE_CHARS]}... ({len(text)} characters)"


def _read_lines(jsonl: Path) -> list[str]:
    """The file's lines. Only a regular file is opened: a FIFO would block forever, a device
    (/dev/zero) never end."""
    try:
        mode = os.stat(jsonl).st_mode
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{jsonl}: unreadable ({exc})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise BadInputError(f"{jsonl}: {kind}; give a JSON Lines file")
    try:
        return jsonl.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{jsonl}: unreadable ({exc})") from None


def _parse(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except RecursionError:  # [[[[... 100,000 deep: Python's parser recurses per level
        raise BadInputError(f"{where}: not JSON (nested too deeply)") from None
    except ValueError as exc:
        raise BadInputError(f"{where}: not JSON ({exc})") from None


def read_outputs(jsonl: Path) -> list[PredictionRow]:
    """Prediction rows from an outputs JSONL file; BadInputError naming the line of any problem."""
    lines = _read_lines(jsonl)
    base = jsonl.resolve().parent
    rows: list[PredictionRow] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{jsonl}:{number}"
        row = _row(_parse(line, where), len(rows), base, where)
        if row["image_path"] in first_line:
            raise BadInputError(f"{where}: image {row['image_path']} already on line {first_line[row['image_path']]}")
        first_line[row["image_path"]] = number
        rows.append(row)
    if not rows:
        raise BadInputError(f"{jsonl}: no outputs (one JSON object per line expected)")
    return rows


def _run_record(jsonl: Path, model_id: str, family: str, rows: list[PredictionRow]) -> RunRecord:
    failed = sum(row["status"] != ImageStatus.ok for row in rows)
    return RunRecord(
        kind=RunKind.import_,
        status=RunStatus.complete,
        model=ModelRecord(id=model_id, family=family),
        source=str(jsonl.resolve()),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        images=ImageCounts(total=len(rows), ok=len(rows) - failed, failed=failed),
    )


def import_outputs(
    jsonl: Path, out: Path, *, model_id: str = DEFAULT_MODEL_ID, family: str = DEFAULT_FAMILY
) -> ImportSummary:
    """Write run directory ``out`` from the outputs in ``jsonl``; ``out`` must be new or empty.

    ``family``: the model family that wrote the outputs (a name dsocr.families knows).
    """
    started = time.perf_counter()
    facts_for(family, where="--family")
    _unicode(model_id, "--model-id", "dsocr import")
    _unicode(str(jsonl.absolute()), "the outputs path", "dsocr import")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"--out {out} exists and is not an empty folder")
    rows = read_outputs(jsonl)
    write_predictions(rows_to_table(rows, schema.PREDICTIONS), out)
    # run.json last: a run directory whose run.json says complete has all its files.
    write_run_json(out, _run_record(jsonl, model_id, family, rows))
    unreadable = [row["image_path"] for row in rows if row["width"] is None and row["status"] == ImageStatus.ok]
    failed = sum(row["status"] != ImageStatus.ok for row in rows)
    return ImportSummary(out, len(rows), failed, unreadable, time.perf_counter() - started)
