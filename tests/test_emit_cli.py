"""`dsocr emit` end to end: real pages, real Parquet run directories, the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from emit_helpers import (
    GOLDEN_CLEAN,
    GOLDEN_LABELS,
    GOLDEN_NORM_BOXES,
    GOLDEN_PIXEL_BOXES,
    GOLDEN_TEXT,
    MODEL_ID,
    draw_page,
    make_run,
    prediction_row,
    read_info,
    read_jsonl,
    run_cli,
    viz_folder,
)
from PIL import Image

from dsocr import rundir, schema

SMALL_TEXT = (
    "<|ref|>text<|/ref|><|det|>[[100, 100, 500, 400]]<|/det|>\nHello"
    "<|ref|>image<|/ref|><|det|>[[600, 100, 900, 900]]<|/det|>"
)


@pytest.fixture
def small_run(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A run of three small pages with SMALL_TEXT each."""
    pages = [draw_page(tmp_path / "pages" / f"p{index}.png", shade=index * 10) for index in range(3)]
    run_dir = make_run(tmp_path / "run", [prediction_row(i, page, SMALL_TEXT) for i, page in enumerate(pages)])
    return run_dir, pages


def _emit(run_dir: Path, *args: str | Path):
    return run_cli("emit", run_dir, "--jobs", "1", *args)


def test_golden_run_writes_md5_folders_with_the_expected_info_json(tmp_path: Path, sample_pages: list[Path]) -> None:
    page = sample_pages[0]
    run_dir = make_run(tmp_path / "run", [prediction_row(0, page, width=1240, height=1754)])

    result = _emit(run_dir)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"emit: 1 rendered of 1 images -> {run_dir / 'viz'} in ")
    folder = run_dir / "viz" / rundir.path_md5(page)
    assert sorted(p.name for p in folder.iterdir()) == ["info.json", "result_with_boxes.jpg"]
    raw = (folder / "info.json").read_text(encoding="utf-8")
    assert raw.endswith("}\n") and "光学压缩" in raw  # ensure_ascii=False, newline-terminated
    info = json.loads(raw)
    assert info["source_image"] == str(page.resolve())
    assert info["result_image"] == "result_with_boxes.jpg"
    assert (info["schema_version"], info["model_id"], info["width"], info["height"]) == (2, MODEL_ID, 1240, 1754)
    assert info["text_raw"] == GOLDEN_TEXT
    assert info["text_clean"] == GOLDEN_CLEAN
    assert [box["label"] for box in info["boxes"]] == GOLDEN_LABELS
    assert [box["box_norm"] for box in info["boxes"]] == GOLDEN_NORM_BOXES
    assert [box["box"] for box in info["boxes"]] == GOLDEN_PIXEL_BOXES
    assert info["boxes"][0]["text"] == "# 1. Optical compression"
    assert info["tokens"] == {"prompt": 270, "image": 257, "generated": 120}
    assert info["stop_reason"] == "eos"
    assert info["timings_ms"] == {"vision": 11.5, "prefill": 22.25, "decode": 480.0}
    assert set(info["timings_source"].values()) == {"capture:reference"}
    assert info["warnings"] == []
    assert info["render"] == {"line_width": None, "labels": True, "quality": 90, "crops": False, "markdown": False}
    assert info["line_width_px"] == 2  # 1240 px across: the vendor's 2 px
    jpeg_bytes = (folder / "result_with_boxes.jpg").read_bytes()
    assert info["files"] == [{"name": "result_with_boxes.jpg", "sha256": hashlib.sha256(jpeg_bytes).hexdigest()}]
    with Image.open(folder / "result_with_boxes.jpg") as result_image:
        assert (result_image.format, result_image.size) == ("JPEG", (1240, 1754))


