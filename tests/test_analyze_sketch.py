"""The run-level step figures' exact sums and quantile sketch (analyze/sketch.py) against numpy."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from dsocr.analyze import summary as summary_module
from dsocr.analyze.ordered import Slices
from dsocr.analyze.sketch import EXACT_VALUES, RELATIVE_ACCURACY, ExactSum, QuantileSketch
from dsocr.analyze.stats import MEDIAN, P90, P99

from dsocr import rundir

FIXTURES = Path(__file__).parent / "data"
QUANTILES = (0.0, 0.01, 0.1, 0.25, MEDIAN, 0.75, P90, P99, 1.0)
#: Room for the float arithmetic of the bound itself.
ROUNDING = 1e-12


def _sketch(values: np.ndarray, parts: int) -> QuantileSketch:
    """``values`` added in ``parts`` groups, each its own sketch, merged (as batches and shards are)."""
    merged = QuantileSketch()
    for group in np.array_split(values, parts):
        sketch = QuantileSketch()
        sketch.add(group)
        merged.merge(QuantileSketch.from_json(sketch.to_json()))  # through partials' JSON too
    return merged


def _assert_within_bound(sketch: QuantileSketch, values: np.ndarray) -> None:
    for q in QUANTILES:
        exact = float(np.quantile(values, q))
        assert abs(sketch.quantile(q) - exact) <= RELATIVE_ACCURACY * abs(exact) + ROUNDING, q


def _random_sets() -> list[np.ndarray]:
    rng = np.random.default_rng(26)
    size = 3 * EXACT_VALUES + 17
    return [
        rng.lognormal(mean=3.0, sigma=0.4, size=size),  # decode step times, ms
        rng.uniform(1e-6, 1.0, size=size),  # MFU-like shares
        rng.exponential(2.0, size=size) * 1e12,  # FLOP counts
        np.concatenate([rng.normal(20.0, 1.0, size), rng.normal(300.0, 30.0, size // 50)]),  # a slow tail
        np.concatenate([np.zeros(size // 3), rng.lognormal(0.0, 2.0, size)]),  # zeros (idle) among values
        -rng.lognormal(1.0, 1.0, size),  # one sign, negative
    ]


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("parts", [1, 7])
def test_sketched_quantiles_are_within_the_stated_relative_error(index: int, parts: int) -> None:
    values = _random_sets()[index]
    sketch = _sketch(values, parts)
    assert not sketch.exact and sketch.count == values.size
    _assert_within_bound(sketch, values)


def test_quantiles_of_real_decode_steps_are_within_the_bound() -> None:
    """The committed H200 runs' reference-clock step times, replicated past EXACT_VALUES with a
    spread of one per mille per copy (distinct values, the real shape)."""
    steps = []
    for fixture in ("gpu-run", "gpu-flops-run"):
        for row in rundir.read_predictions(FIXTURES / fixture)["decode_step_ms"].to_pylist():
            steps += row or []
    copies = math.ceil(4 * EXACT_VALUES / len(steps))
    values = np.concatenate([np.array(steps) * (1 + copy / 1000) for copy in range(copies)])
    _assert_within_bound(_sketch(values, 5), values)


def test_a_sketch_is_exact_up_to_its_limit_and_median_is_numpys() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(2.0, 1.0, EXACT_VALUES)
    sketch = _sketch(values, 3)
    assert sketch.exact
    assert sketch.median() == float(np.median(values))
    assert [sketch.quantile(q) for q in QUANTILES] == [float(np.quantile(values, q)) for q in QUANTILES]
    sketch.add(np.array([1.0]))
    assert not sketch.exact and sketch.count == EXACT_VALUES + 1
    assert QuantileSketch().quantile(MEDIAN) is None and QuantileSketch().describe() == {"median": None, "p90": None}
    with_nan = QuantileSketch()
    with_nan.add(np.array([np.nan, 2.0]))
    assert (with_nan.count, with_nan.median()) == (1, 2.0)


def test_exact_sums_do_not_depend_on_the_grouping() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.lognormal(0.0, 8.0, 20_000), -rng.lognormal(0.0, 8.0, 5_000), [1e-310, 1e300]])
    rng.shuffle(values)
    whole = ExactSum()
    whole.add(values)
    assert whole.value == math.fsum(values)  # correctly rounded, as fsum
    for parts in (2, 13, 1000):
        grouped = ExactSum()
        for group in np.array_split(values, parts):
            part = ExactSum()
            part.add(group)
            grouped.merge(ExactSum.from_json(part.to_json()))
        assert grouped.units == whole.units
    empty = ExactSum()
    empty.add(np.array([np.nan, np.inf, 0.0]))
    assert empty.value == 0.0


def _latency_rows(count: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    names = [item.name for item in dataclasses.fields(summary_module.Latency)] + ["image_ms"]
    return pa.table({name: rng.lognormal(mean=3.0, sigma=0.6, size=count) for name in names})


@pytest.mark.parametrize("images", [EXACT_VALUES, EXACT_VALUES + 3000])
def test_figures_across_images_are_numpys_up_to_the_limit_then_within_the_bound(images: int) -> None:
    """summary.json's medians and p90s across images fold over slices of the rows: numpy's
    exactly up to EXACT_VALUES images, within RELATIVE_ACCURACY beyond."""
    table = _latency_rows(images, seed=images)
    slices = Slices(
        lambda columns: [table.slice(start, 1000).select(list(columns)) for start in range(0, images, 1000)],
        table.schema,
    )
    inputs = SimpleNamespace(latency=slices)
    spread = summary_module._ClockFold()
    for part in slices.columns("image_ms"):
        spread.add(part["image_ms"].to_pylist())
    values = table["image_ms"].to_numpy()
    assert spread.total == sum(values.tolist())  # the float sum of one pass in order
    for name in ("tpot_mean_ms", "ttft_ms"):
        figures = getattr(summary_module.latency_figures(inputs), name)
        exact = table[name].to_numpy()
        for got, q in ((figures.median, MEDIAN), (figures.p90, P90)):
            want = float(np.quantile(exact, q))
            if images <= EXACT_VALUES:
                assert got == want
            else:
                assert abs(got - want) <= RELATIVE_ACCURACY * abs(want)
