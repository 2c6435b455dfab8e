"""`dsocr capture` against a hostile-but-realistic user, round 2 (issue 25): links out of the run,
two captures of one run, default run names, ``--resume`` of no run, pixel formats, inputs that
are not images, bounds checked before the model loads.

Real tiny model, real images, real Parquet, real flock; subprocesses where start-up matters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from capture_helpers import run_capture
from dsocr.capture.outdir import CAPTURE_LOCK, capture_lock, check_out
from PIL import Image, ImageDraw

from dsocr.rundir import read_predictions, read_run_json

TWO_TOKENS = ("--max-new-tokens", "2", "--profile", "off")


def _rows(run_dir: Path) -> dict[str, dict]:
    return {Path(row["image_path"]).name: row for row in read_predictions(run_dir).to_pylist()}


def _one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "Traceback" not in output
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    """A complete run of one page with a trace (trace/rank=0, predictions.parquet, capture.log)."""
    run_dir = tmp_path_factory.mktemp("round2") / "run"
    result = run_capture(sample_pages[0], "--out", run_dir, "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    return run_dir


def _copy(run_dir: Path, where: Path) -> Path:
    copy = where / "run"
    shutil.copytree(run_dir, copy, symlinks=True)
    return copy


# ---- links: capture never writes or deletes through a link out of the run ----

LINKED = ["predictions.parts", "trace", "trace/.pending", "trace/rank=0", "capture.log", "run.json", "samples"]


@pytest.mark.parametrize("name", LINKED)
def test_a_link_out_of_the_run_is_refused_and_nothing_outside_is_touched(
    finished_run: Path, tmp_path: Path, name: str
) -> None:
    run_dir = _copy(finished_run, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = outside / "planted.parquet"
    planted.write_bytes(b"not dsocr's")
    (outside / ".planted.tmp").write_bytes(b"not dsocr's either")
    link = run_dir / name
    if link.exists():
        if link.is_dir():
            shutil.copytree(link, outside / "moved")
            shutil.rmtree(link)
        else:
            shutil.copyfile(link, outside / link.name)
            link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    target = outside / link.name if name in ("capture.log", "run.json") else outside
    link.symlink_to(target)
    before = {path: path.read_bytes() for path in outside.rglob("*") if path.is_file()}

    result = run_capture("--resume", "--out", run_dir)
    assert result.exit_code == 1
    line = _one_error_line(result.output)
    assert line.startswith(f"Error: {link}: leads outside the run directory (to {target.resolve()})")
    assert line.endswith("remove the link")
    assert {path: path.read_bytes() for path in outside.rglob("*") if path.is_file()} == before


def test_a_link_that_stays_inside_the_run_is_followed(finished_run: Path, tmp_path: Path) -> None:
    run_dir = _copy(finished_run, tmp_path)
    real_log = run_dir / "logs" / "capture.log"
    real_log.parent.mkdir()
    (run_dir / "capture.log").rename(real_log)
    (run_dir / "capture.log").symlink_to(real_log)
    size = real_log.stat().st_size
    result = run_capture("--resume", "--out", run_dir)
    assert result.exit_code == 0, result.output
    assert real_log.stat().st_size > size
    assert read_run_json(run_dir).status == "complete"


# ---- one capture per run directory ----


def test_a_second_capture_of_a_run_is_refused_naming_the_holder(finished_run: Path, tmp_path: Path) -> None:
    run_dir = _copy(finished_run, tmp_path)
    record = (run_dir / "run.json").read_bytes()
    with capture_lock(run_dir):
        result = run_capture("--resume", "--out", run_dir)
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        f"Error: {run_dir}: another dsocr capture (pid {os.getpid()}) is writing this run; "
        "let it finish, or stop it, before capturing again"
    )
    assert (run_dir / "run.json").read_bytes() == record
    # Released: the same command now runs.
    assert run_capture("--resume", "--out", run_dir).exit_code == 0


def test_a_new_run_folder_locked_by_another_capture_is_refused(tmp_path: Path, sample_pages: list[Path]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with capture_lock(run_dir):
        result = run_capture(sample_pages[0], "--out", run_dir, *TWO_TOKENS)
    assert result.exit_code == 1
    assert "another dsocr capture" in _one_error_line(result.output)
    assert sorted(path.name for path in run_dir.iterdir()) == [CAPTURE_LOCK]
    # The lock file left behind does not make the folder "not empty".
    again = run_capture(sample_pages[0], "--out", run_dir, *TWO_TOKENS)
    assert again.exit_code == 0, again.output


def test_a_lock_file_that_is_a_link_is_refused(finished_run: Path, tmp_path: Path) -> None:
    run_dir = _copy(finished_run, tmp_path)
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("mine")
    (run_dir / CAPTURE_LOCK).unlink()
    (run_dir / CAPTURE_LOCK).symlink_to(elsewhere)
    result = run_capture("--resume", "--out", run_dir)
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        f"Error: {run_dir / CAPTURE_LOCK} is a symbolic link: capture never writes through a link"
    )
    assert elsewhere.read_text() == "mine"


# ---- default run names; --resume of no run; a quick refusal of --out ----

_PRINT_DEFAULT = "import os; from dsocr.cli_capture import _default_out; print(os.getpid(), _default_out())"


def test_default_run_names_of_captures_started_together_differ() -> None:
    children = [
        subprocess.Popen([sys.executable, "-c", _PRINT_DEFAULT], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    printed = [child.communicate(timeout=60)[0].split() for child in children]
    names = [name for _pid, name in printed]
    assert names[0] != names[1]
    for pid, name in printed:
        assert name.startswith("runs/") and name.endswith(f"-{pid}")


@pytest.mark.parametrize("kind", ["missing", "empty", "other files"])
def test_resume_of_a_folder_that_holds_no_run_is_refused(tmp_path: Path, kind: str) -> None:
    run_dir = tmp_path / "mistyped"
    if kind != "missing":
        run_dir.mkdir()
    if kind == "other files":
        (run_dir / "notes.txt").write_text("x")
    before = sorted(tmp_path.rglob("*"))
    result = run_capture("--resume", "--out", run_dir)
    assert result.exit_code == 1
    what = "no such folder" if kind == "missing" else "not a dsocr run (no run.json)"
    assert _one_error_line(result.output) == (
        f"Error: --resume --out {run_dir}: {what}, nothing to continue; drop --resume to start a new run"
    )
    assert sorted(tmp_path.rglob("*")) == before


def test_resume_without_out_is_refused() -> None:
    result = run_capture("--resume")
    assert result.exit_code == 1
    assert _one_error_line(result.output) == "Error: --resume continues the run named by --out: pass --out RUN"


_CHECK_NO_TORCH = """
import sys, time
from dsocr.cli import main
sys.argv = ["dsocr", "capture", *sys.argv[1:]]
started = time.perf_counter()
try:
    main()
