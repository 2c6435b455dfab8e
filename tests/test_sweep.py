"""`dsocr sweep`: real captures of the embedded model, each its own process, on a real page.

One sweep (two SDPA backends, two repeats, the same page twice) serves most tests; captures are
tiny (3 new tokens) so that the module runs in a minute or two on two cores.
"""

from __future__ import annotations

import json
import shlex
import shutil
import statistics
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from capture_helpers import FAST_MODEL
from dsocr.analyze import findings as findings_module
from dsocr.analyze.compare import compare_runs
from dsocr.analyze.ordered import Slices
from typer.testing import CliRunner, Result

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr import rundir
from dsocr._app import app
from dsocr.sweep_plan import (
    STATUS_FAILED,
    STATUS_OK,
    Variant,
    parse_vary,
    plan_runs,
    plan_variants,
    read_manifest,
    sweep_command,
)

pytestmark = pytest.mark.slow

TOKENS = "3"
BASE, OTHER = "sdpa-backend=auto", "sdpa-backend=math"


def sweep(*args: str | Path) -> Result:
    """`dsocr sweep ARGS...` on FAST_MODEL unless ARGS name a model (resumes must name the same)."""
    arguments = list(map(str, args))
    return CliRunner().invoke(app, ["sweep", *arguments, *([] if "--model" in arguments else FAST_MODEL)])


