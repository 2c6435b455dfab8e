"""`dsocr compare`: verdicts, differing options, findings that appear, on real runs."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analyze_helpers import cpu_full_run, cpu_sampled_run, gpu_run_or_skip, invoke  # noqa: F401  (fixtures)
from dsocr.analyze.compare import FASTER, HIGHER, NOT_COMPARABLE, SAME, SLOWER, compare_runs, verdict
from dsocr.analyze.report_compare import print_comparison
from rich.console import Console
from test_analyze_roofline import copy_run

from dsocr import rundir

TIME_COLUMNS = ("vision_ms", "prefill_ms", "decode_ms", "image_ms")


def test_verdict_needs_a_change_beyond_the_spread() -> None:
    assert verdict([10.0, 10.2, 9.9], [12.0, 12.1, 11.9], lower_is_faster=True)["verdict"] == SLOWER
    assert verdict([10.0, 10.2, 9.9], [8.0, 8.1, 7.9], lower_is_faster=True)["verdict"] == FASTER
    # Tokens per second: higher is faster.
    assert verdict([10.0], [12.0], lower_is_faster=False)["verdict"] == FASTER
    # A 10% shift inside a wide spread across images is noise...
    wide = verdict([5.0, 10.0, 15.0, 20.0], [5.5, 11.0, 16.5, 22.0], lower_is_faster=True)
    assert wide["verdict"] == SAME and wide["noise"] > abs(wide["rel_delta"])
    # ...unless the same images moved together (every image 10% slower: paired changes have no spread).
    paired = verdict([5.0, 10.0, 15.0, 20.0], [5.5, 11.0, 16.5, 22.0], lower_is_faster=True,
                     paired=[0.1, 0.1, 0.1, 0.1])  # fmt: skip
    assert paired["verdict"] == SLOWER and paired["rel_delta"] == pytest.approx(0.1)
    # The same pairs given as (a, b) values: one model, one answer.
    as_values = verdict([5.0, 10.0], [5.5, 11.0], lower_is_faster=True, paired=[(5.0, 5.5), (10.0, 11.0)])
    assert as_values["verdict"] == SLOWER and as_values["estimate"] == "paired"
    # Images that moved apart are noise: one 30% faster, one 50% slower.
    apart = verdict([10.0, 10.0], [7.0, 15.0], lower_is_faster=True, paired=[-0.3, 0.5])
    assert apart["verdict"] == SAME
    # One image each: only the 2% floor applies.
    assert verdict([100.0], [101.5], lower_is_faster=True)["verdict"] == SAME
    assert verdict([100.0], [110.0], lower_is_faster=None)["verdict"] == HIGHER
    assert verdict([], [1.0], lower_is_faster=True)["verdict"] is None


def _slowed_down(source: Path, target: Path, factor: int) -> Path:
    """A copy of a run on a machine ``factor`` times slower: every trace time and duration and every
    reference time scaled (same events, same order, same kernels)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(rundir.ANALYSIS_DIR))
    origin = min(
        pq.read_table(path, columns=["ts_ns"])["ts_ns"].to_numpy().min() for path in rundir.trace_files(target)
    )
    for path in rundir.trace_files(target):
        table = pq.read_table(path)
        ts = pc.add(pc.multiply(pc.subtract(table["ts_ns"], origin), factor), origin)
        table = table.set_column(table.schema.get_field_index("ts_ns"), "ts_ns", ts)
        table = table.set_column(table.schema.get_field_index("dur_ns"), "dur_ns", pc.multiply(table["dur_ns"], factor))
        rundir.write_table_atomic(table, path)
    for path in (
        (target / "predictions").glob("*.parquet")
        if (target / "predictions").is_dir()
        else [target / "predictions.parquet"]
    ):
        table = pq.read_table(path)
        for name in (name for name in TIME_COLUMNS if name in table.column_names):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, pc.multiply(table[name], float(factor)))
        steps = [[ms * factor for ms in row] for row in table["decode_step_ms"].to_pylist()]
        index = table.schema.get_field_index("decode_step_ms")
        table = table.set_column(index, "decode_step_ms", pa.array(steps, pa.list_(pa.float64())))
        pq.write_table(table, path)
    return target


@pytest.fixture(scope="module")
def gpu_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    run_a = copy_run(gpu_run_or_skip(), root / "a", with_architecture=True)
    return run_a, _slowed_down(run_a, root / "b", 2)


