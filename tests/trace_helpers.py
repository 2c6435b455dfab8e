"""Read a run's whole trace as one table: for tests that check what capture wrote."""

from __future__ import annotations

import statistics
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dsocr import schema
from dsocr.rundir import trace_files


def read_trace(run_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """The whole trace of a run, schema-checked (columns: a subset to read)."""
    files = trace_files(run_dir)
    if not files:
        empty = schema.TRACE.empty_table()
        return empty if columns is None else empty.select(columns)
    for path in files:
        schema.check_table(pq.read_schema(path), "trace", source=str(path))
    dataset = ds.dataset([str(path) for path in files], format="parquet", schema=schema.TRACE)
    return dataset.to_table(columns=columns)


#: CPU ranges against perf_counter marks taken right beside them (observed within 1.2%).
CPU_CLOCK_TOLERANCE = 0.05
#: A range opens after its clock mark and closes before the next one, so each range comes out
#: shorter than its clock by its own enter/exit cost (0.05 ms per step typical here, 0.24 ms
#: seen in CI on a busy box).
RANGE_OVERHEAD_MS = 0.5


def assert_range_matches_clock(range_ms: float, clock_ms: float, context: object = None) -> None:
    """One range against the clock marks beside it: within CPU_CLOCK_TOLERANCE, or short by overhead only."""
    if abs(range_ms - clock_ms) <= CPU_CLOCK_TOLERANCE * clock_ms:
        return
    assert range_ms <= clock_ms, (range_ms, clock_ms, context)
    assert clock_ms - range_ms < RANGE_OVERHEAD_MS, (range_ms, clock_ms, context)


def assert_steps_match_clock(range_ms: list[float], clock_ms: list[float], context: object = None) -> None:
    """Step ranges against the per-step clock, step by step.

    No range may be longer than its clock interval (it sits inside it), and the typical
    (median) step must be short of its clock by no more than range overhead. The median,
    not the sum: on a loaded box the scheduler sometimes parks the process for a time slice
    (4 to 9 ms seen) between a range's end and the next clock mark, and that belongs to the
    clock's interval only. A range of the wrong step fails here, since steps differ by more.
    """
    assert len(range_ms) == len(clock_ms) > 0, (len(range_ms), len(clock_ms), context)
    for step, (measured, clock) in enumerate(zip(range_ms, clock_ms, strict=True), start=1):
        assert measured <= clock * (1 + CPU_CLOCK_TOLERANCE), (step, measured, clock, context)
    shortfalls = sorted(clock - measured for measured, clock in zip(range_ms, clock_ms, strict=True))
    assert statistics.median(shortfalls) < RANGE_OVERHEAD_MS, (shortfalls, context)
