"""``dsocr compare RUN_A RUN_B``: two analyzed runs side by side, with a verdict per figure.

Both runs are analyzed in memory (nothing is written), so the comparison never reads a stale
summary. A verdict accounts for the spread across images: the difference of the medians
(B - A) counts only when it exceeds the noise, the larger of NOISE_FLOOR of A's median and twice
the standard error of the difference (from the per-image relative changes when both runs hold the same images,
else from each run's spread). docs/analysis.md states the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.runner import Analysis, analyze_run
from dsocr.analyze.summary import to_json

from dsocr import rundir
from dsocr.vocab import STAGES, Stage

FASTER, SLOWER, SAME = "faster", "slower", "same within noise"
HIGHER, LOWER = "higher", "lower"
#: Relative change below which two medians are the same whatever the spread (timer and scheduling noise).
NOISE_FLOOR = 0.02
#: Multiple of the standard error that a difference must exceed (about a 95% interval).
SE_MULTIPLE = 2.0
STAGE_FIGURES = (("cpu_ms", True), ("gpu_busy_ms", True), ("kernel_count", None))
LATENCY_FIGURES = (("ttft_ms", True), ("tpot_p50_ms", True), ("tpot_mean_ms", True), ("decode_tokens_per_s", False))
#: Options of run.json that say nothing about how the work ran.
IGNORED_OPTIONS = ("config.images", "config.out", "config.resume")
TOP_DELTAS = 10


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _std_error(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def verdict(
    a: Sequence[float], b: Sequence[float], *, lower_is_faster: bool | None, paired: Sequence[float] | None = None
) -> dict[str, Any]:
    """Medians of both runs, their difference, the noise it must exceed, and the verdict.

    ``lower_is_faster``: True for times, False for rates, None for counts (verdict higher/lower).
    ``paired``: per-image relative changes B/A - 1 when both runs hold the same images: images of
    different sizes (or a cold first image) then compare on one scale, scaled by A's median.
    """
    median_a, median_b = _median(a), _median(b)
    result: dict[str, Any] = {"a": median_a, "b": median_b, "images_a": len(a), "images_b": len(b)}
    if median_a is None or median_b is None:
        return result | {"delta": None, "rel_delta": None, "noise": None, "verdict": None}
    delta = median_b - median_a
    paired_ok = paired is not None and len(paired) > 1
    error = _std_error(paired or []) * abs(median_a) if paired_ok else math.hypot(_std_error(a), _std_error(b))
    noise = max(NOISE_FLOOR * abs(median_a), SE_MULTIPLE * error)
    if abs(delta) <= noise:
        word = SAME
    elif lower_is_faster is None:
        word = HIGHER if delta > 0 else LOWER
    else:
        word = FASTER if (delta < 0) == lower_is_faster else SLOWER
    return result | {
        "delta": delta,
        "rel_delta": delta / median_a if median_a else None,
        "noise": noise,
        "verdict": word,
    }


def _by_image(rows: list[dict[str, Any]], md5: Mapping[tuple[int, int], str], name: str) -> dict[str, float]:
    """Figure per image, keyed by the image's md5 (the same page in two runs), non-null only."""
    result = {}
    for row in rows:
        key = md5.get((row.get("rank") or 0, row["image_index"]))
        if key is not None and row.get(name) is not None:
            result[key] = float(row[name])
    return result


def _compare_figure(a: dict[str, float], b: dict[str, float], lower_is_faster: bool | None) -> dict[str, Any]:
    same_images = bool(a) and a.keys() == b.keys()
    paired = [b[key] / a[key] - 1 for key in a if a[key]] if same_images else None
    return verdict(list(a.values()), list(b.values()), lower_is_faster=lower_is_faster, paired=paired)


def _md5(run_dir: Path) -> dict[tuple[int, int], str]:
    """Per image, its content key: the md5, and ``#n`` for the n-th repeat of the same page in the run
    (a run of copies of one page pairs its images in order)."""
    predictions = rundir.read_predictions(run_dir).select(["rank", "image_index", "image_md5"]).to_pylist()
    seen: dict[str, int] = {}
    keys = {}
    for row in sorted(predictions, key=lambda row: (row["image_index"], row["rank"] or 0)):
        repeat = seen.get(row["image_md5"], 0)
        seen[row["image_md5"]] = repeat + 1
        keys[(row["rank"] or 0, row["image_index"])] = f"{row['image_md5']}#{repeat}"
    return keys


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: value}


