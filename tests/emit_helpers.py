"""Helpers for emit tests: real pages, real Parquet run directories, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from typer.testing import CliRunner, Result

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr import rundir, schema
from dsocr._app import app
from dsocr.records import ImageCounts, ModelRecord, RunRecord
from dsocr.vocab import ImageStatus, RunKind, RunStatus

MODEL_ID = "deepseek-ai/DeepSeek-OCR-2"
FAMILY = "deepseek_ocr2"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
PAGE_SIZE = (400, 300)
PAGE_COLOUR = (255, 255, 255)
INK = (30, 30, 30)

#: A model output in DeepSeek-OCR's grammar, with the pixel boxes it gives on a 1240x1754 page.
GOLDEN_TEXT = (
    "<|ref|>title<|/ref|><|det|>[[70, 48, 600, 85]]<|/det|>\n# 1. Optical compression\n\n"
    "<|ref|>text<|/ref|><|det|>[[70, 100, 930, 260]]<|/det|>\nDeepSeek-OCR compresse une page — 光学压缩.\n\n"
    "<|ref|>image<|/ref|><|det|>[[70, 300, 930, 700], [100, 720, 400, 800]]<|/det|>\n"
    "<|ref|>image_caption<|/ref|><|det|>[[70, 710, 600, 740]]<|/det|>\n<center>Figure 1</center>" + EOS
)
GOLDEN_LABELS = ["title", "text", "image", "image", "image_caption"]
GOLDEN_NORM_BOXES = [
    [70, 48, 600, 85],
    [70, 100, 930, 260],
    [70, 300, 930, 700],
    [100, 720, 400, 800],
    [70, 710, 600, 740],
]
# int(v / 999 * 1240) and int(v / 999 * 1754), worked out by hand.
GOLDEN_PIXEL_BOXES = [
    [86, 84, 744, 149],
    [86, 175, 1154, 456],
    [86, 526, 1154, 1229],
    [124, 1264, 496, 1404],
    [86, 1246, 744, 1299],
]
GOLDEN_CLEAN = "# 1. Optical compression\n\nDeepSeek-OCR compresse une page — 光学压缩.\n\n<center>Figure 1</center>"


def draw_page(path: Path, size: tuple[int, int] = PAGE_SIZE, *, shade: int = 0) -> Path:
    """A small page with a few dark bars (``shade`` varies its content), saved at ``path``."""
    image = Image.new("RGB", size, PAGE_COLOUR)
    draw = ImageDraw.Draw(image)
    for row in range(5):
        top = 20 + row * (size[1] // 6)
        draw.rectangle((20, top, size[0] - 20 - shade, top + 12), fill=INK)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def prediction_row(image_index: int, image_path: Path | str, text_raw: str | None = GOLDEN_TEXT, **extra: Any) -> dict:
    """A prediction row as capture writes it for a successful image."""
    row = {
        "image_index": image_index,
        "image_path": str(image_path),
        "image_md5": rundir.path_md5(image_path),
        "status": "ok",
        "text_raw": text_raw,
        "prompt_tokens": 270,
        "image_tokens": 257,
        "generated_tokens": 120,
        "stop_reason": "eos",
        "vision_ms": 11.5,
        "prefill_ms": 22.25,
        "decode_ms": 480.0,
        "rank": 0,
    }
    return {**row, **extra}


def make_run(
    run_dir: Path, rows: list[dict[str, Any]], *, model_id: str = MODEL_ID, family: str | None = FAMILY
) -> Path:
    """A finished capture run directory: run.json and predictions.parquet, written by rundir
    (``family`` None: model.family null, as in imports written before dsocr recorded it)."""
    rundir.write_table_atomic(rundir.rows_to_table(rows, schema.PREDICTIONS), run_dir / rundir.PREDICTIONS_FILE)
    ok = sum(row["status"] == ImageStatus.ok for row in rows)
    counts = ImageCounts(total=len(rows), ok=ok, failed=len(rows) - ok)
    model = ModelRecord(id=model_id, family=family)
    record = RunRecord(kind=RunKind.capture, status=RunStatus.complete, model=model, images=counts)
    rundir.write_run_json(run_dir, record)
    return run_dir


def run_cli(*args: str | Path) -> Result:
    """`dsocr ARGS...` through the real CLI, stderr kept apart from stdout."""
    return CliRunner().invoke(app, [str(arg) for arg in args])


def viz_folder(run_dir: Path, image_path: Path | str, viz: str = rundir.VIZ_DIR) -> Path:
    """Where emit writes an image's outputs."""
    return run_dir / viz / rundir.path_md5(image_path)


def read_info(run_dir: Path, image_path: Path | str) -> dict[str, Any]:
    """The info.json emit wrote for ``image_path``."""
    return json.loads((viz_folder(run_dir, image_path) / "info.json").read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every object of a JSON Lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, entries: list[dict[str, Any]]) -> Path:
    """Write ``entries`` as JSON Lines."""
    path.write_text("".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries), encoding="utf-8")
    return path