except SystemExit as exc:
    code = exc.code
print("torch imported:", "torch" in sys.modules, "exit:", code, "seconds:", time.perf_counter() - started)
"""


@pytest.mark.parametrize("case", ["existing run", "bad architecture", "out under /proc"])
def test_a_refusal_before_the_model_never_imports_torch(finished_run: Path, tmp_path: Path, case: str) -> None:
    if case == "existing run":
        arguments = ["--out", str(finished_run)]
        message = f"Error: --out {finished_run} already holds a run: pass --resume to continue it, or another --out"
    elif case == "out under /proc":
        arguments = ["--out", "/proc/dsocr-x/run"]
        message = "Error: --out /proc/dsocr-x/run: cannot create it (No such file or directory)"
    else:
        model = tmp_path / "bad.json"
        model.write_text(json.dumps(_with_text(hidden_size=64.5)))
        arguments = ["--model", str(model), "--out", str(tmp_path / "run")]
        message = f"Error: {model}: text_config.hidden_size must be an integer >= 1, got 64.5"
    child = subprocess.run(
        [sys.executable, "-c", _CHECK_NO_TORCH, *arguments], capture_output=True, text=True, timeout=120
    )
    assert child.stderr.strip() == message
    assert "torch imported: False exit: 1" in child.stdout


def test_ranks_probing_a_new_out_at_once_both_pass_and_leave_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rank of a --gpus capture probes --out: another rank's mkdir between this one's check
    and its own mkdir is no refusal (torchrun ranks failed with "cannot create it (File exists)"),
    and a folder another rank filled meanwhile stays."""
    run_dir = tmp_path / "new" / "run"
    real_mkdir = Path.mkdir

    def another_rank_first(self: Path, *args: object, **kwargs: object) -> None:
        if self == run_dir and not self.exists():
            real_mkdir(self)  # the other rank's probe, between this rank's check and its mkdir
            (self / "run.json").write_text("{}")  # ... and its run starting in it
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", another_rank_first)
    check_out(run_dir)
    assert (run_dir / "run.json").is_file()  # the other rank's folder was not removed
    monkeypatch.setattr(Path, "mkdir", real_mkdir)
    (run_dir / "run.json").unlink()
    run_dir.rmdir()
    check_out(run_dir)  # alone, the probe still leaves nothing behind
    assert not run_dir.exists()


