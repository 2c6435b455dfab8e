"""Read a run's trace once and split it into the event families the analyses need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from analyze.categories import CPU_OP_CAT, GPU_OP_CATS, LAUNCH_CATS, RANGE_CAT
from dsocr import rundir

#: Columns analyze reads (device and stream are only needed by export-trace).
TRACE_COLUMNS = [
    "image_index",
    "rank",
    "chunk",
    "cat",
    "name",
    "ts_ns",
    "dur_ns",
    "pid",
    "tid",
    "correlation",
    "external_id",
    "range_stage",
    "range_step",
]
IMAGE_KEYS = ["rank", "image_index"]
CHUNK_KEYS = ["rank", "image_index", "chunk"]


@dataclass(frozen=True)
class TraceTables:
    """The trace of a run, split by role. Each table keeps only the columns its users need."""

    events: int
    files: int
    #: dsocr's own user_annotation ranges (range_stage set).
    ranges: pa.Table
    #: cuda_runtime / cuda_driver calls that carry a correlation id.
    launches: pa.Table
    #: kernel, gpu_memcpy and gpu_memset activities.
    gpu_ops: pa.Table
    #: cpu_op events (aten operators).
    cpu_ops: pa.Table
    #: Per (rank, image, chunk): first start, last end and event count; the flush windows.
    chunks: pa.Table

    @property
    def has_device_time(self) -> bool:
        return self.gpu_ops.num_rows > 0


def _in(column: pa.ChunkedArray, values: tuple[str, ...]) -> pa.ChunkedArray:
    return pc.is_in(column, value_set=pa.array(values, type=pa.string()))


def _chunk_windows(table: pa.Table) -> pa.Table:
    """Where each flush chunk starts and ends. The profiler's own 'Trace' envelope is left out:
    it spans the whole cycle, so a range cut at the cycle's end would never be the last to end."""
    events = table.select([*CHUNK_KEYS, "cat", "ts_ns", "dur_ns"])
    events = events.append_column("end_ns", pc.add(events["ts_ns"], events["dur_ns"]))
    counted = events.group_by(CHUNK_KEYS).aggregate([("ts_ns", "count")]).rename_columns([*CHUNK_KEYS, "events"])
    inside = events.filter(pc.invert(pc.equal(events["cat"], "Trace")))
    windows = inside.group_by(CHUNK_KEYS).aggregate([("ts_ns", "min"), ("end_ns", "max")])
    windows = windows.rename_columns([*CHUNK_KEYS, "first_ns", "last_end_ns"])
    return counted.join(windows, CHUNK_KEYS, join_type="left outer")


def load_trace(run_dir: Path) -> TraceTables:
    """Read ``run_dir/trace`` (schema-checked) and split it; empty tables when there is no trace."""
    table = rundir.read_trace(run_dir, columns=TRACE_COLUMNS)
    cat = table["cat"]
    ranges = table.filter(pc.and_(pc.equal(cat, RANGE_CAT), pc.is_valid(table["range_stage"])))
    launches = table.filter(pc.and_(_in(cat, LAUNCH_CATS), pc.is_valid(table["correlation"])))
    gpu_ops = table.filter(_in(cat, GPU_OP_CATS))
    cpu_ops = table.filter(pc.equal(cat, CPU_OP_CAT))
    return TraceTables(
        events=table.num_rows,
        files=len(rundir.trace_files(run_dir)),
        ranges=ranges.select(
            [*CHUNK_KEYS, "name", "ts_ns", "dur_ns", "pid", "tid", "range_stage", "range_step"]
        ).combine_chunks(),
        launches=launches.select([*CHUNK_KEYS, "ts_ns", "pid", "tid", "correlation"]),
        # Each file has its own dictionaries; joins need one per column.
        gpu_ops=gpu_ops.select(
            [*CHUNK_KEYS, "cat", "name", "ts_ns", "dur_ns", "correlation", "external_id"]
        ).unify_dictionaries(),
        cpu_ops=cpu_ops.select(
            [*CHUNK_KEYS, "name", "ts_ns", "dur_ns", "pid", "tid", "external_id"]
        ).unify_dictionaries(),
        chunks=_chunk_windows(table),
    )
