"""``dsocr compare RUN_A RUN_B``: two analyzed runs side by side, with a verdict per figure.

Both runs are analyzed in memory (nothing is written), so the comparison never reads a stale
summary. Images pair by the sha256 of their bytes (the same page stored at another path pairs),
by the md5 of their path where a run recorded no content hash and the file is gone. Clock figures
(stage times, TTFT, TPOT, tokens/s) compare in every profile mode, off included; trace figures
compare per image (vision, prefill_text) or per traced decode step where both runs hold a trace,
and are "not comparable" otherwise. One noise model (analyze.noise.verdict) decides every verdict.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.clock import STAGE_FIGURE
from dsocr.analyze.noise import (  # noqa: F401  (re-exported: sweep and older callers import them here)
    FASTER,
    HIGHER,
    LOWER,
    NOISE_FLOOR,
    NOT_COMPARABLE,
    SAME,
    SE_MULTIPLE,
    SLOWER,
    not_comparable,
    verdict,
)
from dsocr.analyze.runner import Analysis, analyze_run
from dsocr.analyze.summary import to_json

from dsocr import rundir
from dsocr.vocab import TIME_STAGES, Stage

#: Trace figures compared per stage (per image; decode per traced step), lower is faster or None (counts).
TRACE_FIGURES = (("cpu_ms", True), ("gpu_busy_ms", True), ("kernel_count", None))
#: Clock figures per image (summary.json images[]): the stage times, then latency.
CLOCK_FIGURES = tuple((name, True) for name in STAGE_FIGURE.values())
LATENCY_FIGURES = (("ttft_ms", True), ("tpot_p50_ms", True), ("tpot_mean_ms", True), ("decode_tokens_per_s", False))
#: Options of run.json that say nothing about how the work ran.
IGNORED_OPTIONS = ("config.images", "config.out", "config.resume")
TOP_DELTAS = 10
PAIRED_BY_CONTENT, PAIRED_BY_PATH = "content", "path"


def _by_image(rows: list[dict[str, Any]], keys: Mapping[tuple[int, int], str], name: str) -> dict[str, float]:
    """Figure per image, keyed by the image's pairing key (the same page in two runs), non-null only."""
    result = {}
    for row in rows:
        key = keys.get((row.get("rank") or 0, row["image_index"]))
        if key is not None and row.get(name) is not None:
            result[key] = float(row[name])
    return result


def _compare_figure(a: dict[str, float], b: dict[str, float], lower_is_faster: bool | None) -> dict[str, Any]:
    paired = [(a[key], b[key]) for key in a if key in b]
    return verdict(list(a.values()), list(b.values()), lower_is_faster=lower_is_faster, paired=paired)


def _content_keys(run_dir: Path) -> tuple[dict[tuple[int, int], str], dict[tuple[int, int], str]]:
    """Per image: the sha256 of its bytes (recorded by capture, else read from its file while
    it is there), else the md5 of its path; and how each was keyed (content or path)."""
    columns = ["rank", "image_index", "image_md5", "image_path", "image_sha256"]
    rows = rundir.read_predictions(run_dir, columns=columns).to_pylist()
    keys, how = {}, {}
    for row in rows:
        image = (row["rank"] or 0, row["image_index"])
        digest = row["image_sha256"] or rundir.content_sha256(rundir.resolved(row["image_path"]))
        keys[image] = f"sha256:{digest}" if digest else f"path:{row['image_md5']}"
        how[image] = PAIRED_BY_CONTENT if digest else PAIRED_BY_PATH
    return keys, how


def pairing_keys(run_dir: Path) -> dict[tuple[int, int], str]:
    """Per image, its pairing key, and ``#n`` for the n-th repeat of the same page in the run (a
    run of copies of one page pairs its images in order)."""
    keys, _ = _content_keys(run_dir)
    seen: dict[str, int] = {}
    result = {}
    for image in sorted(keys, key=lambda image: (image[1], image[0])):
        repeat = seen.get(keys[image], 0)
        seen[keys[image]] = repeat + 1
        result[image] = f"{keys[image]}#{repeat}"
    return result


