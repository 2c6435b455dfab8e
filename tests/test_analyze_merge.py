"""`dsocr analyze --merge`: shards analyzed on their own merge to the analysis of the whole run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analyze_helpers import gpu_run_or_skip, invoke
from dsocr.analyze.merge import merge_shards
from dsocr.analyze.runner import analyze_run
from dsocr.analyze.summary import to_json

from dsocr import rundir

FIXTURES = Path(__file__).parent / "data"


def _split(source: Path, out: Path) -> list[Path]:
    """One shard per image of ``source``: its run.json, its prediction row, its trace files."""
    predictions = rundir.read_predictions(source)
    shards = []
    for index in predictions["image_index"].to_pylist():
        shard = out / f"node{index}"
        shard.mkdir(parents=True)
        shutil.copy(source / rundir.RUN_JSON, shard / rundir.RUN_JSON)
        rows = predictions.filter(pc.equal(predictions["image_index"], index))
        pq.write_table(rows, shard / "predictions.parquet")
        for path in rundir.trace_files(source):
            if path.name.startswith(f"image{index:07d}-"):
                target = shard / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
        shards.append(shard)
    return shards


def _outputs(analysis_dir: Path, summary: dict) -> tuple[dict, dict]:
    """The summary (the analyzed folder's path, which commands it suggests name, made neutral)
    and every Parquet output."""
    text = json.dumps({key: value for key, value in summary.items() if key != "run_dir"})
    summary = json.loads(text.replace(str(analysis_dir.parent), "RUN"))
    files = {path.name: pq.read_table(path).to_pylist() for path in sorted(analysis_dir.glob("*.parquet"))}
    return summary, files


@pytest.mark.parametrize("fixture", ["gpu-run", "gpu-flops-run"])
def test_merged_shards_equal_one_analyze_over_all(tmp_path: Path, fixture: str) -> None:
    gpu_run_or_skip()
    whole = shutil.copytree(FIXTURES / fixture, tmp_path / "whole")
    expected = _outputs(whole / "analysis", to_json(analyze_run(whole).summary))
    shards = _split(whole, tmp_path / "job")
    for shard in shards:
        analyze_run(shard)
    merged = merge_shards(tmp_path / "job", shards)
    assert _outputs(merged.output_dir, to_json(merged.summary)) == expected
    assert len(shards) == rundir.read_predictions(whole).num_rows


def test_the_cli_merges_a_parent_of_runs_and_named_shards(tmp_path: Path) -> None:
    gpu_run_or_skip()
    whole = shutil.copytree(FIXTURES / "gpu-run", tmp_path / "whole")
    shards = _split(whole, tmp_path / "job")
    result = invoke("analyze", tmp_path / "job", "--json")
    assert result.exit_code == 1
    assert "Error:" in result.output and "run `dsocr analyze" in result.output
    for shard in shards:
        assert invoke("analyze", shard, "--json").exit_code == 0
    by_parent = invoke("analyze", tmp_path / "job", "--json")
    assert by_parent.exit_code == 0, by_parent.output
    named = invoke("analyze", tmp_path / "merged", "--merge", shards[0], "--merge", shards[1], "--json")
    assert named.exit_code == 0, named.output
    first, second = json.loads(by_parent.output), json.loads(named.output)
    assert first["coverage"] == second["coverage"]
    assert first["coverage"]["images_with_trace"] == 2
    (shards[1] / "predictions.parquet").touch()  # the run changed after its analysis
    stale = invoke("analyze", tmp_path / "stale", "--merge", shards[0], "--merge", shards[1])
    assert stale.exit_code == 1
    assert "older than its run" in stale.output and "Traceback" not in stale.output
    overlap = invoke("analyze", tmp_path / "again", "--merge", shards[0], "--merge", shards[0])
    assert overlap.exit_code == 1
    assert "more than one shard" in overlap.output