# ---- pixel formats reach the model as a person sees them ----
# Each reference is computed here pixel by pixel from the values written, independently of
# dsocr.pixels; Pillow's plain convert("RGB") is shown to differ, so each test can fail.

SIZE = (48, 32)
#: Rounding of the scaled value may differ by one step from the reference's.
TOLERANCE = 1


def _gradient(full_scale: float) -> list[float]:
    width, height = SIZE
    return [full_scale * ((x + y * width) % width) / (width - 1) for y in range(height) for x in range(width)]


def _gray_reference(values: list[float], full_scale: float) -> list[tuple[int, int, int]]:
    return [(round(value * 255 / full_scale),) * 3 for value in values]


def _max_difference(image, reference: list[tuple[int, ...]]) -> int:
    pixels = list(image.convert("RGB").get_flattened_data())
    assert len(pixels) == len(reference)
    pairs = zip(pixels, reference, strict=True)
    return max(abs(a - b) for pixel, expected in pairs for a, b in zip(pixel, expected, strict=True))


def _sixteen_bit_png(path: Path) -> list[tuple[int, int, int]]:
    values = [round(value) for value in _gradient(65535)]
    image = Image.new("I;16", SIZE)
    image.putdata(values)
    image.save(path)
    return _gray_reference(values, 65535)


def _float_tiff(path: Path) -> list[tuple[int, int, int]]:
    values = _gradient(1.0)
    image = Image.new("F", SIZE)
    image.putdata(values)
    image.save(path)
    return _gray_reference(values, 1.0)


def _colour_page():
    page = Image.new("RGB", SIZE, (250, 245, 240))
    draw = ImageDraw.Draw(page)
    draw.rectangle((4, 4, 20, 20), fill=(200, 30, 40))
    draw.rectangle((24, 8, 44, 28), fill=(20, 90, 180))
    return page


def _cmyk_tiff(path: Path) -> list[tuple[int, int, int]]:
    page = _colour_page()
    page.convert("CMYK").save(path)
    return list(page.get_flattened_data())


def _palette_png(path: Path) -> list[tuple[int, int, int]]:
    palette_page = _colour_page().quantize(colors=4)
    transparent = palette_page.getpixel((0, 0))  # the background's index
    palette_page.save(path, transparency=transparent)
    palette = palette_page.getpalette()
    return [
        (255, 255, 255) if index == transparent else tuple(palette[3 * index : 3 * index + 3])
        for index in palette_page.get_flattened_data()
    ]


