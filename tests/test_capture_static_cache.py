"""`dsocr capture --cache static` on the embedded tiny model (CPU): real generate, real profiler.

The compiled path runs here too, through the library: ``compile_backend="eager"`` makes
transformers compile decode on the CPU with Dynamo only (no C++ toolchain, about 2 s), which is
enough to see where compilation happens and that a second image, with another prompt length,
compiles nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.compute as pc
import pytest

torch = pytest.importorskip("torch")

from capture_helpers import FAST_MODEL_PATH, run_capture  # noqa: E402
from dsocr.capture import static_cache  # noqa: E402
from dsocr.capture.config import CacheKind, CaptureConfig, CompileMode  # noqa: E402
from dsocr.capture.models import load_model  # noqa: E402
from dsocr.capture.runner import run  # noqa: E402
from PIL import Image  # noqa: E402
from trace_helpers import assert_steps_match_clock, read_trace  # noqa: E402
from transformers import XLNetConfig, XLNetLMHeadModel  # noqa: E402

from dsocr.errors import BadInputError  # noqa: E402
from dsocr.rundir import read_predictions, read_run_json  # noqa: E402
from dsocr.vocab import ProfileMode  # noqa: E402

TOKENS = 8


def _texts(run_dir: Path) -> dict[str, str]:
    return {Path(row["image_path"]).name: row["text_raw"] for row in read_predictions(run_dir).to_pylist()}


@pytest.fixture(scope="module")
def strip_page(tmp_path_factory: pytest.TempPathFactory, sample_pages: list[Path]) -> Path:
    """The top strip of a sample page: fewer tiles, so a shorter prompt than the whole page's."""
    path = tmp_path_factory.mktemp("strip") / "strip.png"
    with Image.open(sample_pages[0]) as page:
        page.crop((0, 0, page.width, 500)).save(path)
    return path


@pytest.fixture(scope="module")
def pages(sample_pages: list[Path], strip_page: Path) -> list[Path]:
    return [sample_pages[0], strip_page]


