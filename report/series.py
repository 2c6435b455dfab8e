"""Downsampling of per-step series, so a page with thousands of steps per image stays light."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Points kept per plotted series; beyond it a series is downsampled and the plot says so.
MAX_POINTS = 2000
#: Points per figure over all its images (one image shows at a time, but every image is in the
#: page): many images share it, so a page's size stays bounded however long the run.
FIGURE_POINTS = 150_000
MIN_POINTS = 200


def points_per_series(series: int) -> int:
    """The point budget of each of ``series`` series of one figure."""
    return max(MIN_POINTS, min(MAX_POINTS, FIGURE_POINTS // max(series, 1)))


@dataclass(frozen=True)
class Series:
    """x and y to plot, and how many points the full series had."""

    x: np.ndarray
    y: np.ndarray
    total: int

    @property
    def downsampled(self) -> bool:
        return self.x.size < self.total


def min_max(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> Series:
    """Keep, per bucket of consecutive points, the lowest and the highest (spikes survive)."""
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    if x.size <= max_points:
        return Series(x, y, x.size)
    buckets = max_points // 2
    edges = np.linspace(0, x.size, buckets + 1).astype(np.int64)
    safe = np.where(np.isnan(y), np.inf, y)
    low = np.minimum.reduceat(safe, edges[:-1])
    high = np.maximum.reduceat(np.where(np.isnan(y), -np.inf, y), edges[:-1])
    # Position of each bucket's extreme: first index in the bucket equal to it.
    keep = set()
    for start, stop, lo, hi in zip(edges[:-1], edges[1:], low, high, strict=True):
        segment = y[start:stop]
        keep.add(int(start + np.argmax(segment == lo)) if np.isfinite(lo) else int(start))
        keep.add(int(start + np.argmax(segment == hi)) if np.isfinite(hi) else int(start))
    index = np.array(sorted(keep), dtype=np.int64)
    return Series(x[index], y[index], x.size)


def bucket_mean(
    x: np.ndarray, columns: list[np.ndarray], max_points: int = MAX_POINTS
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Mean of each column per bucket of consecutive points (for stacked bars, whose parts must add up)."""
    x = np.asarray(x)
    if x.size <= max_points:
        return x, [np.asarray(c, dtype=np.float64) for c in columns], x.size
    edges = np.linspace(0, x.size, max_points + 1).astype(np.int64)
    counts = np.diff(edges)
    means = [np.add.reduceat(np.asarray(c, dtype=np.float64), edges[:-1]) / counts for c in columns]
    return x[edges[:-1]], means, x.size
