"""Cold decode steps: lengths the capturing process ran for the first time, and what they cost.

Kernels that plan per shape (cuDNN's SDPA builds a plan for each new key/value length) make a
process's first pass over a length slower. capture marks each decode step ``cold`` or not
(``decode_step_cold``); here, per image, the warm and cold step medians, and per run the time
cold steps add over the run's warm median, with the images whose TPOT they change noticeably.

What a cold step adds is estimated from medians: per image, its cold steps times (the median of
its cold steps - the run's warm median). A per-shape cost slows every cold step alike, so the
median carries it whole; a few steps slowed by something else (the trace of a profiler window
being converted beside decode, a page fault) are not charged to cold shapes. The sum of each
cold step's excess did charge them: on a 2-core CPU run, four steps of 64 ms after a trace
window made 122 cold steps "cost" 305 ms while their median equalled the warm one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsocr.analyze.keys import dense_codes, image_key
from dsocr.analyze.ordered import Slices
from dsocr.analyze.step_figures import ColdSteps

from dsocr.vocab import NS_PER_MS

#: An image is flagged when its cold steps raise its TPOT by more than this share.
COLD_TPOT_FLAG_SHARE = 0.10
#: Operators named per flagged run (cold against warm steps).
COLD_TOP_OPERATORS = 5


@dataclass(frozen=True)
class ImageCold:
    """Cold-step figures of one image (keys of summary.json images[])."""

    cold_steps: int | None
    warm_steps: int | None
    tpot_warm_p50_ms: float | None
    tpot_cold_p50_ms: float | None


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def image_cold(row: dict[str, Any]) -> ImageCold:
    """The cold-step figures of one prediction row (all None when capture recorded no flags)."""
    steps, cold = row.get("decode_step_ms") or [], row.get("decode_step_cold")
    if cold is None or len(cold) != len(steps):
        return ImageCold(None, None, None, None)
    warm_ms = [ms for ms, is_cold in zip(steps, cold, strict=True) if not is_cold]
    cold_ms = [ms for ms, is_cold in zip(steps, cold, strict=True) if is_cold]
    return ImageCold(len(cold_ms), len(warm_ms), _median(warm_ms), _median(cold_ms))


@dataclass(frozen=True)
class ColdImpact:
    """Run-level: what cold steps add, and which images they change by more than the flag share."""

    cold_steps: int
    warm_steps: int
    warm_step_p50_ms: float | None
    #: Sum over images of cold steps x (their median - the run's warm median): what the first
    #: pass over new lengths cost.
    cold_added_ms: float | None
    #: Sum over cold steps of (step - the run's warm median), never below zero per step: the upper
    #: bound, which also charges cold steps slowed by something else.
    cold_added_upper_ms: float | None
    #: image_index, rank, tpot_ms and tpot_if_warm_ms (TPOT less the image's cold excess per
    #: step) of images whose TPOT cold steps raise by more than COLD_TPOT_FLAG_SHARE.
    flagged_images: list[dict[str, Any]] = field(default_factory=list)
    #: Operators whose CPU self time per step differs most between cold and warm traced steps.
    top_operators: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cold_steps": self.cold_steps,
            "warm_steps": self.warm_steps,
            "warm_step_p50_ms": self.warm_step_p50_ms,
            "cold_added_ms": self.cold_added_ms,
            "cold_added_upper_ms": self.cold_added_upper_ms,
            "flag_share": COLD_TPOT_FLAG_SHARE,
            "flagged_images": self.flagged_images,
            "top_operators": self.top_operators,
        }


def _flagged_rows(ok_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose every decode step carries a cold flag."""
    return [
        row
        for row in ok_rows
        if row.get("decode_step_cold") is not None
        and len(row["decode_step_cold"]) == len(row.get("decode_step_ms") or [])
    ]