def _alpha_png(path: Path) -> list[tuple[int, int, int]]:
    page = _colour_page().convert("RGBA")
    alphas = [(x * 255) // (SIZE[0] - 1) for y in range(SIZE[1]) for x in range(SIZE[0])]
    page.putalpha(Image.new("L", SIZE))
    page.putdata([(*pixel[:3], alpha) for pixel, alpha in zip(page.get_flattened_data(), alphas, strict=True)])
    page.save(path)
    return [
        tuple(round(channel * alpha / 255 + 255 * (1 - alpha / 255)) for channel in pixel[:3])
        for pixel, alpha in zip(page.get_flattened_data(), alphas, strict=True)
    ]


#: EXIF Orientation 6: the stored pixels must be turned 90 degrees clockwise to be seen upright.
ROTATE_CLOCKWISE = 6
EXIF_ORIENTATION = 0x0112


def _exif_rotated_png(path: Path) -> list[tuple[int, int, int]]:
    page = _colour_page()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_CLOCKWISE
    page.save(path, exif=exif)
    upright = page.transpose(Image.Transpose.ROTATE_270)  # PIL's ROTATE_270 turns clockwise
    return list(upright.get_flattened_data())


PIXEL_FORMATS = {
    "gray16.png": _sixteen_bit_png,
    "float.tiff": _float_tiff,
    "cmyk.tiff": _cmyk_tiff,
    "palette.png": _palette_png,
    "alpha.png": _alpha_png,
    "exif-rotated.png": _exif_rotated_png,
}

#: Where Pillow's plain convert("RGB") shows another page (CMYK it converts right by itself).
PLAIN_CONVERT_WRONG = frozenset(PIXEL_FORMATS) - {"cmyk.tiff"}


@pytest.mark.parametrize("name", list(PIXEL_FORMATS))
def test_a_page_reaches_the_model_as_a_person_sees_it(tmp_path: Path, name: str) -> None:
    from dsocr.capture.images import load_image
    from dsocr.emit.worker import open_source

    path = tmp_path / name
    reference = PIXEL_FORMATS[name](path)
    for opened in (load_image(path), open_source(path)):  # what the model reads, what emit draws on
        assert opened.mode == "RGB"
        assert _max_difference(opened, reference) <= TOLERANCE, name
    if name in PLAIN_CONVERT_WRONG:
        with Image.open(path) as plain:
            naive = plain.convert("RGB")
        assert naive.size != load_image(path).size or _max_difference(naive, reference) > TOLERANCE


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_pixel_formats_fifo_multipage_and_empty_folder_in_one_capture(tmp_path: Path, sample_pages: list[Path]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name, write in PIXEL_FORMATS.items():
        write(images / name)
    pages = [_colour_page(), _colour_page().rotate(90), _colour_page().rotate(180)]
    pages[0].save(images / "three-pages.tiff", save_all=True, append_images=pages[1:])
    fifo = _fifo(tmp_path / "pipe.png")
    empty = tmp_path / "empty-folder"
    (empty / "deeper").mkdir(parents=True)
    (empty / "notes.txt").write_text("no image here")
    run_dir = tmp_path / "run"

    result = run_capture(images, fifo, empty, "--out", run_dir, *TWO_TOKENS)
    assert result.exit_code == 0, result.output
    rows = _rows(run_dir)
    assert len(rows) == len(PIXEL_FORMATS) + 3  # every argument has its row: the empty folder too
    for name in PIXEL_FORMATS:
        assert rows[name]["status"] == "ok", rows[name]["error"]
    assert (rows["exif-rotated.png"]["width"], rows["exif-rotated.png"]["height"]) == (SIZE[1], SIZE[0])
    failed = {name: rows[name]["error"] for name in ("three-pages.tiff", "pipe.png", "empty-folder")}
    assert failed == {
        "three-pages.tiff": f"{images / 'three-pages.tiff'}: a TIFF of 3 pages; capture reads one page per file "
        "(split it into one file per page)",
        "pipe.png": f"{fifo}: not a regular file (a FIFO): refused without opening it",
        "empty-folder": f"{empty}: a folder holding no image (searched recursively for "
        ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)",
    }
    record = read_run_json(run_dir)
    assert record.status == "complete" and record.images.failed == 3
    with Image.open(images / "gray16.png") as stored:
        assert stored.mode.startswith("I")  # the file really is 16-bit


def test_only_empty_folders_are_refused_before_anything_runs(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_capture(empty, "--out", tmp_path / "run", *TWO_TOKENS)
    assert result.exit_code == 1
    assert _one_error_line(result.output) == f"Error: no images found in {empty}"
    assert not (tmp_path / "run").exists()


def test_a_file_name_that_is_not_utf8_is_one_line_before_anything_runs(
    tmp_path: Path, sample_pages: list[Path]
) -> None:
    name = os.fsdecode(b"page-\xff.png")
    shutil.copyfile(sample_pages[0], tmp_path / name)
    result = run_capture(tmp_path / name, "--out", tmp_path / "run", *TWO_TOKENS)
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        f"Error: {tmp_path}/page-\\xff.png: the file name is not UTF-8 (dsocr records paths as UTF-8 text): rename it"
    )
    assert not (tmp_path / "run").exists()
    # Nothing was left to block the next capture of the same --out.
    assert run_capture(sample_pages[0], "--out", tmp_path / "run", *TWO_TOKENS).exit_code == 0


# ---- architecture and bounds: refused before the model loads, without torch ----


def _embedded() -> dict:
    from dsocr.capture.architecture import EMBEDDED_CONFIG

    return json.loads(EMBEDDED_CONFIG.read_text())


def _with_text(**fields: object) -> dict:
    config = _embedded()
    return {**config, "text_config": {**config["text_config"], **fields}}


ARCHITECTURES = {
    "hidden-zero": (_with_text(hidden_size=0), "text_config.hidden_size must be an integer >= 1, got 0"),
    "hidden-fraction": (_with_text(hidden_size=64.5), "text_config.hidden_size must be an integer >= 1, got 64.5"),
    "layers-true": (
        _with_text(num_hidden_layers=True),
        "text_config.num_hidden_layers must be an integer >= 1, got true",
    ),
    "layers-negative": (
        _with_text(num_hidden_layers=-2),
        "text_config.num_hidden_layers must be an integer >= 1, got -2",
    ),
    "heads-not-dividing": (
        _with_text(num_attention_heads=3),
        "text_config.hidden_size 64 is not divisible by text_config.num_attention_heads 3",
    ),
    "experts-per-token": (
        _with_text(num_experts_per_tok=8),
        "text_config.num_experts_per_tok 8 is more than text_config.n_routed_experts 4",
    ),
    "vision-negative": (
        {**_embedded(), "vision_config": {**_embedded()["vision_config"], "sam_config": {"hidden_size": -32}}},
        "vision_config.sam_config.hidden_size must be an integer >= 1, got -32",
    ),
}
#: Deeper than Python's JSON parser recurses.
NESTING_DEPTH = 100_000


@pytest.mark.parametrize("case", list(ARCHITECTURES))
def test_an_architecture_no_model_can_have_is_one_line_before_the_model_loads(tmp_path: Path, case: str) -> None:
    config, message = ARCHITECTURES[case]
    model = tmp_path / f"{case}.json"
    model.write_text(json.dumps(config))
    result = run_capture("--model", model, "--out", tmp_path / "run", *TWO_TOKENS)
    assert result.exit_code == 1
    assert _one_error_line(result.output) == f"Error: {model}: {message}"
    assert not (tmp_path / "run").exists()


def test_a_config_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    model = tmp_path / "deep.json"
    model.write_text('{"a": ' * NESTING_DEPTH + "1" + "}" * NESTING_DEPTH)
    result = run_capture("--model", model, "--out", tmp_path / "run", *TWO_TOKENS)
    assert result.exit_code == 1
    assert _one_error_line(result.output) == f"Error: {model}: not a readable JSON config (nested too deeply)"


def test_warmup_tokens_past_the_context_are_refused_up_front(tmp_path: Path, sample_pages: list[Path]) -> None:
    result = run_capture(sample_pages[0], "--warmup-tokens", "2147483647", "--out", tmp_path / "run", *TWO_TOKENS)
    assert result.exit_code == 1
    assert _one_error_line(result.output) == (
        "Error: --warmup-tokens 2147483647 does not fit the model's context "
        "(text_config.max_position_embeddings = 1280 tokens, the prompt included): use fewer"
    )
    assert not (tmp_path / "run").exists()


def test_warmup_is_capped_at_the_room_the_prompt_leaves(tmp_path: Path, sample_pages: list[Path]) -> None:
    # 1279 tokens pass the up-front check (< 1280) but the page's prompt takes hundreds of them.
    run_dir = tmp_path / "run"
    result = run_capture(sample_pages[0], "--warmup-tokens", "1279", "--out", run_dir, *TWO_TOKENS)
    assert result.exit_code == 0, result.output
    assert "warm-up skipped" not in (run_dir / "capture.log").read_text()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_out_under_proc_is_one_line(tmp_path: Path, sample_pages: list[Path]) -> None:
    result = run_capture(sample_pages[0], "--out", "/proc/dsocr-x", *TWO_TOKENS)
    assert result.exit_code == 1
    line = _one_error_line(result.output)
    assert line.startswith("Error: ") and "/proc" in line


def test_a_page_too_thin_for_the_processor_names_the_limit(tmp_path: Path, sample_pages: list[Path]) -> None:
    thin = tmp_path / "thin.png"
    Image.new("RGB", (1, 5000), "white").save(thin)
    run_dir = tmp_path / "run"
    result = run_capture(thin, sample_pages[0], "--out", run_dir, *TWO_TOKENS)
    assert result.exit_code == 0, result.output
    assert _rows(run_dir)["thin.png"]["error"] == (
        f"{thin}: 1x5000: aspect ratio too extreme (5000:1; the limit is under 2048:1, "
        "as the processor scales the long side to 1024 pixels)"
    )


def test_probing_a_new_out_leaves_nothing_behind(tmp_path: Path) -> None:
    from dsocr.capture.outdir import check_out

    check_out(tmp_path / "a" / "b" / "run")
    assert list(tmp_path.iterdir()) == []
