"""Roofline per image, stage and decode step: FLOPs and bytes from the model config against the
measured time and the device's peaks; achieved rates, MFU/MBU on GPU busy and on wall time, bound.
The ``decode`` rows (per image and over the run) are per token: the mean over the traced decode
steps, so a sampled and a full run of the same pages give the same point.

``bound`` says what limits the work, tested in this order:
host (the GPU is busy less than HOST_BUSY_SHARE of the wall time: it waits for the CPU),
launch (the mean kernel is shorter than LAUNCH_KERNEL_US: too short to hide its launch),
then compute or memory (whichever of flops/peak_flops and bytes/peak_bandwidth is longer).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.flops import (
    DTYPE_BYTES,
    Architecture,
    decode_step_cost,
    prefill_cost,
    tiles_from_image_tokens,
    vision_cost,
)
from dsocr.analyze.keys import image_key
from dsocr.analyze.ordered import Key, Order, Slices, by_rank_and_image
from dsocr.analyze.peaks import DevicePeak
from dsocr.analyze.reference import ok_predictions
from dsocr.analyze.step_figures import DecodeStepRoofline
from dsocr.analyze.table_rows import SliceRows

from dsocr import schema
from dsocr.vocab import NS_PER_US, STAGES, Stage

STAGE_DECODE_STEP = "decode_step"
HOST_BUSY_SHARE = 0.5
LAUNCH_KERNEL_US = 5.0
BOUND_HOST, BOUND_LAUNCH, BOUND_COMPUTE, BOUND_MEMORY = "host", "launch", "compute", "memory"
TERA = 1e12
GIGA = 1e9
S_PER_MS = 1e-3
DERIVED = (
    "achieved_tflops",
    "achieved_tflops_wall",
    "achieved_gbps",
    "achieved_gbps_wall",
    "mfu",
    "mfu_wall",
    "mbu",
    "mbu_wall",
    "roofline_ms",
)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        result = numerator / denominator
    return np.where(np.isfinite(result), result, np.nan)


def derive(columns: Mapping[str, np.ndarray], peak: DevicePeak) -> dict[str, np.ndarray]:
    """Achieved rates, utilisations, the roofline time and the bound (NaN / None where unknown)."""
    flops, moved = columns["flops"], columns["bytes"]
    busy_s, wall_s = columns["gpu_busy_ms"] * S_PER_MS, columns["wall_ms"] * S_PER_MS
    peak_flops = (peak.tflops or np.nan) * TERA
    peak_bytes = (peak.gbps or np.nan) * GIGA
    result = {
        "achieved_tflops": _ratio(flops, busy_s) / TERA,
        "achieved_tflops_wall": _ratio(flops, wall_s) / TERA,
        "achieved_gbps": _ratio(moved, busy_s) / GIGA,
        "achieved_gbps_wall": _ratio(moved, wall_s) / GIGA,
    }
    result["mfu"] = result["achieved_tflops"] * TERA / peak_flops
    result["mfu_wall"] = result["achieved_tflops_wall"] * TERA / peak_flops
    result["mbu"] = result["achieved_gbps"] * GIGA / peak_bytes
    result["mbu_wall"] = result["achieved_gbps_wall"] * GIGA / peak_bytes
    compute_s, memory_s = flops / peak_flops, moved / peak_bytes
    result["roofline_ms"] = np.fmax(compute_s, memory_s) / S_PER_MS
    mean_kernel_us = _ratio(columns["gpu_busy_ms"] * NS_PER_US, columns["kernel_count"])
    busy_share = _ratio(columns["gpu_busy_ms"], columns["wall_ms"])
    bound = np.full(flops.size, None, dtype=object)
    known = ~np.isnan(compute_s) & ~np.isnan(memory_s) & ~np.isnan(busy_share)
    bound[known & (compute_s >= memory_s)] = BOUND_COMPUTE
    bound[known & (compute_s < memory_s)] = BOUND_MEMORY
    bound[mean_kernel_us < LAUNCH_KERNEL_US] = BOUND_LAUNCH
    bound[busy_share < HOST_BUSY_SHARE] = BOUND_HOST
    result["bound"] = bound
    return result


def _float_array(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, pa.float64(), mask=np.isnan(values))


def _width(dtype: str | None) -> int | None:
    return DTYPE_BYTES.get(dtype or "")


def _stage_rows(arch: Architecture, width: int, ok: pa.Table, timings: pa.Table) -> list[dict[str, Any]]:
    """vision, prefill_text and prefill rows per image, with the measured times from TIMINGS."""
    measured = {(r["rank"], r["image_index"], r["stage"]): r for r in timings.to_pylist()}
    rows = []
    # Pages share tile counts and prompt lengths: each cost is worked out once per value.
    vision_of = functools.cache(lambda tiles: vision_cost(arch, tiles, width))
    text_of = functools.cache(lambda prompt: prefill_cost(arch, prompt, width))
    columns = ["rank", "image_index", "image_tokens", "prompt_tokens"]
    for prediction in ok.select(columns).to_pylist():
        rank, image = prediction["rank"] or 0, prediction["image_index"]
        tiles = tiles_from_image_tokens(arch, prediction["image_tokens"])
        vision = vision_of(tiles) if tiles is not None else None
        prompt = prediction["prompt_tokens"]
        text = text_of(prompt) if prompt else None
        both = vision + text if vision is not None and text is not None else None
        for stage, cost in ((Stage.vision, vision), (Stage.prefill_text, text), (Stage.prefill, both)):
            timing = measured.get((rank, image, stage), {})
            wall = timing.get("cpu_ms_traced")
            rows.append(
                {
                    "rank": rank,
                    "image_index": image,
                    "stage": stage,
                    "step": None,
                    "tokens": tiles if stage == Stage.vision else prompt,
                    "flops": cost.flops if cost else None,
                    "bytes": cost.bytes if cost else None,
                    "attention_flops": cost.attention_flops if cost else None,
                    "wall_ms": wall if wall is not None else timing.get("clock_ms"),
                    "gpu_busy_ms": timing.get("gpu_busy_ms_traced"),
                    "kernel_count": timing.get("kernel_count_traced"),
                }
            )
    return rows


def _step_columns(arch: Architecture, width: int, ok: pa.Table, steps: pa.Table) -> dict[str, np.ndarray]:
    """Per decode step: its key length and cost. Costs are affine in the key length, so two
    evaluations serve every step."""
    keys_of = image_key(steps)
    ok_keys = image_key(ok)
    order = np.argsort(ok_keys)
    position = order[np.minimum(np.searchsorted(ok_keys[order], keys_of), max(ok_keys.size - 1, 0))]
    prompt = ok["prompt_tokens"].fill_null(-1).to_numpy().astype(np.float64)[position]
    numbers = steps["step"].to_numpy().astype(np.float64)
    key_length = prompt + numbers
    if "decode_step_seq_len" in ok.column_names:
        # Capture's own count, where it recorded one: step K is the list's element K-1.
        lists = ok["decode_step_seq_len"].combine_chunks()
        offsets = lists.offsets.to_numpy()[position]
        lengths = np.diff(lists.offsets.to_numpy())[position]
        flat = lists.values.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.float64)
        index = numbers.astype(np.int64) - 1
        present = (index >= 0) & (index < lengths) & lists.is_valid().to_numpy(zero_copy_only=False)[position]
        recorded = np.where(present, flat[np.where(present, offsets + index, 0)] if flat.size else -1, -1)
        key_length = np.where(recorded > 0, recorded, key_length)
    key_length = np.where(prompt < 0, np.nan, key_length)
    base, unit = decode_step_cost(arch, 0, width), decode_step_cost(arch, 1, width)
    return {
        "tokens": key_length,
        "flops": base.flops + key_length * (unit.flops - base.flops),
        "bytes": base.bytes + key_length * (unit.bytes - base.bytes),
        "attention_flops": base.attention_flops + key_length * (unit.attention_flops - base.attention_flops),
    }


def roofline_table(
    arch: Architecture | None, dtype: str | None, peak: DevicePeak, predictions: pa.Table, timings: pa.Table,
    steps: pa.Table,
) -> pa.Table:  # fmt: skip
    """The ROOFLINE table: stage rows per image, then one row per decode step (stage decode_step)."""
    return pa.concat_tables(roofline_parts(arch, dtype, peak, predictions, timings, steps))


def roofline_parts(
    arch: Architecture | None, dtype: str | None, peak: DevicePeak, predictions: pa.Table, timings: pa.Table,
    steps: pa.Table,
) -> tuple[pa.Table, pa.Table]:  # fmt: skip
    """The ROOFLINE table of some whole images in two parts: the rows per image (vision,
    prefill_text and prefill, then decode per token) and the rows per decode step."""
    width = _width(dtype)
    ok = ok_predictions(predictions)
    if arch is None or width is None:
        return schema.ROOFLINE.empty_table(), schema.ROOFLINE.empty_table()
    stage_rows = pa.Table.from_pylist(_stage_rows(arch, width, ok, timings), schema=_BASE)
    step_costs = _step_columns(arch, width, ok, steps)
    step_rows = pa.table(
        {
            "rank": steps["rank"],
            "image_index": steps["image_index"],
            "stage": pa.array([STAGE_DECODE_STEP] * steps.num_rows, pa.string()),
            "step": steps["step"],
            "tokens": _float_array(step_costs["tokens"]).cast(pa.int64()),
            "flops": _float_array(step_costs["flops"]),
            "bytes": _float_array(step_costs["bytes"]),
            "attention_flops": _float_array(step_costs["attention_flops"]),
            "wall_ms": steps["wall_ms"],
            "gpu_busy_ms": steps["gpu_busy_ms"],
            "kernel_count": steps["kernel_count"],
        },
        schema=_BASE,
    )
    decode = _per_step(_sums(step_rows, ["rank", "image_index"], count=True))
    decode_rows = pa.table(
        {
            "rank": decode["rank"],
            "image_index": decode["image_index"],
            "stage": pa.array([Stage.decode] * decode.num_rows, pa.string()),
            "step": pa.nulls(decode.num_rows, pa.int32()),
            "tokens": pa.nulls(decode.num_rows, pa.int64()),
            **{name: _to_type(decode[name], _BASE.field(name).type) for name in _SUMMED},
        },
        schema=_BASE,
    )
    return with_derived(pa.concat_tables([stage_rows, decode_rows]), peak), with_derived(step_rows, peak)


_SUMMED = ("flops", "bytes", "attention_flops", "wall_ms", "gpu_busy_ms", "kernel_count")


def _to_type(column: pa.Array, target: pa.DataType) -> pa.Array:
    """A per-token mean in the table's type: counts are rounded (steps of a compiled run launch
    different numbers of kernels, so their mean is fractional and a plain cast refuses it)."""
    return (pc.round(column) if pa.types.is_integer(target) else column).cast(target)


#: Column of ``_sums(..., count=True)``: the rows each group summed.
_ROWS = "rows"


def _per_step(sums: pa.Table) -> pa.Table:
    """Sums over decode steps divided by their step count: decode's figures per token, so a
    sampled run (some steps traced) and a full run of the same pages agree."""
    rows = sums[_ROWS].to_numpy().astype(np.float64)
    columns = {name: sums[name] for name in sums.column_names if name not in (*_SUMMED, _ROWS)}
    for name in _SUMMED:
        values = sums[name].cast(pa.float64()).fill_null(np.nan).to_numpy() / np.where(rows > 0, rows, np.nan)
        columns[name] = _float_array(values)
    return pa.table(columns)


def _sums(table: pa.Table, keys: list[str], *, count: bool = False) -> pa.Table:
    """Per group: the _SUMMED columns summed; a sum of nothing but nulls stays null ("unknown").
    ``count``: also the rows of each group (``rows``).

    numpy rather than Arrow's group_by: these tables are small and Acero's set-up dominated."""
    if table.num_rows == 0:
        empty = {**{key: table[key] for key in keys}, **{name: table[name] for name in _SUMMED}}
        return pa.table(empty | ({_ROWS: pa.array([], pa.int64())} if count else {}))
    key_columns = [table[key].combine_chunks() for key in keys]
    codes = [np.unique(column.to_numpy(zero_copy_only=False), return_inverse=True) for column in key_columns]
    combined = np.zeros(table.num_rows, dtype=np.int64)
    for values, inverse in codes:
        combined = combined * (len(values) + 1) + inverse
    groups, first, group_of = np.unique(combined, return_index=True, return_inverse=True)
    columns: dict[str, pa.Array] = {
        key: column.take(pa.array(first)) for key, column in zip(keys, key_columns, strict=True)
    }
    for name in _SUMMED:
        column = table[name]
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        values = column.cast(pa.float64()).fill_null(0.0).to_numpy()
        sums = np.bincount(group_of, weights=values, minlength=groups.size)
        counts = np.bincount(group_of, weights=valid, minlength=groups.size)
        columns[name] = pa.array(sums, pa.float64(), mask=counts == 0).cast(column.type)
    if count:
        columns[_ROWS] = pa.array(np.bincount(group_of, minlength=groups.size), pa.int64())
    return pa.table(columns)


def _numbers(table: pa.Table, name: str) -> np.ndarray:
    return table[name].cast(pa.float64()).fill_null(np.nan).to_numpy()


def with_derived(base: pa.Table, peak: DevicePeak) -> pa.Table:
    """Append the DERIVED columns and ``bound`` to a table of _BASE columns (ROOFLINE)."""
    columns = {name: _numbers(base, name) for name in ("flops", "bytes", "wall_ms", "gpu_busy_ms", "kernel_count")}
    derived = derive(columns, peak)
    table = base
    for name in DERIVED:
        table = table.append_column(name, _float_array(derived[name]))
    table = table.append_column("bound", pa.array(derived["bound"].tolist(), pa.string()))
    return table.cast(schema.ROOFLINE)


_BASE = pa.schema([field for field in schema.ROOFLINE if field.name not in (*DERIVED, "bound")])


# ---------------------------------------------------------------- summary.json


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


_FIGURES = ("flops", "bytes", "attention_flops", "wall_ms", "gpu_busy_ms", "kernel_count", *DERIVED, "bound")


@dataclass(frozen=True)
class StageRoofline:
    """One stage's roofline figures (a run total or one image's): the ROOFLINE columns, None when unknown."""

    flops: float | None
    bytes: float | None
    attention_flops: float | None
    wall_ms: float | None
    gpu_busy_ms: float | None
    kernel_count: int | None
    achieved_tflops: float | None
    achieved_tflops_wall: float | None
    achieved_gbps: float | None
    achieved_gbps_wall: float | None
    mfu: float | None
    mfu_wall: float | None
    mbu: float | None
    mbu_wall: float | None
    roofline_ms: float | None
    bound: str | None


@dataclass(frozen=True)
class Roofline:
    """summary.json ``roofline``: the device's peaks, ``roofline.<stage>`` over the run, per decode
    step, per image, and the profiler's own FLOP counts against the model's."""

    device: DevicePeak
    #: Why figures are missing (None when everything could be computed).
    reason: str | None
    vision: StageRoofline | None
    prefill_text: StageRoofline | None
    prefill: StageRoofline | None
    decode: StageRoofline | None
    #: ``steps``, ``{median, p90}`` across steps of flops, bytes, times, MFU/MBU, and ``bound`` counts.
    decode_step: dict[str, Any] | None
    #: Per image: ``rank``, ``image_index`` and a StageRoofline per stage (made as they are read).
    images: Sequence[dict[str, Any]]
    #: Per stage: the profiler's FLOPs against the model's (None: the trace carries no counts).
    profiler_flops: dict[str, Any] | None

    def stage(self, name: str) -> StageRoofline | None:
        """The run total of ``name`` (one of STAGES)."""
        return getattr(self, name) if name in STAGES else None


def _figures(row: Mapping[str, Any]) -> StageRoofline:
    return StageRoofline(**{name: _clean(row.get(name)) for name in _FIGURES})


def is_decode_row(table: pa.Table) -> np.ndarray:
    """Per ROOFLINE row: whether it is an image's decode row (per token)."""
    return pc.equal(table["stage"], Stage.decode).fill_null(False).to_numpy(zero_copy_only=False)