def cold_impact(ok_rows: list[dict[str, Any]], top_operators: list[dict[str, Any]]) -> ColdImpact | None:
    """Run-level cold-step figures of the ok prediction rows (None when capture recorded no flags)."""
    cold = ColdSteps()
    cold.add_rows(ok_rows)
    images = [
        {
            "image_index": row["image_index"],
            "rank": row.get("rank") or 0,
            "steps": len(row["decode_step_ms"]),
            "tpot_mean_ms": sum(row["decode_step_ms"]) / len(row["decode_step_ms"]),
        }
        for row in _flagged_rows(ok_rows)
        if row["decode_step_ms"]
    ]
    return cold_impact_of(cold, images, top_operators)


def cold_image_rows(latency: Slices) -> Iterator[dict[str, Any]]:
    """What ``cold_impact_of`` reads per image, from the latency rows (analyze.latency.LATENCY),
    in their order, a slice at a time."""
    for table in latency.columns("image_index", "rank", "steps", "tpot_mean_ms"):
        yield from table.to_pylist()


def cold_impact_of(
    cold: ColdSteps, images: Iterable[dict[str, Any]], top_operators: list[dict[str, Any]]
) -> ColdImpact | None:
    """Run-level cold-step figures from the run's cold steps (``cold``) and its images in order
    (``image_index``, ``rank``, ``steps``, ``tpot_mean_ms``: summary.json images[]); None when
    capture recorded no flags. The warm median is the sketch's (exact up to its EXACT_VALUES)."""
    if not cold.flagged_images:
        return None
    warm_p50 = cold.warm_ms.median()
    added = upper = None
    flagged: list[dict[str, Any]] = []
    if warm_p50 is not None:
        added = upper = 0.0
        for row in images:
            cold_ms = cold.cold_ms.get(((row["rank"] or 0) << 32) | int(row["image_index"]))
            if not cold_ms:
                continue  # no cold step: nothing added, TPOT unchanged
            image_added = len(cold_ms) * max(float(np.median(cold_ms)) - warm_p50, 0.0)
            added += image_added
            upper += sum(max(ms - warm_p50, 0.0) for ms in cold_ms)
            steps, tpot = row["steps"], row["tpot_mean_ms"]
            if not steps or tpot is None:
                continue
            tpot_if_warm = tpot - image_added / steps
            if tpot_if_warm > 0 and tpot / tpot_if_warm - 1 > COLD_TPOT_FLAG_SHARE:
                flagged.append(
                    {
                        "image_index": row["image_index"],
                        "rank": row["rank"] or 0,
                        "cold_steps": len(cold_ms),
                        "tpot_ms": tpot,
                        "tpot_if_warm_ms": tpot_if_warm,
                    }
                )
    return ColdImpact(
        cold_steps=cold.flags,
        warm_steps=cold.warm_ms.count,
        warm_step_p50_ms=warm_p50,
        cold_added_ms=added,
        cold_added_upper_ms=upper,
        flagged_images=flagged,
        top_operators=top_operators if flagged else [],
    )