@pytest.fixture(scope="module")
def dynamic_run(tmp_path_factory: pytest.TempPathFactory, pages: list[Path]) -> Path:
    run_dir = tmp_path_factory.mktemp("dynamic") / "run"
    result = run_capture(*pages, "--out", run_dir, "--max-new-tokens", str(TOKENS), "--profile", "off")
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def static_run(tmp_path_factory: pytest.TempPathFactory, pages: list[Path]) -> Path:
    run_dir = tmp_path_factory.mktemp("static") / "run"
    result = run_capture(
        *pages, "--out", run_dir, "--max-new-tokens", str(TOKENS), "--profile", "full",
        "--cache", "static", "--compile", "off",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "static cache" in result.output and "outside timings" in result.output
    return run_dir


def test_static_run_records_its_one_cache_and_its_warm_up(static_run: Path) -> None:
    record = read_run_json(static_run)
    assert record.config is not None
    assert (record.config.cache, record.config.compile) == ("static", "off")
    rows = read_predictions(static_run).to_pylist()
    prompts = [row["prompt_tokens"] for row in rows]
    assert len(set(prompts)) == 2, "the two pages should tile differently"
    cache = record.static_cache
    assert cache is not None
    # The run's largest prompt plus --max-new-tokens: one length for both images.
    assert (cache.length, cache.length_source) == (max(prompts) + TOKENS, static_cache.LENGTH_FROM_PROMPTS)
    assert cache.compiled is False and cache.compile_note is None and cache.compile_backend is None
    assert cache.warmup_tokens == static_cache.STATIC_WARMUP_TOKENS and cache.warmup_seconds > 0
    assert [row["compiled_graphs"] for row in rows] == [0, 0]


def test_static_decode_generates_what_the_dynamic_cache_generates(static_run: Path, dynamic_run: Path) -> None:
    assert _texts(static_run) == _texts(dynamic_run)
    for row in read_predictions(static_run).to_pylist():
        assert row["stop_reason"] in ("max_new_tokens", "eos")
        assert len(row["decode_step_ms"]) == row["generated_tokens"] - 1
        # One shape for the whole run, already run by the warm-up: no step is cold.
        assert not any(row["decode_step_cold"])


def test_static_run_has_the_same_ranges_and_clock_as_the_eager_path(static_run: Path) -> None:
    trace = read_trace(static_run, columns=["image_index", "name", "dur_ns", "range_stage"])
    for row in read_predictions(static_run).to_pylist():
        mine = trace.filter(
            pc.and_(pc.equal(trace["image_index"], row["image_index"]), pc.is_valid(trace["range_stage"]))
        )
        ranges = {name: dur for name, dur in zip(mine["name"].to_pylist(), mine["dur_ns"].to_pylist(), strict=True)}
        steps = row["generated_tokens"] - 1
        assert {"dsocr.vision", "dsocr.prefill", "dsocr.decode"} | {
            f"dsocr.decode_step#{k}" for k in range(1, steps + 1)
        } <= ranges.keys()
        assert ranges["dsocr.prefill"] / 1e6 == pytest.approx(row["prefill_ms"], rel=0.02, abs=1.0)
        step_ms = [ranges[f"dsocr.decode_step#{k}"] / 1e6 for k in range(1, steps + 1)]
        assert_steps_match_clock(step_ms, row["decode_step_ms"], context=row["image_index"])


def test_sampled_profiling_and_compile_auto_on_cpu(tmp_path: Path, sample_pages: list[Path]) -> None:
    """Sampled windows on the static path; ``--compile auto`` (the default) on a CPU runs
    uncompiled, as transformers does there, and says so."""
    run_dir = tmp_path / "run"
    result = run_capture(
        sample_pages[0], "--out", run_dir, "--max-new-tokens", "12", "--cache", "static",
        "--profile", "sampled", "--first-steps", "2", "--window-steps", "2", "--window-every", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = read_predictions(run_dir).to_pylist()[0]
    traced = [step for step, flag in enumerate(row["decode_step_traced"], start=1) if flag]
    assert traced[:2] == [1, 2] and 5 in traced and 3 not in traced
    trace = read_trace(run_dir, columns=["range_stage", "range_step"])
    steps = set(trace.filter(pc.equal(trace["range_stage"], "decode_step"))["range_step"].to_pylist())
    assert steps == set(traced) & set(range(1, row["generated_tokens"]))
    record = read_run_json(run_dir)
    assert record.config is not None and record.config.compile == "auto"
    assert record.static_cache is not None and record.static_cache.compiled is False
    note = record.static_cache.compile_note
    assert note is not None and note.startswith("--compile auto on cpu: transformers compiles a static cache's decode")
    assert note in record.warnings
    assert "decode ran uncompiled" in result.output


def test_the_compiled_path_compiles_in_the_warm_up_and_never_per_image(
    tmp_path: Path, pages: list[Path], dynamic_run: Path
) -> None:
    config = CaptureConfig(
        images=tuple(map(str, pages)), out=tmp_path / "run", max_new_tokens=TOKENS, profile=ProfileMode.off,
        cache=CacheKind.static, compile=CompileMode.auto, compile_backend="eager", model=FAST_MODEL_PATH,
    )  # fmt: skip
    result = run(config)
    cache = result.static_cache
    assert cache is not None and cache.compiled and cache.compile_backend == "eager"
    assert cache.warmup_graphs >= 1 and 0 < cache.compile_seconds <= cache.warmup_seconds
    rows = read_predictions(config.out).to_pylist()
    # The warm-up ran one page; the other has another prompt length and still compiles
    # nothing: the static cache keeps decode's shapes.
    assert [row["compiled_graphs"] for row in rows] == [0, 0]
    assert _texts(config.out) == _texts(dynamic_run)
    assert read_run_json(config.out).static_cache == cache


def test_the_graph_counter_sees_a_recompilation() -> None:
    compiled = torch.compile(lambda x: x * 2, backend="eager", dynamic=False)
    compiled(torch.ones(2))
    before = static_cache.compiled_graphs()
    compiled(torch.ones(2))
    assert static_cache.compiled_graphs() == before
    compiled(torch.ones(3))  # a new shape: a recompilation
    assert static_cache.compiled_graphs() == before + 1


def test_a_model_without_a_static_cache_is_refused_in_one_line(tmp_path: Path) -> None:
    config = CaptureConfig(images=(), out=tmp_path / "run", cache=CacheKind.static)
    loaded = load_model(dataclasses.replace(config, prompt="<image>\nFree OCR."))
    tiny = XLNetConfig(vocab_size=32, d_model=16, n_layer=1, n_head=2, d_inner=32)
    other = dataclasses.replace(loaded, model=XLNetLMHeadModel(tiny))
    with pytest.raises(BadInputError, match=r"^--cache static: XLNetLMHeadModel builds its own cache in generate"):
        static_cache.check_static_support(other)
    static_cache.check_static_support(loaded)  # the embedded DeepSeek-OCR-2 has one


def test_a_static_run_resumes_only_as_a_static_run(static_run: Path, pages: list[Path]) -> None:
    # --resume takes the options not given from the run (docs/configuration.md): given ones must match.
    options = ["--max-new-tokens", str(TOKENS), "--profile", "full", "--resume"]
    result = run_capture(*pages, "--out", static_run, *options, "--cache", "dynamic", "--compile", "auto")
    assert result.exit_code == 1
    assert "differs in cache, compile" in result.output.strip().splitlines()[-1]


def test_a_compile_that_fails_is_refused_in_one_line(tmp_path: Path, sample_pages: list[Path]) -> None:
    config = CaptureConfig(
        images=(str(sample_pages[0]),), out=tmp_path / "run", max_new_tokens=2, profile=ProfileMode.off,
        cache=CacheKind.static, compile_backend="no_such_backend", model=FAST_MODEL_PATH,
    )  # fmt: skip
    with pytest.raises(BadInputError) as refused:
        run(config)
    message = str(refused.value)
    assert message.startswith("--compile auto: torch.compile failed on this model (InvalidBackend: ")
    assert message.endswith("--compile off runs the static cache uncompiled") and "\n" not in message