def _pairing(run_a: Path, run_b: Path, keys_a: dict, keys_b: dict) -> dict[str, Any]:
    """How many images each run holds, how many paired, and by what."""
    how_a, how_b = _content_keys(run_a)[1], _content_keys(run_b)[1]
    index_b = {key: image for image, key in keys_b.items()}
    by = {PAIRED_BY_CONTENT: 0, PAIRED_BY_PATH: 0}
    for image, key in keys_a.items():
        if key in index_b:
            content = how_a[image] == PAIRED_BY_CONTENT and how_b[index_b[key]] == PAIRED_BY_CONTENT
            by[PAIRED_BY_CONTENT if content else PAIRED_BY_PATH] += 1
    return {"a": len(keys_a), "b": len(keys_b), "paired": sum(by.values()), "paired_by": by}


def _value(value: Any) -> Any:
    """An option's value as a value (an enum as its own word, never its repr)."""
    return value.value if isinstance(value, enum.Enum) else value


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: _value(value)}


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


def _clock(a: Analysis, b: Analysis, keys_a: dict, keys_b: dict) -> dict[str, Any]:
    """Each clock figure per image (every profile mode): stage times, then latency."""
    images_a, images_b = a.summary.images, b.summary.images
    return {
        name: _compare_figure(_by_image(images_a, keys_a, name), _by_image(images_b, keys_b, name), lower)
        for name, lower in (*CLOCK_FIGURES, *LATENCY_FIGURES)
    }


def _traced_rows(analysis: Analysis, stage: str) -> list[dict[str, Any]]:
    """The stage's traced figures per image; decode's per traced step."""
    rows = []
    for row in (row for table in analysis.timings for row in table.to_pylist()):
        if row["stage"] != stage or row["cpu_ms_traced"] is None:
            continue
        steps = row["steps_traced"] if stage == Stage.decode else 1
        if not steps:
            continue
        figures = {name: row[f"{name}_traced"] for name, _ in TRACE_FIGURES}
        rows.append({"rank": row["rank"], "image_index": row["image_index"]} | {
            name: value / steps if value is not None else None for name, value in figures.items()
        })  # fmt: skip
    return rows


def _no_trace(analysis: Analysis, label: str) -> str | None:
    summary = analysis.summary
    if not summary.trace.present:
        return f"{label} has no trace ({summary.trace.missing_reason})"
    return None


def _trace(a: Analysis, b: Analysis, keys_a: dict, keys_b: dict) -> dict[str, Any]:
    """Per stage: trace figures per image (decode: per traced step) where both runs hold them."""
    missing = _no_trace(a, "A") or _no_trace(b, "B")
    result: dict[str, Any] = {}
    for stage in TIME_STAGES:
        per = "traced step" if stage == Stage.decode else "image"
        if missing:
            result[stage] = {"per": per, "figures": {name: not_comparable(missing) for name, _ in TRACE_FIGURES}}
            continue
        rows_a, rows_b = _traced_rows(a, stage), _traced_rows(b, stage)
        figures = {}
        for name, lower in TRACE_FIGURES:
            values_a, values_b = _by_image(rows_a, keys_a, name), _by_image(rows_b, keys_b, name)
            if not values_a or not values_b:
                side = "A" if not values_a else "B"
                figures[name] = not_comparable(f"{side} has no traced {name} for {stage}")
            else:
                figures[name] = _compare_figure(values_a, values_b, lower)
        result[stage] = {"per": per, "figures": figures}
    return result


