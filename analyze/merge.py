"""``dsocr analyze --merge``: one analysis of several shards (per-node runs of one job) from their
own analyses, without reading a trace again.

Each shard's ``dsocr analyze`` writes, beside its outputs, ``analysis/partials.json``: the sums
of its trace every run-level trace figure is computed from (analyze/partials.py). The merge adds
the shards' sums, and their images a chunk at a time as a run's batches are added: the per-image
rows their analyses wrote (timings.parquet, summary.json ``images``, steps.parquet) and the decode
steps of their predictions; then it computes the figures once, as one analyze over every shard's
trace would (tests/test_analyze_merge.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from dsocr.analyze.insights import run_peak
from dsocr.analyze.keys import image_key
from dsocr.analyze.latency import LATENCY
from dsocr.analyze.runner import IMAGE_CHUNK, PARTIALS_VERSION, Analysis, RunSums, finish, scalar_slices, spools
from dsocr.analyze.steps import SOURCE_TRACE, STEPS

from dsocr import rundir
from dsocr.errors import BadInputError, RunDirError
from dsocr.options import DEFAULT_TOP
from dsocr.prediction_store import PredictionStore
from dsocr.records import RunRecord
from dsocr.staleness import analysis_is_stale
from dsocr.vocab import AnalysisFile


def shards_under(parent: Path) -> list[Path]:
    """The run directories directly under ``parent`` (a parent of per-node runs), by name."""
    if not parent.is_dir():
        return []
    return sorted(child for child in parent.iterdir() if (child / rundir.RUN_JSON).is_file())


def _partials(shard: Path) -> dict[str, Any]:
    path = shard / rundir.ANALYSIS_DIR / AnalysisFile.partials
    if not path.is_file():
        raise RunDirError(
            f"{shard}: no {rundir.ANALYSIS_DIR}/{AnalysisFile.partials}; run `dsocr analyze {shard}` first"
        )
    if analysis_is_stale(shard):
        raise RunDirError(f"{shard}: its analysis is older than its run; run `dsocr analyze {shard}` again")
    payload = rundir.read_json(path)
    version = payload.get("schema_version") if isinstance(payload, dict) else None
    if version != PARTIALS_VERSION:
        raise RunDirError(
            f"{path}: schema_version {version}, this dsocr reads {PARTIALS_VERSION}; run `dsocr analyze {shard}` again"
        )
    return payload


def _traced_steps(shard: Path) -> pa.Table:
    """A shard's traced decode steps, as analyze computed them, from its analysis/steps.parquet."""
    table = rundir.read_checked(rundir.analysis_path(shard, AnalysisFile.steps), "steps")
    table = table.append_column("source", pa.array([SOURCE_TRACE] * table.num_rows, pa.string()))
    return table.select(STEPS.names).cast(STEPS)


def _one_job(runs: list[RunRecord], shards: list[Path]) -> RunRecord:
    """The first shard's run record, every shard's ranks; refused when the shards ran differently."""
    first = runs[0]
    for run, shard in zip(runs[1:], shards[1:], strict=True):
        differing = first.config.differing(run.config) if first.config and run.config else []
        if run.model.id != first.model.id:
            differing = ["model", *differing]
        if differing:
            raise BadInputError(f"{shard} is not a shard of {shards[0]}'s job (differs in {', '.join(differing)})")
    ranks = {entry.rank: entry for run in runs for entry in run.ranks or ()}
    return dataclasses.replace(first, ranks=tuple(ranks[rank] for rank in sorted(ranks)) if ranks else first.ranks)


def merge_shards(
    out_dir: Path,
    shards: list[Path],
    *,
    top: int = DEFAULT_TOP,
    write: bool = True,
    peak_tflops: float | None = None,
    peak_gbps: float | None = None,
) -> Analysis:
    """One analysis of ``shards`` (each already analyzed) written to ``out_dir/analysis/``."""
    if not shards:
        raise BadInputError(f"{out_dir}: no shard to merge (no run directory under it, and no --merge given)")
    runs = [rundir.read_run_json(shard) for shard in shards]
    run = _one_job(runs, shards)
    peak = run_peak(run, peak_tflops=peak_tflops, peak_gbps=peak_gbps)
    stores = [rundir.open_predictions(shard, shard_run) for shard, shard_run in zip(shards, runs, strict=True)]
    # Every shard's scalar columns a slice at a time; whole rows (per-step lists) a chunk of one
    # shard's images at a time.
    predictions = scalar_slices(*stores)
    every_key = [image_key(table) for table in predictions.columns("rank", "image_index")]
    keys, counts = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *every_key]), return_counts=True)
    if (counts > 1).any():
        rank, index = int(keys[counts > 1][0]) >> 32, int(keys[counts > 1][0]) & 0xFFFFFFFF
        raise BadInputError(f"image {index} of rank {rank} is in more than one shard: the shards overlap")
    has_trace = False
    # Each shard's rows go to disk as the shard is read, as a run's batches do (in the system's
    # temp folder: nothing is made in out_dir before every shard has been read).
    with spools(None) as spooled:
        sums = RunSums(spools=spooled, run=run, peak=peak)
        for shard, store in zip(shards, stores, strict=True):
            payload = _partials(shard)
            has_trace = has_trace or bool(payload["has_trace"])
            sums.add_shard(payload)
            _add_shard_images(sums, shard, store)
        if write:
            out_dir.mkdir(parents=True, exist_ok=True)
        return finish(out_dir, run, predictions, sums, has_trace=has_trace, peak=peak, top=top, write=write)


def _add_shard_images(sums: RunSums, shard: Path, store: PredictionStore) -> None:
    """A shard's images, a chunk at a time: its per-image rows as its analysis wrote them
    (timings, summary.json images, traced steps), its decode steps from its predictions."""
    timings = rundir.read_checked(rundir.analysis_path(shard, AnalysisFile.timings), "timings")
    traced = _traced_steps(shard)
    latency = _latency(shard)
    timing_keys, traced_keys, latency_keys = image_key(timings), image_key(traced), image_key(latency)
    for start in range(0, max(store.num_rows, 1), IMAGE_CHUNK):
        chunk = store.rows(store.image_index[start : start + IMAGE_CHUNK])
        keys = image_key(chunk)
        sums.add_images(
            chunk,
            timings.filter(pa.array(np.isin(timing_keys, keys))),
            traced.filter(pa.array(np.isin(traced_keys, keys))),
            latency.filter(pa.array(np.isin(latency_keys, keys))),
        )


def _latency(shard: Path) -> pa.Table:
    """A shard's latency rows: its summary.json ``images`` (analyze.latency.LATENCY)."""
    summary = rundir.read_json(rundir.analysis_path(shard, AnalysisFile.summary))
    images = summary.get("images") if isinstance(summary, dict) else None
    if not isinstance(images, list):
        raise RunDirError(f"{shard}: its analysis has no summary.json images; run `dsocr analyze {shard}` again")
    return pa.Table.from_pylist(images, schema=LATENCY)