def differing_options(run_a: Mapping[str, Any], run_b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Capture options, model, device and package versions that differ between two run.json files."""
    keep = ("config", "model", "device_name", "packages", "world_size")
    flat_a = _flatten({key: run_a.get(key) for key in keep})
    flat_b = _flatten({key: run_b.get(key) for key in keep})
    keys = sorted(set(flat_a) | set(flat_b))
    rows = [
        {"option": key, "a": flat_a.get(key), "b": flat_b.get(key)}
        for key in keys
        if flat_a.get(key) != flat_b.get(key)
        and not key.startswith(IGNORED_OPTIONS)
        and not key.startswith("model.architecture")
    ] + _architecture_difference(run_a, run_b)
    return sorted(rows, key=lambda row: row["option"])


def _architecture_difference(run_a: Mapping[str, Any], run_b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One line for the whole model config (its hundreds of keys would drown the other options)."""
    arch_a, arch_b = ((run.get("model") or {}).get("architecture") for run in (run_a, run_b))
    if arch_a == arch_b:
        return []

    def state(arch: Any) -> str:
        return "not recorded" if arch is None else "recorded"

    a, b = (state(arch_a), state(arch_b)) if None in (arch_a, arch_b) else ("one config", "another config")
    return [{"option": "model.architecture", "a": a, "b": b}]


def _stages(a: Analysis, b: Analysis, md5_a: dict, md5_b: dict) -> dict[str, Any]:
    rows_a, rows_b = a.timings.to_pylist(), b.timings.to_pylist()
    result = {}
    for stage in STAGES:
        stage_a = [row for row in rows_a if row["stage"] == stage and row["cpu_ms"] is not None]
        stage_b = [row for row in rows_b if row["stage"] == stage and row["cpu_ms"] is not None]
        figures = {
            name: _compare_figure(_by_image(stage_a, md5_a, name), _by_image(stage_b, md5_b, name), lower)
            for name, lower in STAGE_FIGURES
        }
        result[stage] = {
            "a": {name: figures[name]["a"] for name in figures},
            "b": {name: figures[name]["b"] for name in figures},
            "figures": figures,
            # The stage's verdict is its wall time's (CPU range duration, median across images).
            "verdict": figures["cpu_ms"]["verdict"],
        }
    return result


def _latency(a: Analysis, b: Analysis, md5_a: dict, md5_b: dict) -> dict[str, Any]:
    images_a, images_b = a.summary.images, b.summary.images
    return {
        name: _compare_figure(_by_image(images_a, md5_a, name), _by_image(images_b, md5_b, name), lower)
        for name, lower in LATENCY_FIGURES
    }


def _per_image(a: Analysis, b: Analysis, md5_a: dict, md5_b: dict) -> list[dict[str, Any]]:
    """The images both runs processed (matched by md5): TTFT, TPOT p50 and tokens/s of each."""
    figures = {name: (_by_image(a.summary.images, md5_a, name), _by_image(b.summary.images, md5_b, name))
               for name, _ in LATENCY_FIGURES}  # fmt: skip
    index_a = {md5: image for (_, image), md5 in md5_a.items()}
    index_b = {md5: image for (_, image), md5 in md5_b.items()}
    rows = []
    for md5 in sorted(set(index_a) & set(index_b), key=lambda key: index_a[key]):
        row: dict[str, Any] = {"image": md5, "image_a": index_a[md5], "image_b": index_b[md5]}
        for name, (values_a, values_b) in figures.items():
            value_a, value_b = values_a.get(md5), values_b.get(md5)
            delta = value_b - value_a if value_a is not None and value_b is not None else None
            row[name] = {"a": value_a, "b": value_b, "delta": delta}
        rows.append(row)
    return rows


def _top_deltas(a: pa.Table, b: pa.Table, *, top: int) -> list[dict[str, Any]]:
    """Kernels and operators by (stage, kind, name) with both totals; absent means outside that run's top.
    ``prefill`` is left out: it is vision plus prefill_text, both listed."""
    keys = ["stage", "kind", "name"]
    a, b = (table.filter(pc.not_equal(table["stage"], Stage.prefill)) for table in (a, b))
    left = a.select([*keys, "calls", "total_ms"]).rename_columns([*keys, "calls_a", "total_ms_a"])
    right = b.select([*keys, "calls", "total_ms"]).rename_columns([*keys, "calls_b", "total_ms_b"])
    joined = left.join(right, keys, join_type="full outer")
    delta = pc.subtract(joined["total_ms_b"].fill_null(0.0), joined["total_ms_a"].fill_null(0.0))
    joined = joined.append_column("delta_ms", delta).append_column("abs_delta", pc.abs(delta))
    rows = joined.sort_by([("abs_delta", "descending"), ("name", "ascending")]).drop_columns(["abs_delta"])
    result = []
    for kind in sorted(set(rows["kind"].to_pylist())):
        result += rows.filter(pc.equal(rows["kind"], kind)).slice(0, top).to_pylist()
    return result


def _findings(a: Analysis, b: Analysis) -> dict[str, Any]:
    found_a = {finding.id: finding for finding in a.summary.findings}
    found_b = {finding.id: finding for finding in b.summary.findings}
    return {
        "appeared": [to_json(found_b[key]) for key in found_b if key not in found_a],
        "vanished": [to_json(found_a[key]) for key in found_a if key not in found_b],
        "both": [
            {
                "id": key,
                "time_at_stake_ms_a": found_a[key].time_at_stake_ms,
                "time_at_stake_ms_b": found_b[key].time_at_stake_ms,
            }
            for key in found_a
            if key in found_b
        ],
    }


def compare_runs(
    run_a: Path, run_b: Path, *, top: int = TOP_DELTAS, peak_tflops: float | None = None, peak_gbps: float | None = None
) -> dict[str, Any]:
    """The comparison of two run directories (JSON-ready). Raises what analyze raises for a bad run."""
    analyses = [
        analyze_run(run_dir, write=False, peak_tflops=peak_tflops, peak_gbps=peak_gbps) for run_dir in (run_a, run_b)
    ]
    a, b = analyses
    md5_a, md5_b = _md5(run_a), _md5(run_b)
    roofline = {
        stage: {
            "a": to_json(a.summary.roofline.stage(stage)) or {},
            "b": to_json(b.summary.roofline.stage(stage)) or {},
        }
        for stage in STAGES
    }
    return {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "differing_options": differing_options(
            rundir.read_run_json(run_a).to_json(), rundir.read_run_json(run_b).to_json()
        ),
        "images": {"a": len(md5_a), "b": len(md5_b), "matched": len(set(md5_a.values()) & set(md5_b.values()))},
        "stages": _stages(a, b, md5_a, md5_b),
        "latency": _latency(a, b, md5_a, md5_b),
        "per_image": _per_image(a, b, md5_a, md5_b),
        "roofline": roofline,
        "top": _top_deltas(a.kernels, b.kernels, top=top),
        "findings": _findings(a, b),
    }
