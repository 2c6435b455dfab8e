"""Run-level figures over decode steps that merge: exact sums, and quantiles with a stated bound.

A run of 10,000 pages of 512 tokens has about 5 M decode steps; analyze never holds them all
(docs/scale.md). What a figure across steps needs is kept in two mergeable forms:

- ``ExactSum``: a sum of floats kept exactly (an integer count of 2**-SCALE_BITS), so batches and
  shards added in any grouping give the one correctly rounded total.
- ``QuantileSketch``: the values themselves up to ``EXACT_VALUES`` (quantiles exact, as
  ``numpy.quantile`` gives them), beyond that a log-bucketed histogram (DDSketch, Masson et al.,
  VLDB 2019): a value v > 0 falls in bucket ceil(log_gamma(v)) with gamma = (1 + a) / (1 - a),
  whose representative 2 gamma**i / (gamma + 1) is within a relative ``RELATIVE_ACCURACY`` (a) of
  every value of the bucket. A quantile is interpolated as numpy's (linearly between the order
  statistics at rank q (n - 1)) from the representatives of those two order statistics, so it is
  within a relative ``RELATIVE_ACCURACY`` of the exact quantile when the values share a sign
  (zero is a bucket of its own, negatives mirror positives). tests/test_analyze_sketch.py checks
  the bound against numpy on random and real data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from dsocr.analyze.stats import MEDIAN, P90

#: Up to this many values a sketch keeps them and its quantiles are exact.
EXACT_VALUES = 4096
#: Beyond EXACT_VALUES, the largest relative error of a quantile (values of one sign).
RELATIVE_ACCURACY = 0.001
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
#: ExactSum's unit: 2**-SCALE_BITS, below every bit of a float (a subnormal's last is 2**-1074).
SCALE_BITS = 1200
_MANTISSA_BITS = 53
_HALF_BITS = 26


class ExactSum:
    """A sum of floats, exact whatever the grouping (non-finite values are skipped)."""

    def __init__(self, units: int = 0) -> None:
        self.units = units

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values) & (values != 0)]
        if values.size == 0:
            return
        mantissa, exponent = np.frexp(values)  # value = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
        integer = (mantissa * 2.0**_MANTISSA_BITS).astype(np.int64)  # exact: 53 bits
        high, low = integer >> _HALF_BITS, integer & ((1 << _HALF_BITS) - 1)
        exponents, group = np.unique(exponent, return_inverse=True)
        # Each half is below 2**27: their sums stay exact in float64 up to 2**26 values per exponent.
        for part in range(0, values.size, 1 << _HALF_BITS):
            chunk = slice(part, part + (1 << _HALF_BITS))
            high_sums = np.bincount(group[chunk], weights=high[chunk], minlength=exponents.size)
            low_sums = np.bincount(group[chunk], weights=low[chunk], minlength=exponents.size)
            for power, high_sum, low_sum in zip(exponents.tolist(), high_sums.tolist(), low_sums.tolist(), strict=True):
                shift = SCALE_BITS + power - _MANTISSA_BITS
                self.units += ((int(high_sum) << _HALF_BITS) + int(low_sum)) << shift

    def merge(self, other: ExactSum) -> None:
        self.units += other.units

    @property
    def value(self) -> float:
        """The correctly rounded total."""
        return self.units / (1 << SCALE_BITS)

    def to_json(self) -> str:
        return str(self.units)  # an integer of ~1,100 bits: a string, for any JSON reader

    @classmethod
    def from_json(cls, payload: str) -> ExactSum:
        return cls(int(payload))


def _bucket(values: np.ndarray) -> np.ndarray:
    return np.ceil(np.log(values) / _LOG_GAMMA).astype(np.int64)


def _representative(index: np.ndarray) -> np.ndarray:
    return 2 * np.exp(index * _LOG_GAMMA) / (_GAMMA + 1)


class QuantileSketch:
    """Quantiles of a stream of values: exact up to EXACT_VALUES, then within RELATIVE_ACCURACY."""

    def __init__(self) -> None:
        self.count = 0
        self._values: list[np.ndarray] | None = []
        #: bucket index -> count, for positive values and for the magnitudes of negative ones.
        self._positive: dict[int, int] = {}
        self._negative: dict[int, int] = {}
        self._zeros = 0

    @property
    def exact(self) -> bool:
        return self._values is not None

    def add(self, values: np.ndarray) -> None:
        """Add finite values (NaN is skipped)."""
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            return
        self.count += int(values.size)
        if self._values is not None:
            self._values.append(values)
            if self.count > EXACT_VALUES:
                held, self._values = np.concatenate(self._values), None
                self._bucket(held)
            return
        self._bucket(values)

    def _bucket(self, values: np.ndarray) -> None:
        self._zeros += int(np.count_nonzero(values == 0))
        for into, part in ((self._positive, values[values > 0]), (self._negative, -values[values < 0])):
            indices, counts = np.unique(_bucket(part), return_counts=True)
            for index, count in zip(indices.tolist(), counts.tolist(), strict=True):
                into[index] = into.get(index, 0) + count

    def merge(self, other: QuantileSketch) -> None:
        if other.exact:
            for values in other._values or []:
                self.add(values)
            return
        if self._values is not None:
            held, self._values = (np.concatenate(self._values) if self._values else np.zeros(0)), None
            self._bucket(held)
        self.count += other.count
        self._zeros += other._zeros
        for into, source in ((self._positive, other._positive), (self._negative, other._negative)):
            for index, count in source.items():
                into[index] = into.get(index, 0) + count

    def _order_statistics(self, ranks: np.ndarray) -> np.ndarray:
        """The bucket representative of the values at 0-based ``ranks`` (sorted order)."""
        negative = sorted(self._negative.items(), reverse=True)  # largest magnitude first: smallest value
        positive = sorted(self._positive.items())
        values = np.concatenate(
            [
                -_representative(np.array([index for index, _ in negative], dtype=np.float64)),
                [0.0] if self._zeros else [],
                _representative(np.array([index for index, _ in positive], dtype=np.float64)),
            ]
        )
        counts = np.array(
            [count for _, count in negative] + ([self._zeros] if self._zeros else []) + [c for _, c in positive]
        )
        return values[np.searchsorted(np.cumsum(counts), ranks, side="right")]

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated as numpy's default (None when empty)."""
        if self.count == 0:
            return None
        if self._values is not None:
            return float(np.quantile(np.concatenate(self._values), q))
        position = q * (self.count - 1)
        low = math.floor(position)
        high = min(low + 1, self.count - 1)
        low_value, high_value = self._order_statistics(np.array([low, high]))
        fraction = position - low
        return float(low_value * (1 - fraction) + high_value * fraction) if fraction else float(low_value)

    def median(self) -> float | None:
        """The median: ``numpy.median``'s while exact (None when empty)."""
        if self._values is not None:
            return float(np.median(np.concatenate(self._values))) if self.count else None
        return self.quantile(MEDIAN)

    def describe(self) -> dict[str, float | None]:
        """Median and p90 (None when empty), as analyze.stats.describe gives them."""
        return {"median": self.quantile(MEDIAN), "p90": self.quantile(P90)}

    def to_json(self) -> dict[str, Any]:
        if self._values is not None:
            return {"values": np.concatenate(self._values).tolist() if self._values else []}
        return {
            "count": self.count,
            "zeros": self._zeros,
            "positive": {str(key): value for key, value in self._positive.items()},
            "negative": {str(key): value for key, value in self._negative.items()},
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> QuantileSketch:
        sketch = cls()
        if "values" in payload:
            sketch.add(np.array(payload["values"], dtype=np.float64))
            return sketch
        sketch._values = None
        sketch.count = int(payload["count"])
        sketch._zeros = int(payload["zeros"])
        sketch._positive = {int(key): int(value) for key, value in payload["positive"].items()}
        sketch._negative = {int(key): int(value) for key, value in payload["negative"].items()}
        return sketch