def test_a_twice_slower_run_is_slower_with_the_same_kernels(gpu_pair: tuple[Path, Path]) -> None:
    result = invoke("compare", *gpu_pair, "--json")
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.output)
    assert comparison["differing_options"] == []
    images = rundir.read_predictions(gpu_pair[0]).num_rows
    # The committed capture predates content hashes and its pages are not here: paired by path.
    assert comparison["images"] == {"a": images, "b": images, "paired": images,
                                     "paired_by": {"content": 0, "path": images}}  # fmt: skip
    for name in ("vision_ms", "prefill_text_ms", "decode_ms", "ttft_ms", "tpot_p50_ms"):
        figure = comparison["clock"][name]
        assert figure["verdict"] == SLOWER and figure["rel_delta"] == pytest.approx(1.0, rel=1e-6), name
    for stage in ("vision", "prefill_text", "decode"):
        figures = comparison["trace"][stage]["figures"]
        assert figures["cpu_ms"]["verdict"] == SLOWER
        assert figures["cpu_ms"]["rel_delta"] == pytest.approx(1.0, rel=1e-6)
        assert figures["gpu_busy_ms"]["verdict"] == SLOWER
        assert figures["kernel_count"]["verdict"] == SAME
        assert figures["kernel_count"]["a"] == figures["kernel_count"]["b"]
    assert comparison["clock"]["decode_tokens_per_s"]["rel_delta"] == pytest.approx(-0.5, rel=1e-6)
    assert comparison["clock"]["decode_tokens_per_s"]["verdict"] == SLOWER
    assert comparison["roofline"]["decode"]["b"]["mbu"] == pytest.approx(
        comparison["roofline"]["decode"]["a"]["mbu"] / 2
    )
    # Every kernel took twice as long: each top row's change equals its time in A.
    for row in comparison["top"]:
        if row["ms_a"] is not None and row["ms_b"] is not None:
            assert row["delta_ms"] == pytest.approx(row["ms_a"])
    back = json.loads(invoke("compare", gpu_pair[1], gpu_pair[0], "--json").output)
    assert back["clock"]["decode_ms"]["verdict"] == FASTER


def test_compare_prints_differing_options_first(gpu_pair: tuple[Path, Path], tmp_path: Path) -> None:
    old = copy_run(gpu_run_or_skip(), tmp_path / "old", with_architecture=False)
    result = invoke("compare", old, gpu_pair[0])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # An older run kept the device name at the top level of run.json: read into model, it is the same.
    assert lines[3:5] == ["differing options (A -> B):", "  model.architecture: not recorded -> recorded"]
    assert "same within noise" in result.output and "slower" not in result.output
    assert "findings appeared in B: roofline_distance." in result.output
    assert "findings vanished in B: none" in result.output


def test_compare_cpu_runs_of_different_options(cpu_full_run: Path, cpu_sampled_run: Path) -> None:  # noqa: F811
    comparison = json.loads(invoke("compare", cpu_full_run, cpu_sampled_run, "--json").output)
    options = {row["option"]: (row["a"], row["b"]) for row in comparison["differing_options"]}
    assert options["config.profile"] == ("full", "sampled")
    assert options["config.max_new_tokens"] == (8, 14)
    assert comparison["images"]["paired"] == 1 and comparison["images"]["paired_by"]["content"] == 1
    assert [row["image_a"] for row in comparison["per_image"]] == [0]
    for figure in comparison["clock"].values():
        assert figure["verdict"] in (FASTER, SLOWER, SAME)
    for entry in comparison["trace"].values():
        assert entry["figures"]["cpu_ms"]["verdict"] in (FASTER, SLOWER, SAME)
        assert entry["figures"]["gpu_busy_ms"]["verdict"] == NOT_COMPARABLE  # CPU runs: no GPU time


def test_compare_a_missing_run_is_one_error_line(cpu_full_run: Path, tmp_path: Path) -> None:  # noqa: F811
    result = invoke("compare", cpu_full_run, tmp_path / "nope")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1


def test_compare_tables_fit_80_columns_without_cutting_a_number(gpu_pair: tuple[Path, Path]) -> None:
    comparison = compare_runs(*gpu_pair)

    def printed(width: int) -> str:
        buffer = io.StringIO()
        print_comparison(comparison, Console(file=buffer, width=width, color_system=None, force_terminal=False))
        return buffer.getvalue()

    def numbers(text: str) -> Counter[str]:
        cells = [cell for line in text.splitlines() for cell in re.split(r"\s{2,}", line.strip())]
        return Counter(cell for cell in cells if re.fullmatch(r"[-+±]?[\d,]+(\.\d+)?%?( ±[\d.]+%)?", cell))

    narrow, unconstrained = printed(80), printed(10_000)
    # Every line but the run paths (printed whole, soft-wrapped by the terminal).
    table_lines = [line for line in narrow.splitlines() if not line.startswith(("A: ", "B: "))]
    assert max(len(line) for line in table_lines) <= 80, narrow
    assert numbers(narrow) == numbers(unconstrained) and numbers(narrow)
    for header in ("group", "figure", "change ±noise", "verdict", "A ms", "B ms", "B-A ms"):
        assert f" {header} " in narrow