@pytest.fixture(scope="module")
def two_pages(sample_pages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The same page twice: the second image's decode lengths are warm (TPOT over warm steps)."""
    folder = tmp_path_factory.mktemp("two")
    pages = [folder / "page.png", folder / "page-again.png"]
    for page in pages:
        shutil.copy(sample_pages[0], page)
    return pages


@pytest.fixture(scope="module")
def swept(two_pages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sweep") / "s"
    result = sweep(*two_pages, "--out", out, "--max-new-tokens", TOKENS, "--vary", "sdpa-backend=auto,math",
                   "--repeats", "2", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def _row(table: dict[str, Any], name: str) -> dict[str, Any]:
    return next(row for row in table["variants"] if row["variant"] == name)


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "analysis" / "summary.json").read_text())


def _run_values(run_dir: Path, name: str) -> list[float]:
    """A figure as the run's own analysis has it: per image from summary.json, per run from run.json."""
    if name == "pages_per_s":
        record = rundir.read_run_json(run_dir)
        return [record.images.ok / record.capture_seconds]
    return [image[name] for image in _summary(run_dir)["images"] if image[name] is not None]


def test_two_variant_sweep_writes_both_runs_and_ratios_of_their_own_figures(
    swept: tuple[Path, dict[str, Any]], two_pages: list[Path]
) -> None:
    out, table = swept
    manifest = read_manifest(out)
    assert [run.status for run in manifest.runs] == [STATUS_OK] * 4
    for run in manifest.runs:
        run_dir = out / run.run_dir
        record = rundir.read_run_json(run_dir)
        assert record.images.ok == 2 and record.config.sdpa_backend == run.variant.split("=")[1]
        assert record.image_paths == tuple(str(page) for page in two_pages)  # the same pages for every variant
        assert record.config.profile == "off" and record.config.max_new_tokens == int(TOKENS)
        assert (run_dir / "analysis" / "summary.json").is_file()
    base_runs = [out / path for path in _row(table, BASE)["runs"]]
    other_runs = [out / path for path in _row(table, OTHER)["runs"]]
    assert len(base_runs) == len(other_runs) == 2
    figures = _row(table, OTHER)["figures"]
    for name in ("ttft_ms", "tpot_warm_p50_ms", "decode_tokens_per_s", "pages_per_s"):
        base = statistics.median(value for run in base_runs for value in _run_values(run, name))
        other = statistics.median(value for run in other_runs for value in _run_values(run, name))
        assert figures[name]["baseline"] == pytest.approx(base)
        assert figures[name]["value"] == pytest.approx(other)
        assert figures[name]["ratio"] == pytest.approx(other / base)
        assert figures[name]["band"] >= 0.02  # compare's noise floor at least
        assert figures[name]["band_measured"]  # two pages x two repeats, or two repeats
        assert figures[name]["verdict"] in ("faster", "slower", "same within noise")
    assert figures["peak_gpu_mib"]["ratio"] is None  # no GPU here: no memory figure, not a made-up one


def test_one_repeat_agrees_with_compare(two_pages: list[Path], swept: tuple[Path, dict[str, Any]]) -> None:
    """The sweep's noise model is compare's: on one repeat, its verdicts are compare's verdicts."""
    from dsocr.analyze.sweep import FIGURES, RunFigures, compare_figure, run_figures

    out, table = swept
    base, other = (out / _row(table, name)["runs"][0] for name in (BASE, OTHER))
    comparison = compare_runs(base, other)
    by_name = {figure.name: figure for figure in FIGURES}
    figures: list[RunFigures] = [run_figures(base), run_figures(other)]
    for name in ("ttft_ms", "decode_tokens_per_s"):
        mine = compare_figure(figures[0].images[name], figures[1].images[name], by_name[name])
        theirs = comparison["clock"][name]
        assert mine["verdict"] == theirs["verdict"]
        assert mine["baseline"] == pytest.approx(theirs["a"]) and mine["value"] == pytest.approx(theirs["b"])
        assert mine["band"] == pytest.approx(theirs["noise"])  # both relative: one noise model


def test_repeats_interleave(swept: tuple[Path, dict[str, Any]]) -> None:
    out, table = swept
    assert table["order"] == [f"{BASE}#1", f"{OTHER}#1", f"{OTHER}#2", f"{BASE}#2"]
    # The runs really ran in that order: each run.json's start time follows the one before.
    runs = sorted(read_manifest(out).runs, key=lambda run: run.order)
    started = [rundir.read_run_json(out / run.run_dir).started_at for run in runs]
    assert [f"{run.variant}#{run.repeat}" for run in runs] == table["order"]
    assert started == sorted(started)


def test_order_is_forward_then_backward_and_the_grid_or_one_at_a_time() -> None:
    vary = parse_vary(["cache=dynamic,static", "sdpa-backend=auto,math"], ["cache", "sdpa-backend"])
    grid = plan_variants(vary, one_at_a_time=False)
    assert [variant.name for variant in grid] == [
        "cache=dynamic,sdpa-backend=auto",
        "cache=dynamic,sdpa-backend=math",
        "cache=static,sdpa-backend=auto",
        "cache=static,sdpa-backend=math",
    ]
    assert grid[0].baseline and not any(variant.baseline for variant in grid[1:])
    single = plan_variants(vary, one_at_a_time=True)
    assert [variant.name for variant in single] == [
        "cache=dynamic,sdpa-backend=auto",
        "cache=static,sdpa-backend=auto",
        "cache=dynamic,sdpa-backend=math",
    ]
    order = [(run.variant, run.repeat) for run in plan_runs(single, 3)]
    names = [variant.name for variant in single]
    assert order == [(name, 1) for name in names] + [(name, 2) for name in names[::-1]] + [(n, 3) for n in names]
    # Over an even number of repeats every variant's mean place in the order is the same.
    places = {name: [index for index, (n, r) in enumerate(order[:6]) if n == name] for name in names}
    assert len({sum(p) for p in places.values()}) == 1
    assert Variant((("sdpa-backend", "math"),)).flags() == ["--sdpa-backend", "math"]


def test_an_impossible_variant_is_one_row_and_the_others_run(sample_pages: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = sweep(sample_pages[0], "--out", out, "--max-new-tokens", "2", "--vary", "sdpa-backend=auto,cudnn,math")
    assert result.exit_code == 0, result.output
    statuses = {run.variant: run.status for run in read_manifest(out).runs}
    assert statuses == {BASE: STATUS_OK, "sdpa-backend=cudnn": STATUS_FAILED, OTHER: STATUS_OK}
    lines = [line for line in result.stdout.splitlines() if line.startswith("sdpa-backend=cudnn")]
    assert len(lines) == 1 and "cannot run: --sdpa-backend cudnn: torch has no such kernel for cpu" in lines[0]
    math_line = next(line for line in result.stdout.splitlines() if line.startswith("sdpa-backend=math"))
    assert "x ±0.020* " in math_line  # the variant after the impossible one ran and has its ratios
    assert "* one value a side: the band is the noise floor alone" in result.stdout  # one page, one repeat
    assert "sdpa-backend=cudnn #1: cannot run" in result.stderr


def test_bad_sweeps_are_one_error_line(sample_pages: list[Path], tmp_path: Path) -> None:
    page = sample_pages[0]
    cases = {
        ("--vary", "prompt=a,b"): "Error: --vary prompt: not an option a sweep varies",
        ("--vary", "sdpa-backend=auto,fast"): "Error: passed to capture: Invalid value for '--sdpa-backend'",
        ("--vary", "cache=dynamic"): "Error: nothing to compare",
        ("--vary", "cache=dynamic,static", "--cache", "static"): "Error: --cache is both passed",
        ("--vary", "cache=dynamic,static", "--no-such"): "Error: passed to capture: No such option: --no-such",
        ("--vary", "max-new-tokens=2,0"): "Error: --max-new-tokens must be an integer >= 1",
        ("--vary", "cache=dynamic,static", "--profile", "full"): "Error: --profile full: a sweep captures",
    }
    for args, expected in cases.items():
        result = sweep(page, "--out", tmp_path / "never", *args)
        assert result.exit_code == 1 and result.output.startswith(expected), (args, result.output)
        assert not (tmp_path / "never").exists()


def test_resume_runs_only_what_did_not_finish(swept: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    source, _ = swept
    out = tmp_path / "copy"
    shutil.copytree(source, out)
    again = sweep(*read_manifest(out).images, "--out", out, "--max-new-tokens", TOKENS,
                  "--vary", "sdpa-backend=auto,math", "--repeats", "2")  # fmt: skip
    assert again.exit_code == 1 and "already holds a sweep: pass --resume" in again.output
    other = sweep(*read_manifest(out).images, "--out", out, "--max-new-tokens", "4",
                  "--vary", "sdpa-backend=auto,math", "--repeats", "2", "--resume")  # fmt: skip
    assert other.exit_code == 1 and "holds a different sweep" in other.output
    pages = sweep(read_manifest(out).images[0], "--out", out, "--max-new-tokens", TOKENS,
                  "--vary", "sdpa-backend=auto,math", "--repeats", "2", "--resume")  # fmt: skip
    assert pages.exit_code == 1 and "holds a sweep of other pages" in pages.output
    resumed = sweep(*read_manifest(out).images, "--out", out, "--max-new-tokens", TOKENS,
                    "--vary", "sdpa-backend=auto,math", "--repeats", "2", "--resume", "--json")  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert "[" not in resumed.stderr  # nothing ran again: every run was ok
    assert json.loads(resumed.stdout)["order"] == [f"{BASE}#1", f"{OTHER}#1", f"{OTHER}#2", f"{BASE}#2"]


def _host_bound_inputs(run_dir: Path) -> findings_module.FindingInputs:
    """A decode stage whose GPU is idle most of the time, on the real run's run.json."""
    timings = pa.Table.from_pylist(
        [
            {
                "stage": "decode",
                "cpu_ms_traced": 100.0,
                "gpu_busy_ms_traced": 10.0,
                "steps_traced": 10,
                "steps_total": 10,
                "kernel_count_traced": 500,
            }
        ]
    )
    empty = pa.table({"rank": pa.array([], pa.int32())})
    return findings_module.FindingInputs(
        predictions=Slices.of(empty), timings=Slices.of(timings), top=[], roofline=None,
        reference_steps=empty, traced_steps=empty, run_dir=run_dir, run=rundir.read_run_json(run_dir),
    )  # fmt: skip


def test_the_try_command_of_a_finding_runs(swept: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, table = swept
    run_dir = tmp_path / "run"
    shutil.copytree(out / _row(table, BASE)["runs"][0], run_dir)
    (finding,) = findings_module.host_bound_decode(_host_bound_inputs(run_dir))
    assert "the `try` command (dsocr sweep) measures it" in finding["message"]
    command = finding["try_command"]
    pages = " ".join(rundir.read_run_json(run_dir).image_paths or ())
    assert command == (
        f"dsocr sweep {pages} --out {run_dir}.sweep-cache --model embedded:tiny-deepseek-ocr2 --device cpu"
        f" --max-new-tokens {TOKENS} "
        "--vary cache=dynamic,static"
    )
    argv = shlex.split(command)
    result = CliRunner().invoke(app, [*argv[1:], "--json"])
    assert result.exit_code == 0, result.output
    swept_table = json.loads(result.stdout)
    assert [row["variant"] for row in swept_table["variants"]] == ["cache=dynamic", "cache=static"]
    assert all(row["reason"] is None and len(row["runs"]) == 1 for row in swept_table["variants"])
    static_run = rundir.read_run_json(Path(f"{run_dir}.sweep-cache") / swept_table["variants"][1]["runs"][0])
    assert static_run.config.cache == "static" and static_run.image_paths == rundir.read_run_json(run_dir).image_paths


def test_sweep_command_keeps_the_run_options_and_quotes_paths() -> None:
    config = {"model": "/m dir/x.json", "device": "cuda", "dtype": "bf16", "max_new_tokens": None,
              "sdpa_backend": "cudnn", "cache": "dynamic", "compile": "auto", "seed": 0,
              "warmup_tokens": 8}  # fmt: skip
    command = sweep_command(Path("runs/x"), images=["/p/a b.png"], config=config,
                            vary={"cache": ["dynamic", "static"]}, out_suffix="cache")  # fmt: skip
    assert command == (
        "dsocr sweep '/p/a b.png' --out runs/x.sweep-cache --model '/m dir/x.json' --device cuda --dtype bf16 "
        "--sdpa-backend cudnn --max-new-tokens inf --warmup-tokens 8 --vary cache=dynamic,static"
    )


def test_report_renders_a_sweep_directory_as_one_page(swept: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, table = swept
    page = tmp_path / "sweep.html"
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert "Variants against the baseline" in text and "Ratio per variant" in text
    cell = _row(table, OTHER)["figures"]["ttft_ms"]
    # The page's numbers are the table's: the ratio and band in the table, the point in the plot.
    assert f"{cell['ratio']:.3f}x ±{cell['band']:.3f}" in text
    assert json.dumps(cell["ratio"])[:8] in text
    refused = CliRunner().invoke(app, ["report", str(out), "--against", str(out)])
    assert refused.exit_code == 1 and refused.output.startswith("Error: --against compares two runs")


@pytest.mark.gpu
def test_on_cuda_the_static_cache_has_a_memory_ratio(sample_pages: list[Path], tmp_path: Path) -> None:
    """On a GPU every run records its allocator peak, and the sweep compares it (a static cache
    holds the whole length from the start)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    out = tmp_path / "s"
    result = sweep(sample_pages[0], "--out", out, "--device", "cuda", "--max-new-tokens", "8",
                   "--vary", "cache=dynamic,static", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    for row in table["variants"]:
        (run_dir,) = row["runs"]
        (rank,) = rundir.read_run_json(out / run_dir).ranks or ()
        assert rank.peak_gpu_mib is not None and rank.peak_gpu_mib > 0
    memory = _row(table, "cache=static")["figures"]["peak_gpu_mib"]
    assert memory["ratio"] == pytest.approx(memory["value"] / memory["baseline"])
    assert memory["verdict"] in ("higher", "lower", "same within noise")


def test_a_run_that_cannot_be_analyzed_is_that_runs_failure(swept: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    from dsocr.analyze.sweep import sweep_table

    source, table = swept
    out = tmp_path / "copy"
    shutil.copytree(source, out)
    broken = _row(table, OTHER)["runs"][1]
    (out / broken / "run.json").unlink()
    row = _row(sweep_table(out), OTHER)
    assert row["runs"] == [_row(table, OTHER)["runs"][0]] and row["reason"] is None
    (failed,) = row["failed_runs"]
    assert failed["run_dir"] == broken and failed["reason"].startswith("analyze: ") and "run.json" in failed["reason"]
    assert row["figures"]["ttft_ms"]["ratio"] is not None  # the other repeat still compares