def _per_image(a: Analysis, b: Analysis, keys_a: dict, keys_b: dict) -> list[dict[str, Any]]:
    """The images both runs processed (paired by content): clock figures of each."""
    names = [name for name, _ in (*CLOCK_FIGURES, *LATENCY_FIGURES)]
    figures = {name: (_by_image(a.summary.images, keys_a, name), _by_image(b.summary.images, keys_b, name))
               for name in names}  # fmt: skip
    index_a = {key: image for (_, image), key in keys_a.items()}
    index_b = {key: image for (_, image), key in keys_b.items()}
    rows = []
    for key in sorted(set(index_a) & set(index_b), key=lambda key: index_a[key]):
        row: dict[str, Any] = {"image": key, "image_a": index_a[key], "image_b": index_b[key]}
        for name, (values_a, values_b) in figures.items():
            value_a, value_b = values_a.get(key), values_b.get(key)
            delta = value_b - value_a if value_a is not None and value_b is not None else None
            row[name] = {"a": value_a, "b": value_b, "delta": delta}
        rows.append(row)
    return rows


def _top_scale(analysis: Analysis) -> dict[str, float]:
    """Per stage, what a kernel or operator total is divided by: images traced (vision,
    prefill_text), decode steps traced (decode)."""
    scale = {}
    for stage in TIME_STAGES:
        traced = analysis.summary.stages[stage].trace
        if traced is not None:
            scale[stage] = float((traced.steps_traced if stage == Stage.decode else traced.images) or 0)
    return scale


def _top_deltas(a: Analysis, b: Analysis, *, top: int) -> list[dict[str, Any]]:
    """Kernels and operators by (stage, kind, name), in ms per image (vision, prefill_text) or
    per traced decode step (decode), so runs of other coverage compare; absent means outside
    that run's top. ``per_count_a``/``_b``: the images or traced steps each run's total was
    divided by. ``prefill`` is left out: it is vision plus prefill_text, both listed."""
    keys = ["stage", "kind", "name"]
    tables = []
    for analysis, side in ((a, "a"), (b, "b")):
        scale = _top_scale(analysis)
        table = analysis.kernels.filter(pc.is_in(analysis.kernels["stage"], pa.array(list(scale), pa.string())))
        per = pa.array([scale[stage] or float("nan") for stage in table["stage"].to_pylist()], pa.float64())
        table = table.select([*keys, "calls"]).append_column(f"ms_{side}", pc.divide(table["total_ms_traced"], per))
        table = table.append_column(f"per_count_{side}", per)
        tables.append(table.rename_columns([*keys, f"calls_{side}", f"ms_{side}", f"per_count_{side}"]))
    joined = tables[0].join(tables[1], keys, join_type="full outer")
    delta = pc.subtract(joined["ms_b"].fill_null(0.0), joined["ms_a"].fill_null(0.0))
    joined = joined.append_column("delta_ms", delta).append_column("abs_delta", pc.abs(delta))
    rows = joined.sort_by([("abs_delta", "descending"), ("name", "ascending")]).drop_columns(["abs_delta"])
    result = []
    for kind in sorted(set(rows["kind"].to_pylist())):
        for row in rows.filter(pc.equal(rows["kind"], kind)).slice(0, top).to_pylist():
            row["per"] = "traced step" if row["stage"] == Stage.decode else "image"
            result.append(row)
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
    keys_a, keys_b = pairing_keys(run_a), pairing_keys(run_b)
    roofline = {
        stage: {
            "a": to_json(a.summary.roofline.stage(stage)) or {},
            "b": to_json(b.summary.roofline.stage(stage)) or {},
        }
        for stage in TIME_STAGES
    }
    missing = _no_trace(a, "A") or _no_trace(b, "B")
    return {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "differing_options": differing_options(
            rundir.read_run_json(run_a).to_json(), rundir.read_run_json(run_b).to_json()
        ),
        "images": _pairing(run_a, run_b, keys_a, keys_b),
        "noise_model": {"floor": NOISE_FLOOR, "se_multiple": SE_MULTIPLE, "doc": "docs/analysis.md (compare)"},
        "clock": _clock(a, b, keys_a, keys_b),
        "trace": _trace(a, b, keys_a, keys_b),
        "per_image": _per_image(a, b, keys_a, keys_b),
        "roofline": roofline,
        "top": [] if missing else _top_deltas(a, b, top=top),
        "top_note": f"not comparable: {missing}" if missing else None,
        "findings": _findings(a, b),
    }