def test_predictions_jsonl_has_one_line_per_row(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, pages = small_run

    assert _emit(run_dir).exit_code == 0
    lines = read_jsonl(run_dir / "predictions.jsonl")

    assert [line["image_index"] for line in lines] == [0, 1, 2]
    first = lines[0]
    assert first["image_md5"] == rundir.path_md5(pages[0])
    assert (first["status"], first["error"], first["boxes"], first["text_clean"]) == ("ok", None, 2, "Hello")
    assert first["viz"] == f"viz/{rundir.path_md5(pages[0])}"
    assert (first["emit_status"], first["emit_error"]) == ("rendered", None)
    assert first["timings_ms"] == {"vision": 11.5, "prefill": 22.25, "decode": 480.0}
    assert not (run_dir / "predictions.md").exists()


def test_second_emit_skips_up_to_date_images_and_force_renders_identical_bytes(
    small_run: tuple[Path, list[Path]],
) -> None:
    run_dir, pages = small_run
    assert _emit(run_dir).exit_code == 0
    jpeg = viz_folder(run_dir, pages[0]) / "result_with_boxes.jpg"
    first_bytes, first_mtime = jpeg.read_bytes(), jpeg.stat().st_mtime_ns

    skipped = _emit(run_dir)
    assert skipped.exit_code == 0
    assert "0 rendered, 3 up to date" in skipped.stdout
    assert jpeg.stat().st_mtime_ns == first_mtime

    forced = _emit(run_dir, "--force")
    assert "3 rendered of 3" in forced.stdout
    assert jpeg.stat().st_mtime_ns != first_mtime
    assert jpeg.read_bytes() == first_bytes


def test_newer_predictions_or_another_style_make_outputs_stale(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, _ = small_run
    assert _emit(run_dir).exit_code == 0

    assert "3 rendered" in _emit(run_dir, "--line-width", "5").stdout
    future = (run_dir / "predictions.parquet").stat().st_mtime + 60
    os.utime(run_dir / "predictions.parquet", (future, future))
    assert "3 rendered" in _emit(run_dir, "--line-width", "5").stdout


def test_rendering_options_change_the_image(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, pages = small_run
    jpeg = viz_folder(run_dir, pages[0]) / "result_with_boxes.jpg"
    sizes = {}
    for name, args in {"default": (), "thick": ("--line-width", "8"), "bare": ("--no-labels",)}.items():
        assert _emit(run_dir, *args).exit_code == 0
        sizes[name] = jpeg.read_bytes()
    assert len(set(sizes.values())) == 3
    assert _emit(run_dir, "--quality", "20").exit_code == 0
    assert len(jpeg.read_bytes()) < len(sizes["default"])
    assert read_info(run_dir, pages[0])["render"]["quality"] == 20


def test_only_renders_the_named_images_by_md5_or_path(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, pages = small_run

    result = _emit(run_dir, "--only", rundir.path_md5(pages[0]), "--only", pages[2])

    assert result.exit_code == 0, result.output
    assert "2 rendered, 1 not selected of 3" in result.stdout
    assert [viz_folder(run_dir, page).is_dir() for page in pages] == [True, False, True]
    statuses = [line["emit_status"] for line in read_jsonl(run_dir / "predictions.jsonl")]
    assert statuses == ["rendered", "not_selected", "rendered"]


def test_only_naming_no_image_is_an_error(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, _ = small_run

    result = _emit(run_dir, "--only", "nope.png")

    assert result.exit_code == 1
    assert result.stderr == "Error: --only nope.png: no image of this run has that md5 or path\n"


def test_missing_source_fails_that_image_only(tmp_path: Path) -> None:
    good = draw_page(tmp_path / "good.png")
    missing = tmp_path / "gone.png"
    run_dir = make_run(tmp_path / "run", [prediction_row(0, missing), prediction_row(1, good)])

    result = _emit(run_dir)

    assert result.exit_code == 1
    assert "1 rendered, 1 failed of 2" in result.stdout
    assert result.stderr == (
        f"Error: 1 of 2 images could not be rendered (first: source image {missing} does not exist "
        f"(if the images moved, map their folder with --image-root OLD=NEW)); each is listed in "
        f"{run_dir / 'predictions.jsonl'}\n"
    )
    assert (viz_folder(run_dir, good) / "info.json").is_file()
    assert not viz_folder(run_dir, missing).exists()
    failed = read_jsonl(run_dir / "predictions.jsonl")[0]
    assert (failed["emit_status"], failed["viz"]) == ("failed", None)
    assert "does not exist" in failed["emit_error"]


def test_unreadable_source_is_an_error_entry(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run_dir = make_run(tmp_path / "run", [prediction_row(0, broken)])

    result = _emit(run_dir)

    assert result.exit_code == 1
    assert "cannot identify image file" in result.stderr


def test_capture_failures_are_counted_not_rendered_and_not_an_error(tmp_path: Path) -> None:
    good = draw_page(tmp_path / "good.png")
    failed_row = {**prediction_row(1, tmp_path / "bad.png", None), "status": "failed", "error": "CUDA OOM"}
    run_dir = make_run(tmp_path / "run", [prediction_row(0, good), failed_row])

    result = _emit(run_dir)

    assert result.exit_code == 0, result.output
    assert "1 rendered, 1 not rendered (capture failed) of 2" in result.stdout
    line = read_jsonl(run_dir / "predictions.jsonl")[1]
    assert (line["status"], line["error"], line["emit_status"], line["viz"]) == (
        "failed",
        "CUDA OOM",
        "capture_failed",
        None,
    )


def test_malformed_output_renders_with_warnings(tmp_path: Path) -> None:
    page = draw_page(tmp_path / "p.png")
    text = "<|ref|>text<|/ref|><|det|>[[1, 2, nan, 4], [-10, 5, 2000, 500], [9, 9, 1, 1]]<|/det|>x<|ref|>title"
    run_dir = make_run(tmp_path / "run", [prediction_row(0, page, text, width=999, height=999)])

    result = _emit(run_dir)

    assert result.exit_code == 0, result.output
    info = read_info(run_dir, page)
    assert [box["box"] for box in info["boxes"]] == [[0, 1, 400, 150]]
    assert info["warnings"][0] == "source image is 400x300 now, 999x999 when the model read it"
    assert len(info["warnings"]) == 5


def test_folder_name_from_parquet_cannot_escape_the_viz_root(tmp_path: Path) -> None:
    page = draw_page(tmp_path / "p.png")
    run_dir = make_run(tmp_path / "run", [{**prediction_row(0, page), "image_md5": "../../escaped"}])

    result = _emit(run_dir)

    assert result.exit_code == 1
    assert "image_md5 '../../escaped' is not an md5 digest" in result.stderr
    assert not (tmp_path / "escaped").exists()
    assert list((run_dir / "viz").iterdir()) == []


def test_viz_dir_moves_the_outputs(small_run: tuple[Path, list[Path]], tmp_path: Path) -> None:
    run_dir, pages = small_run
    elsewhere = tmp_path / "elsewhere"

    assert _emit(run_dir, "--viz-dir", "pictures").exit_code == 0
    assert _emit(run_dir, "--viz-dir", elsewhere).exit_code == 0

    assert (viz_folder(run_dir, pages[0], "pictures") / "info.json").is_file()
    assert (elsewhere / rundir.path_md5(pages[0]) / "info.json").is_file()
    assert not (run_dir / "viz").exists()
    assert read_jsonl(run_dir / "predictions.jsonl")[0]["viz"] == str(elsewhere / rundir.path_md5(pages[0]))


def test_crops_are_cut_from_the_source_not_the_annotated_image(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, pages = small_run

    assert _emit(run_dir, "--crops").exit_code == 0

    folder = viz_folder(run_dir, pages[0])
    info = read_info(run_dir, pages[0])
    assert [box["crop"] for box in info["boxes"]] == [None, "images/0.jpg"]
    x1, y1, x2, y2 = info["boxes"][1]["box"]
    with Image.open(folder / "images" / "0.jpg") as crop, Image.open(pages[0]) as source:
        assert crop.size == (x2 - x1, y2 - y1)
        # A white part of the page stays white: no tint, no outline from the drawing.
        assert crop.convert("L").crop((5, 5, 20, 20)).getextrema()[0] >= 250
        assert source.getpixel((x1 + 10, y1 + 10)) == (255, 255, 255)
    assert _emit(run_dir).exit_code == 0  # without --crops the crops go away
    assert list((folder / "images").iterdir()) == []


def test_markdown_writes_the_clean_text_as_result_mmd_on_request(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, pages = small_run
    folder = viz_folder(run_dir, pages[0])
    assert _emit(run_dir).exit_code == 0
    assert not (folder / "result.mmd").exists()  # opt-in

    assert _emit(run_dir, "--markdown").exit_code == 0  # a new option: the folder is not up to date

    info = read_info(run_dir, pages[0])
    assert info["render"]["markdown"] is True
    assert info["text_clean"]  # the fixture's text has prose outside its grounding blocks
    assert (folder / "result.mmd").read_text(encoding="utf-8") == info["text_clean"] + "\n"
    assert "<|ref|>" in SMALL_TEXT and "<|ref|>" not in (folder / "result.mmd").read_text(encoding="utf-8")
    assert _emit(run_dir, "--markdown").output.startswith("emit: 0 rendered, 3 up to date")
    (folder / "result.mmd").unlink()  # a missing artifact makes the folder stale again
    assert _emit(run_dir, "--markdown").output.startswith("emit: 1 rendered, 2 up to date")
    assert _emit(run_dir).exit_code == 0  # without --markdown the file goes away
    assert not (folder / "result.mmd").exists()


def test_exif_rotation_is_applied_before_placing_boxes(tmp_path: Path) -> None:
    page = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    Image.new("RGB", (400, 300), (255, 255, 255)).save(page, exif=exif)
    run_dir = make_run(tmp_path / "run", [prediction_row(0, page, "<|ref|>a<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>")])

    assert _emit(run_dir).exit_code == 0

    info = read_info(run_dir, page)
    assert (info["width"], info["height"], info["boxes"][0]["box"]) == (300, 400, [0, 0, 300, 400])


def test_timings_stay_whole_image_after_analyze_and_trace_figures_carry_coverage(
    small_run: tuple[Path, list[Path]],
) -> None:
    """A sampled run's trace holds 12 of 127 decode steps: timings_ms keeps the reference decode."""
    run_dir, pages = small_run
    timings = [
        {"image_index": 0, "rank": 0, "stage": "vision", "cpu_ms_traced": 9.0, "gpu_span_ms_traced": 7.5},
        {
            "image_index": 0,
            "rank": 0,
            "stage": "decode",
            "cpu_ms_traced": 40.0,
            "gpu_span_ms_traced": 30.0,
            "gpu_busy_ms_traced": 2.0,
            "steps_traced": 12,
            "steps_total": 127,
        },
        {"image_index": 0, "rank": 0, "stage": "prefill", "cpu_ms_traced": 20.0, "gpu_span_ms_traced": 19.0},
    ]
    table = rundir.rows_to_table(timings, schema.TIMINGS)
    rundir.write_table_atomic(table, run_dir / "analysis" / "timings.parquet")

    assert _emit(run_dir).exit_code == 0

    info = read_info(run_dir, pages[0])
    assert info["timings_ms"] == {"vision": 11.5, "prefill": 22.25, "decode": 480.0}
    assert set(info["timings_source"].values()) == {"capture:reference"}
    assert info["trace_ms"]["decode"] == {
        "cpu_ms_traced": 40.0,
        "gpu_busy_ms_traced": 2.0,
        "gpu_span_ms_traced": 30.0,
        "kernel_count_traced": None,
        "steps_traced": 12,
        "steps_total": 127,
    }
    assert info["trace_ms"]["vision"]["gpu_span_ms_traced"] == 7.5
    record = json.loads((run_dir / "predictions.jsonl").read_text().splitlines()[0])
    assert record["timings_ms"] == info["timings_ms"]
    assert record["trace_ms"] == info["trace_ms"]


def test_a_complete_trace_fills_a_stage_the_row_lacks(tmp_path: Path) -> None:
    page = draw_page(tmp_path / "p.png")
    row = {**prediction_row(0, page, SMALL_TEXT), "vision_ms": None, "decode_ms": None}
    run_dir = make_run(tmp_path / "run", [row])
    timings = [
        {"image_index": 0, "rank": 0, "stage": "vision", "cpu_ms_traced": 9.0, "gpu_span_ms_traced": 7.5},
        {"image_index": 0, "rank": 0, "stage": "decode", "cpu_ms_traced": 400.0, "steps_traced": 5, "steps_total": 9},
    ]
    rundir.write_table_atomic(rundir.rows_to_table(timings, schema.TIMINGS), run_dir / "analysis" / "timings.parquet")

    assert _emit(run_dir).exit_code == 0

    info = read_info(run_dir, page)
    assert info["timings_ms"] == {"vision": 7.5, "prefill": 22.25, "decode": None}
    assert info["timings_source"] == {
        "vision": "analysis:complete_trace",
        "prefill": "capture:reference",
        "decode": None,
    }


def test_in_progress_run_renders_from_prediction_parts(tmp_path: Path) -> None:
    page = draw_page(tmp_path / "p.png")
    run_dir = tmp_path / "run"
    rundir.write_prediction_part(run_dir, prediction_row(0, page, SMALL_TEXT))
    make_run(tmp_path / "other", [])  # run.json shape only
    (tmp_path / "other" / "run.json").rename(run_dir / "run.json")

    assert _emit(run_dir).exit_code == 0
    assert len(read_info(run_dir, page)["boxes"]) == 2


def test_worker_processes_render_the_same_bytes_as_one_process(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, pages = small_run
    assert _emit(run_dir).exit_code == 0
    one_process = [(viz_folder(run_dir, page) / "result_with_boxes.jpg").read_bytes() for page in pages]

    result = run_cli("emit", run_dir, "--force", "--jobs", "2")

    assert result.exit_code == 0, result.output
    assert [(viz_folder(run_dir, page) / "result_with_boxes.jpg").read_bytes() for page in pages] == one_process


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--quality", "0"), "Error: --quality 0: must be 1..95\n"),
        (("--line-width", "0"), "Error: --line-width 0: must be 1..64\n"),
        (("--jobs", "0"), "Error: --jobs 0: must be at least 1\n"),
    ],
)
def test_bad_options_are_one_line_errors(small_run: tuple[Path, list[Path]], args: tuple[str, ...], error: str) -> None:
    run_dir, _ = small_run

    result = run_cli("emit", run_dir, *args)

    assert (result.exit_code, result.stderr) == (1, error)


def test_not_a_run_directory_is_a_one_line_error(tmp_path: Path) -> None:
    result = _emit(tmp_path)

    assert (result.exit_code, result.stderr) == (1, f"Error: {tmp_path}: not a dsocr run directory (no run.json)\n")


def test_viz_dir_that_is_a_file_is_a_one_line_error(small_run: tuple[Path, list[Path]]) -> None:
    run_dir, _ = small_run
    (run_dir / "taken").write_text("not a folder", encoding="utf-8")

    result = _emit(run_dir, "--viz-dir", "taken")

    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {run_dir / 'taken'}: cannot write image folders there (File exists)\n",
    )


def test_thousands_of_boxes_render_capped_with_warnings(tmp_path: Path) -> None:
    page = draw_page(tmp_path / "p.png")
    text = "<|ref|>text<|/ref|><|det|>[" + ", ".join("[0, 0, 999, 999]" for _ in range(5000)) + "]<|/det|>"
    run_dir = make_run(tmp_path / "run", [prediction_row(0, page, text)])

    result = _emit(run_dir)

    assert result.exit_code == 0, result.output
    info = read_info(run_dir, page)
    assert len(info["boxes"]) == 1000
    assert info["warnings"] == [
        "4000 boxes beyond the first 1000 ignored",
        "996 boxes drawn without fill: the fills already covered the page many times",
    ]


@pytest.mark.parametrize("command", ["emit", "import"])
def test_every_option_is_documented_in_the_run_format(command: str) -> None:
    help_text = run_cli(command, "--help").output
    options = set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text)) - {"--help"}
    documented = (Path(__file__).resolve().parents[1] / "docs" / "run-format.md").read_text(encoding="utf-8")

    assert options
    assert sorted(option for option in options if f"`{option}" not in documented) == []
