"""The JSON emit writes: each image's ``info.json`` and each line of ``predictions.jsonl``.

Both are documented field by field in docs/run-format.md; a change there is a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dsocr.emit.grounding import Grounding
from dsocr.emit.options import RenderStyle
from dsocr.emit.render import PlacedBox, line_width
from dsocr.emit.timings import StageTimings

#: info.json's version: 2 since trace figures are named for what they cover (``trace_ms.<stage>.cpu_ms_traced``).
INFO_SCHEMA_VERSION = 2


# Values of predictions.jsonl's emit_status.
EMIT_RENDERED = "rendered"
EMIT_UP_TO_DATE = "up_to_date"
EMIT_FAILED = "failed"
EMIT_NOT_SELECTED = "not_selected"  # left out by --only
EMIT_CAPTURE_FAILED = "capture_failed"  # the model produced nothing to draw


def _tokens(row: Mapping[str, Any]) -> dict[str, int | None]:
    return {
        "prompt": row.get("prompt_tokens"),
        "image": row.get("image_tokens"),
        "generated": row.get("generated_tokens"),
    }


def _pdf(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PDF and page a row was rendered from (null for an image)."""
    if row.get("page") is None:
        return None
    return {
        "path": row.get("source_path"),
        "page": row["page"],
        "page_count": row.get("page_count"),
        "render_ms": row.get("render_ms"),
    }


def _loop(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The repetition loop at the end of the output (null when none; dsocr.loops)."""
    start = row.get("loop_start_step")
    if start is None:
        return None
    generated = row.get("generated_tokens")
    return {
        "start_step": start,
        "period_tokens": row.get("loop_period_tokens"),
        "tokens": None if generated is None else generated - start,
        "decode_ms": row.get("loop_ms"),
    }


def _box_entry(grounding: Grounding, box: PlacedBox, norm: list[int | float], crop: str | None) -> dict[str, Any]:
    return {
        "label": box.label,
        "block": box.block,
        "box": list(box.pixels),
        "box_norm": norm,
        "text": grounding.blocks[box.block].text,
        "crop": crop,
    }


def build_info(
    *,
    row: Mapping[str, Any],
    source_image: str,
    result_image: str,
    size: tuple[int, int],
    grounding: Grounding,
    placed: list[PlacedBox],
    crops: Mapping[int, str],
    timings: StageTimings,
    model_id: str,
    style: RenderStyle,
    warnings: tuple[str, ...],
    files: Mapping[str, str],
) -> dict[str, Any]:
    """info.json of one rendered image. ``crops`` maps a box's position in ``placed`` to its file;
    ``files`` each other file of the render (relative name) to its sha256."""
    norms = [box.as_list() for block in grounding.blocks for box in block.boxes]
    return {
        "schema_version": INFO_SCHEMA_VERSION,
        "source_image": source_image,
        "result_image": result_image,
        "image_index": row["image_index"],
        "image_md5": row["image_md5"],
        "model_id": model_id,
        "width": size[0],
        "height": size[1],
        "text_raw": row.get("text_raw"),
        "text_clean": grounding.text_clean,
        "tokens": _tokens(row),
        "stop_reason": row.get("stop_reason"),
        "pdf": _pdf(row),
        "loop": _loop(row),
        "timings_ms": timings.ms,
        "timings_source": timings.source,
        "trace_ms": timings.trace,
        "boxes": [
            _box_entry(grounding, box, norm, crops.get(position))
            for position, (box, norm) in enumerate(zip(placed, norms, strict=True))
        ],
        "warnings": list(warnings),
        "render": style.as_json(),
        "line_width_px": line_width(style, *size),
        "files": [{"name": name, "sha256": digest} for name, digest in files.items()],
    }


def prediction_record(
    *,
    row: Mapping[str, Any],
    grounding: Grounding | None,
    timings: StageTimings,
    viz: str | None,
    emit_status: str,
    emit_error: str | None,
) -> dict[str, Any]:
    """One line of predictions.jsonl (``grounding`` None: a row without output, or one that a
    worker parses and renders, which fills in text_clean and boxes)."""
    return {
        "image_index": row["image_index"],
        "image_path": row["image_path"],
        "image_md5": row["image_md5"],
        "status": row["status"],
        "error": row.get("error"),
        "text_raw": row.get("text_raw"),
        "text_clean": None if grounding is None else grounding.text_clean,
        "boxes": None if grounding is None else grounding.box_count,
        "tokens": _tokens(row),
        "stop_reason": row.get("stop_reason"),
        "pdf": _pdf(row),
        "loop": _loop(row),
        "timings_ms": timings.ms,
        "timings_source": timings.source,
        "trace_ms": timings.trace,
        "viz": viz,
        "emit_status": emit_status,
        "emit_error": emit_error,
    }
