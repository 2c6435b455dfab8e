"""The one noise model behind every verdict (compare, report, sweep): is B's figure different from A's?

A figure is compared on the ratio B/A, on a log scale (a time twice as long and half as long are
the same distance):

- paired (the same pages in both runs, two or more of them): the per-page log ratios
  ``ln(b_i / a_i)``; the change is their mean, its standard error ``sd / sqrt(n)``;
- unpaired: the change is ``ln(median_b / median_a)``, its standard error from each run's spread
  of log values, ``hypot(sd_a / sqrt(n_a), sd_b / sqrt(n_b))``.

The change counts when ``|change| > ln(1 + noise)``, where ``noise = max(NOISE_FLOOR,
exp(SE_MULTIPLE * standard error) - 1)``: at least 2% (timer and scheduling noise), and about a 95%
interval beyond that. ``rel_delta`` is ``exp(change) - 1``. docs/analysis.md states the rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

FASTER, SLOWER, SAME = "faster", "slower", "same within noise"
HIGHER, LOWER = "higher", "lower"
#: Marks a figure that one of the runs cannot give (e.g. trace figures of a --profile off run).
NOT_COMPARABLE = "not comparable"
#: Relative change below which two figures are the same whatever the spread (timer and scheduling noise).
NOISE_FLOOR = 0.02
#: Multiple of the standard error that a change must exceed (about a 95% interval).
SE_MULTIPLE = 2.0
ESTIMATE_PAIRED, ESTIMATE_MEDIANS = "paired", "medians"


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _std_error(logs: np.ndarray) -> float:
    return float(np.std(logs, ddof=1) / math.sqrt(logs.size)) if logs.size > 1 else 0.0


def _logs(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return np.log(array[array > 0])


def _ratio(item: tuple[float, float] | float) -> float | None:
    """b/a of one pair (a positive ratio), from ``(a, b)`` or from the relative change b/a - 1."""
    if isinstance(item, tuple | list):
        first, second = item
        return second / first if first > 0 and second > 0 else None
    return 1 + item if 1 + item > 0 else None


def verdict(
    a: Sequence[float],
    b: Sequence[float],
    *,
    lower_is_faster: bool | None,
    paired: Sequence[tuple[float, float] | float] | None = None,
) -> dict[str, Any]:
    """Medians of both runs, their difference, the relative change, the noise it must exceed, the verdict.

    ``lower_is_faster``: True for times, False for rates, None for counts (verdict higher/lower).
    ``paired``: ``(a_i, b_i)`` of the same pages in both runs (or their relative changes
    ``b_i / a_i - 1``); with two or more the change is the pages' mean log ratio (pages of
    different sizes compare on one scale).
    """
    median_a, median_b = _median(a), _median(b)
    result: dict[str, Any] = {"a": median_a, "b": median_b, "images_a": len(a), "images_b": len(b)}
    if median_a is None or median_b is None:
        return result | {"delta": None, "rel_delta": None, "noise": None, "estimate": None, "verdict": None}
    delta = median_b - median_a
    ratios = [_ratio(item) for item in paired or []]
    ratios = [ratio for ratio in ratios if ratio is not None]
    if len(ratios) > 1:
        logs = np.log(ratios)
        change, error, estimate = float(logs.mean()), _std_error(logs), ESTIMATE_PAIRED
    elif median_a > 0 and median_b > 0:
        change = math.log(median_b / median_a)
        error = math.hypot(_std_error(_logs(a)), _std_error(_logs(b)))
        estimate = ESTIMATE_MEDIANS
    else:  # a zero (or negative) figure has no ratio: only equality is "the same"
        same = delta == 0
        word = SAME if same else (HIGHER if delta > 0 else LOWER)
        return result | {"delta": delta, "rel_delta": None, "noise": None, "estimate": None, "verdict": word}
    noise = max(NOISE_FLOOR, math.expm1(SE_MULTIPLE * error))
    if abs(change) <= math.log1p(noise):
        word = SAME
    elif lower_is_faster is None:
        word = HIGHER if change > 0 else LOWER
    else:
        word = FASTER if (change < 0) == lower_is_faster else SLOWER
    return result | {
        "delta": delta,
        "rel_delta": math.expm1(change),
        "noise": noise,
        "estimate": estimate,
        "verdict": word,
    }


def not_comparable(reason: str) -> dict[str, Any]:
    """The entry of a figure that one run cannot give, with why."""
    return {"a": None, "b": None, "delta": None, "rel_delta": None, "noise": None, "verdict": NOT_COMPARABLE,
            "reason": reason}  # fmt: skip
