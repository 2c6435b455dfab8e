"""`dsocr analyze --merge`: shards analyzed on their own merge to the analysis of the whole run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from analyze_helpers import ImageSpec, gpu_run_or_skip, invoke, write_run
from dsocr.analyze import ordered as ordered_module
from dsocr.analyze import spool as spool_module
from dsocr.analyze.merge import merge_shards
from dsocr.analyze.runner import analyze_run
from dsocr.analyze.spool import TableSpool
from dsocr.analyze.summary import to_json

from dsocr import rundir

FIXTURES = Path(__file__).parent / "data"


def _split(source: Path, out: Path, groups: list[list[int]] | None = None) -> list[Path]:
    """A shard per group of images of ``source`` (default: one per image): its run.json, its
    prediction rows, its trace files."""
    predictions = rundir.read_predictions(source)
    groups = groups or [[index] for index in predictions["image_index"].to_pylist()]
    shards = []
    for number, images in enumerate(groups):
        shard = out / f"node{number}"
        shard.mkdir(parents=True)
        shutil.copy(source / rundir.RUN_JSON, shard / rundir.RUN_JSON)
        rows = predictions.filter(pc.is_in(predictions["image_index"], pa.array(images, pa.int32())))
        pq.write_table(rows, shard / "predictions.parquet")
        for path in rundir.trace_files(source):
            if int(path.name[5:12]) in images:
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


def test_shards_whose_images_interleave_merge_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two shards of alternate images (a run of parts each, read back by a k-way merge): the
    traced steps come out by rank, image and step, and every per-image row is there once."""
    monkeypatch.setattr(spool_module, "PART_ROWS", 1)  # a part per chunk of a shard's images
    runs_of_steps: list[int] = []
    find_runs = ordered_module._runs

    def counted(spool: TableSpool, order: ordered_module.Order) -> list[list[int]]:
        runs = find_runs(spool, order)
        if "step" in order.columns:
            runs_of_steps.append(len(runs))
        return runs

    monkeypatch.setattr(ordered_module, "_runs", counted)
    whole = tmp_path / "whole"
    write_run(whole, [ImageSpec(index, generated_tokens=30, traced_steps=[1, 2, 15]) for index in range(12)], seed=3)
    rundir.finalize_predictions(whole)
    analyze_run(whole)
    shards = _split(whole, tmp_path / "job", [list(range(1, 12, 2)), list(range(0, 12, 2))])
    for shard in shards:
        analyze_run(shard)
    runs_of_steps.clear()
    merged = merge_shards(tmp_path / "job", shards)
    assert runs_of_steps == [2]  # one run per shard
    steps = pq.read_table(merged.output_dir / "steps.parquet")
    assert steps.equals(pq.read_table(whole / "analysis" / "steps.parquet"))
    merged_timings = pq.read_table(merged.output_dir / "timings.parquet")
    whole_timings = pq.read_table(whole / "analysis" / "timings.parquet")
    # Prediction order of a merge: shard after shard (the odd images first here).
    assert merged_timings["image_index"].to_pylist()[0] == 1
    key = [("image_index", "ascending"), ("stage", "ascending")]
    assert merged_timings.sort_by(key).equals(whole_timings.sort_by(key))
    assert [row["image_index"] for row in to_json(merged.summary)["images"]] == [*range(1, 12, 2), *range(0, 12, 2)]


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
