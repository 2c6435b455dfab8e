"""Quantiles per group and run-level descriptions, vectorized (linear interpolation, as numpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MEDIAN = 0.5
P90 = 0.9
P99 = 0.99


def grouped_quantiles(
    keys: np.ndarray, values: np.ndarray, quantiles: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per group key: the requested quantiles of ``values`` (shape groups x quantiles)."""
    keys = np.asarray(keys, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if keys.size == 0:
        return keys, np.zeros((0, len(quantiles)))
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    starts = np.concatenate(([0], np.flatnonzero(k[1:] != k[:-1]) + 1))
    sizes = np.diff(np.append(starts, k.size))
    result = np.empty((starts.size, len(quantiles)))
    for column, q in enumerate(quantiles):
        position = q * (sizes - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, sizes - 1)
        fraction = position - low
        result[:, column] = v[starts + low] * (1 - fraction) + v[starts + high] * fraction
    return k[starts], result


def describe(values: Sequence[float | None]) -> dict[str, float | None]:
    """Median and p90 of the non-null values (None when there are none)."""
    present = np.asarray([value for value in values if value is not None], dtype=np.float64)
    if present.size == 0:
        return {"median": None, "p90": None}
    return {"median": float(np.quantile(present, MEDIAN)), "p90": float(np.quantile(present, P90))}
