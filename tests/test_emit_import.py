"""`dsocr import`: outputs produced elsewhere become a run directory that emit renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from emit_helpers import GOLDEN_TEXT, draw_page, read_info, read_jsonl, run_cli, write_jsonl
from PIL import Image

from dsocr import rundir, schema

INTEGER_RANGE = "must be an integer 0..2147483647"
TEXT = "<|ref|>text<|/ref|><|det|>[[100, 100, 500, 400]]<|/det|>\nHello"


def test_imported_outputs_emit_like_a_capture(tmp_path: Path) -> None:
    first = draw_page(tmp_path / "outputs" / "pages" / "a.png")
    second = draw_page(tmp_path / "b.png", (300, 500))
    outputs = write_jsonl(
        tmp_path / "outputs" / "vllm.jsonl",
        [
            {"image": "pages/a.png", "text": TEXT, "timings_ms": {"decode": 812.5}, "extra": "ignored"},
            {"image": str(second), "text_raw": GOLDEN_TEXT, "generated_tokens": 95, "stop_reason": "eos"},
        ],
    )
    run_dir = tmp_path / "run"

    imported = run_cli("import", outputs, "--out", run_dir, "--model-id", "deepseek-ai/DeepSeek-OCR")
    emitted = run_cli("emit", run_dir, "--jobs", "1")

    assert imported.exit_code == 0, imported.output
    assert imported.stdout.startswith(f"import: 2 images -> {run_dir} in ")
    assert emitted.exit_code == 0, emitted.output
    assert "2 rendered of 2" in emitted.stdout
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert {key: run[key] for key in ("schema_version", "kind", "status", "source", "images")} == {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": "import",
        "status": "complete",
        "source": str(outputs.resolve()),
        "images": {"total": 2, "ok": 2, "failed": 0},
    }
    # An import knows only the model's id and family; every other model key is written, as null.
    assert (run["model"]["id"], run["model"]["family"]) == ("deepseek-ai/DeepSeek-OCR", "deepseek_ocr2")
    assert {key for key, value in run["model"].items() if value is not None} == {"id", "family"}
    info = read_info(run_dir, first)
    assert info["source_image"] == str(first.resolve())
    assert (info["model_id"], info["width"], info["height"], info["text_clean"]) == (
        "deepseek-ai/DeepSeek-OCR",
        400,
        300,
        "Hello",
    )
    assert info["timings_ms"] == {"vision": None, "prefill": None, "decode": 812.5}
    assert info["timings_source"] == {"vision": None, "prefill": None, "decode": "import"}
    assert len(read_info(run_dir, second)["boxes"]) == 5
    lines = read_jsonl(run_dir / "predictions.jsonl")
    assert [(line["image_md5"], line["tokens"]["generated"]) for line in lines] == [
        (rundir.path_md5(first), None),
        (rundir.path_md5(second), 95),
    ]


def test_failed_and_missing_images_are_kept_for_emit_to_report(tmp_path: Path) -> None:
    good = draw_page(tmp_path / "good.png")
    outputs = write_jsonl(
        tmp_path / "o.jsonl",
        [
            {"image": "good.png", "text": TEXT},
            {"image": "gone.png", "text": TEXT},
            {"image": "failed.png", "error": "timeout"},
        ],
    )
    run_dir = tmp_path / "run"

    imported = run_cli("import", outputs, "--out", run_dir)
    emitted = run_cli("emit", run_dir, "--jobs", "1")

    assert imported.exit_code == 0, imported.output
    assert "; 1 recorded as failed; 1 image files unreadable now (emit will report them)" in imported.stdout
    assert emitted.exit_code == 1
    assert "1 rendered, 1 failed, 1 not rendered (capture failed) of 3" in emitted.stdout
    assert read_info(run_dir, good)["model_id"] == "unknown"
    table = rundir.read_predictions(run_dir)
    assert table.column("status").to_pylist() == ["ok", "ok", "failed"]
    assert table.column("stop_reason").to_pylist() == [None, None, "error"]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (['{"image": "a.png", "text": "x"}', "{not json"], ":2: not JSON"),
        (['{"text": "x"}'], ":1: 'image' (a path) is required"),
        (['{"image": "a.png"}'], ":1: no text_raw or text (and no error)"),
        (['{"image": "a.png", "text": "x", "text_raw": "y"}'], ":1: give text_raw or text, not both"),
        (['{"image": "a.png", "text": 5}'], ":1: text must be a string"),
        (['{"image": "a.png", "text": "x"}', '{"image": "./a.png", "text": "y"}'], ":2: image "),
        (['{"image": "a.png", "text": "x", "timings_ms": {"decode": -1}}'], "timings_ms.decode must be a number >= 0"),
        (['{"image": "a.png", "text": "x", "timings_ms": {"gpu": 1}}'], "timings_ms has unknown stages gpu"),
        (
            ['{"image": "a.png", "text": "x", "generated_tokens": 1.5}'],
            "generated_tokens must be an integer 0..2147483647",
        ),
        # Past the int32 column: refused by range before anything is written, not at the Parquet write.
        (
            ['{"image": "a.png", "text": "x", "prompt_tokens": 3000000000}'],
            "prompt_tokens must be an integer 0..2147483647, not 3000000000",
        ),
        (
            ['{"image": "a.png", "text": "x", "prompt_tokens": 100000000000000000000000}'],
            "prompt_tokens must be an integer 0..2147483647",
        ),
        (
            ['{"image": "a.png", "text": "x", "timings_ms": {"decode": 1' + "0" * 400 + "}}"],
            "timings_ms.decode must be a number >= 0, not 1000",
        ),
        (["[" * 100_000 + "]" * 100_000], ":1: not JSON (nested too deeply)"),
        (['{"image": "a.png", "text": "x\\ud800"}'], ":1: text holds '\\ud800', a lone surrogate: not valid Unicode"),
        (['{"image": "a\\ud800.png", "text": "x"}'], ":1: image holds '\\ud800', a lone surrogate"),
        (['{"image": "a.png", "text": "x", "prompt": "\\udfff"}'], ":1: prompt holds '\\udfff', a lone surrogate"),
        (['{"image": "a\\u0000.png", "text": "x"}'], ":1: image 'a\\x00.png' holds a NUL character: not a path"),
        (['{"image": "a.png", "text": "x", "stop_reason": "tired"}'], "stop_reason 'tired' is not one of"),
        (["[1, 2]"], ":1: expected a JSON object"),
        (["", "  "], ": no outputs (one JSON object per line expected)"),
    ],
)
def test_bad_lines_are_one_line_errors_naming_the_line(tmp_path: Path, lines: list[str], error: str) -> None:
    outputs = tmp_path / "o.jsonl"
    outputs.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run_cli("import", outputs, "--out", tmp_path / "run")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {outputs}") and error in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_import_refuses_a_folder_that_holds_files(tmp_path: Path) -> None:
    outputs = write_jsonl(tmp_path / "o.jsonl", [{"image": "a.png", "text": "x"}])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine", encoding="utf-8")

    result = run_cli("import", outputs, "--out", tmp_path / "run")

    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: --out {tmp_path / 'run'} exists and is not an empty folder\n",
    )


def test_import_records_the_size_after_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # stored 400x300, shown rotated 270 degrees: 300x400
    Image.new("RGB", (400, 300), (255, 255, 255)).save(tmp_path / "r.jpg", exif=exif)
    outputs = write_jsonl(tmp_path / "o.jsonl", [{"image": "r.jpg", "text": TEXT}])

    assert run_cli("import", outputs, "--out", tmp_path / "run").exit_code == 0

    table = rundir.read_predictions(tmp_path / "run")
    assert (table.column("width").to_pylist(), table.column("height").to_pylist()) == ([300], [400])