def _is_stage_row(table: pa.Table) -> np.ndarray:
    return ~is_decode_row(table)


_ROW_KEY = ("rank", "image_index", "stage")
#: The rows per image as summary.json lists them: by rank and image, each image's stage rows first.
BY_IMAGE = Order(_ROW_KEY, by_rank_and_image, then=is_decode_row)
#: The decode rows per image, as roofline.parquet lists them after the stage rows.
DECODE_BY_IMAGE = Order(_ROW_KEY, by_rank_and_image, where=is_decode_row)


def stage_rows_in(position: Key) -> Order:
    """The stage rows per image (vision, prefill_text, prefill) in the order ``position`` gives."""
    return Order(_ROW_KEY, position, where=_is_stage_row)


@dataclass(frozen=True)
class RooflineRows:
    """The ROOFLINE rows per image, read a slice at a time: ``stages`` (vision, prefill_text,
    prefill) in prediction order and ``decode`` (per token) by rank and image, as
    analysis/roofline.parquet lists them; ``by_image``: both, by rank and image, each image's
    stage rows first (summary.json ``roofline.images``)."""

    stages: Slices
    decode: Slices
    by_image: Slices


def _stage_sums(stages: Slices) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per stage (sorted by name), each _SUMMED column summed over the rows (NaN: no row has a
    value), a slice at a time. The values are added one at a time in row order: the float sums
    of one pass over a whole table (``_sums``), whatever the slicing."""
    totals: dict[str, dict[str, float]] = {}
    for table in stages.columns("stage", *_SUMMED):
        stage_of = table["stage"].to_numpy(zero_copy_only=False)
        for stage in np.unique(stage_of).tolist():
            into = totals.setdefault(stage, dict.fromkeys(_SUMMED, np.nan))
            rows = table.filter(pa.array(stage_of == stage))
            for name in _SUMMED:
                values = rows[name].drop_null().cast(pa.float64()).to_numpy()
                if values.size:
                    start = [] if np.isnan(into[name]) else [into[name]]
                    # add.accumulate adds one value at a time, in order (a reduce would pair them).
                    into[name] = float(np.add.accumulate(np.concatenate([start, values]))[-1])
    names = sorted(totals)
    return names, {name: np.array([totals[stage][name] for stage in names], dtype=np.float64) for name in _SUMMED}


def _run_totals(stages: Slices, peak: DevicePeak, decode_steps: DecodeStepRoofline) -> dict[str, StageRoofline]:
    """Per stage over all images: summed FLOPs, bytes and times, then the derived figures;
    decode per token (the mean over every traced step of every image, from ``decode_steps``)."""
    sums = _SUMMED
    names, columns = _stage_sums(stages)
    if decode_steps.rows:
        names.append(Stage.decode)
        for name in sums:
            total = decode_steps.total(name)
            if name == "kernel_count" and total is not None:
                total = float(int(total))  # an integer column's sum, as Arrow's cast gives it
            per_token = total / decode_steps.rows if total is not None else np.nan
            columns[name] = np.append(columns[name], per_token)
    derived = derive(columns, peak)
    result = {}
    for index, stage in enumerate(names):
        row = {name: columns[name][index] for name in sums} | {name: derived[name][index] for name in derived}
        row["kernel_count"] = None if np.isnan(row["kernel_count"]) else round(row["kernel_count"])
        result[stage] = _figures({key: _clean(value) for key, value in row.items()})
    return result


def image_rooflines(by_image: Slices) -> SliceRows:
    """Per image (rows by rank and image_index, each image's together): ``rank``, ``image_index``
    and a StageRoofline per stage row, made as they are read."""
    return SliceRows(by_image, group=("rank", "image_index"), make=_image_roofline)


def _image_roofline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rank": rows[0]["rank"], "image_index": rows[0]["image_index"]} | {
        row["stage"]: _figures(row) for row in rows
    }


def roofline_summary(
    rows: RooflineRows,
    peak: DevicePeak,
    *,
    reason: str | None,
    profiler: dict[str, Any] | None,
    decode_steps: DecodeStepRoofline,
) -> Roofline:
    """summary.json ``roofline`` from the ROOFLINE rows per image and its decode-step rows summed
    in ``decode_steps``."""
    totals = _run_totals(rows.stages, peak, decode_steps)
    return Roofline(
        device=peak,
        reason=reason,
        **{stage: totals.get(stage) for stage in STAGES},
        decode_step=decode_steps.distribution() if decode_steps.rows else None,
        images=image_rooflines(rows.by_image),
        profiler_flops=profiler,
    )