class ColdOperatorTotals:
    """CPU self time per operator, summed separately over cold and warm traced decode steps."""

    def __init__(self, ok: pa.Table, names: list[str]) -> None:
        self._names = names
        self._cold_keys, self._warm_keys = _step_keys(ok)
        self._cold_ns = np.zeros(len(names) + 1)
        self._warm_ns = np.zeros(len(names) + 1)
        self._cold_steps: set[int] = set()
        self._warm_steps: set[int] = set()

    def part(self, ops: pa.Table, codes: np.ndarray, self_ns: np.ndarray) -> list[tuple[np.ndarray, list[int]]]:
        """One slice's (cold, warm) self time per code and the steps it saw, for ``merge``: ``ops``
        placed (with ``step``), ``codes`` their name codes, ``self_ns`` their self times. Reads
        only what ``__init__`` set, so slices are computed on several threads at once."""
        # A batch of images may hold only warm steps: its warm sums still count (analyze/runner.py).
        if (self._cold_keys.size == 0 and self._warm_keys.size == 0) or ops.num_rows == 0:
            return []
        in_step = ops["step"].is_valid().to_numpy(zero_copy_only=False)
        if not in_step.any():
            return []
        keys = _combine(image_key(ops)[in_step], ops["step"].to_numpy(zero_copy_only=False)[in_step].astype(np.int64))
        codes, durations = np.where(codes[in_step] < 0, len(self._names), codes[in_step]), self_ns[in_step]
        # A step's operators are neighbours: look each step up once, not each operator.
        steps, step_of = dense_codes(keys)
        part = []
        for known in (self._cold_keys, self._warm_keys):
            step_hit = _member(steps, known)
            hit = step_hit[step_of]
            totals = np.bincount(codes[hit], weights=durations[hit], minlength=len(self._names) + 1)
            part.append((totals, steps[step_hit].tolist()))
        return part

    def merge(self, part: list[tuple[np.ndarray, list[int]]]) -> None:
        """Add what ``part`` computed for one slice."""
        if not part:
            return
        for (totals, steps), into, seen in zip(
            part, (self._cold_ns, self._warm_ns), (self._cold_steps, self._warm_steps), strict=True
        ):
            into += totals
            seen.update(steps)

    def top(self, count: int = COLD_TOP_OPERATORS) -> list[dict[str, Any]]:
        """Operators by (cold ms per step - warm ms per step), largest first."""
        return cold_top(self._names, self._cold_ns, self._warm_ns, self.traced_steps, count)

    @property
    def sums(self) -> tuple[np.ndarray, np.ndarray]:
        """(cold, warm) self time per name code, unnamed last."""
        return self._cold_ns, self._warm_ns

    @property
    def traced_steps(self) -> tuple[int, int]:
        """(cold, warm) decode steps that had CPU operators in the trace."""
        return len(self._cold_steps), len(self._warm_steps)


def cold_top(
    names: list[str], cold_ns: np.ndarray, warm_ns: np.ndarray, steps: tuple[int, int], count: int = COLD_TOP_OPERATORS
) -> list[dict[str, Any]]:
    """Operators by (cold ms per step - warm ms per step), largest first, from summed self times
    per name code (unnamed last) and the (cold, warm) traced step counts."""
    cold_steps, warm_steps = steps
    if not cold_steps or not warm_steps:
        return []
    cold_per_step = cold_ns / cold_steps / NS_PER_MS
    warm_per_step = warm_ns / warm_steps / NS_PER_MS
    labels = [*names, "(unnamed)"]
    order = np.argsort(-(cold_per_step - warm_per_step))[:count]
    return [
        {
            "name": labels[code],
            "cold_ms_per_step": float(cold_per_step[code]),
            "warm_ms_per_step": float(warm_per_step[code]),
        }
        for code in order.tolist()
        if cold_per_step[code] > warm_per_step[code]
    ]


_STEP_BITS = 24


def _member(keys: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``np.isin(keys, known)`` for sorted ``known``: a binary search per key, no sort of ``keys``."""
    if known.size == 0:
        return np.zeros(keys.size, dtype=bool)
    return known[np.minimum(np.searchsorted(known, keys), known.size - 1)] == keys


def _combine(image_keys: np.ndarray, steps: np.ndarray) -> np.ndarray:
    # Image keys hold rank << 32 | index; decode steps stay far below 2**24.
    return (image_keys.astype(np.int64) << _STEP_BITS) | steps


def _step_keys(ok: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(cold, warm) keys of every decode step of ``ok`` that carries cold flags."""
    if "decode_step_cold" not in ok.column_names or ok.num_rows == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    flags = ok["decode_step_cold"].combine_chunks()
    parents = pc.list_parent_indices(flags).to_numpy()
    if parents.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    values = pc.list_flatten(flags).fill_null(False).to_numpy(zero_copy_only=False)
    offsets = flags.offsets.to_numpy()
    steps = np.arange(parents.size) - offsets[parents] + 1  # decode steps count from 1
    keys = _combine(image_key(ok)[parents], steps.astype(np.int64))
    return np.sort(keys[values]), np.sort(keys[~values])
