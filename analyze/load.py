"""Read a run's trace file by file and keep only the event families the analyses need.

Streaming keeps the peak near the size of what is kept (cpu_ops, launches, GPU activities,
ranges) plus a few files in flight (two per worker thread), not the size of the whole trace
plus its filtered copies.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dsocr.analyze.categories import CPU_OP_CAT, GPU_OP_CATS, LAUNCH_CATS, RANGE_CAT
from dsocr.analyze.keys import chunk_key, run_starts
from dsocr.analyze.threads import WorkerPool, ordered_map, worker_pool

from dsocr import rundir, schema
from dsocr.errors import RunDirError

IMAGE_KEYS = ["rank", "image_index"]
CHUNK_KEYS = ["rank", "image_index", "chunk"]
RANGE_COLUMNS = [*CHUNK_KEYS, "name", "ts_ns", "dur_ns", "pid", "tid", "range_stage", "range_step"]
LAUNCH_COLUMNS = [*CHUNK_KEYS, "ts_ns", "dur_ns", "pid", "tid", "correlation"]
GPU_OP_COLUMNS = [*CHUNK_KEYS, "cat", "name", "ts_ns", "dur_ns", "correlation", "external_id"]
CPU_OP_COLUMNS = [*CHUNK_KEYS, "name", "ts_ns", "dur_ns", "pid", "tid", "external_id", "flops"]
READ_COLUMNS = sorted(set(RANGE_COLUMNS + LAUNCH_COLUMNS + GPU_OP_COLUMNS + CPU_OP_COLUMNS))
#: Per-file window columns (before _combine_windows names them events, first_ns, last_end_ns).
WINDOW_COLUMNS = [*CHUNK_KEYS, "ts_ns_count", "ts_ns_min", "end_ns_max"]
#: Kineto's whole-cycle envelope: it ends when the cycle ends, so it says nothing about ranges.
ENVELOPE_CAT = "Trace"


@dataclass(frozen=True)
class TraceTables:
    """The trace of a run, split by role. Each table keeps only the columns its users need;
    dictionary columns share one dictionary per table (joins and codes need that)."""

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
    #: Per (rank, image, chunk): first start, last end (envelope left out) and event count.
    chunks: pa.Table

    @property
    def has_device_time(self) -> bool:
        return self.gpu_ops.num_rows > 0


def check_trace_file(path: Path) -> None:
    """Raise RunDirError for an unreadable file, SchemaMismatchError for another table or version."""
    try:
        file_schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RunDirError(f"{path}: unreadable Parquet ({exc})") from exc
    schema.check_table(file_schema, "trace", source=str(path))


def _read(path: Path, *, use_threads: bool) -> pa.Table:
    """READ_COLUMNS of one file; nullable columns added later in this schema version read as nulls."""
    present = set(pq.read_schema(path).names)
    table = rundir.read_parquet(path, [name for name in READ_COLUMNS if name in present], use_threads=use_threads)
    for name in READ_COLUMNS:
        if name not in present:
            field = schema.TRACE.field(name)
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


#: Role codes of an event, from its ``cat`` (one lookup per dictionary value, not per event).
_RANGE, _LAUNCH, _GPU_OP, _CPU_OP, _ENVELOPE, _OTHER = range(6)
_ROLE_OF_CAT = {
    RANGE_CAT: _RANGE,
    CPU_OP_CAT: _CPU_OP,
    ENVELOPE_CAT: _ENVELOPE,
    **dict.fromkeys(LAUNCH_CATS, _LAUNCH),
    **dict.fromkeys(GPU_OP_CATS, _GPU_OP),
}


def _roles(cat: pa.ChunkedArray) -> np.ndarray:
    """The role code of each event: its category's dictionary code mapped through a small table."""
    combined = cat.combine_chunks()
    if not pa.types.is_dictionary(combined.type):
        combined = combined.dictionary_encode()
    values = combined.dictionary.to_pylist()
    lookup = np.array([_ROLE_OF_CAT.get(value, _OTHER) for value in values] + [_OTHER], dtype=np.int8)
    indices = combined.indices
    return lookup[(indices.fill_null(len(values)) if indices.null_count else indices).to_numpy()]


def _rows(
    table: pa.Table,
    columns: list[str],
    mask: np.ndarray,
    *,
    valid: str | None = None,
    column_pool: Executor | None = None,
) -> pa.Table:
    """The rows of one role, only ``columns``, less those whose ``valid`` column is null; with
    ``column_pool``, each column is copied on its own thread.

    Select, then take: each role's table copies only its own columns; the null check runs
    on the role's rows, not on every event of the file.
    """
    selected = table.select(columns)
    indices = pa.array(np.flatnonzero(mask))  # take by index: ~30% under filter
    if column_pool is None:
        rows = selected.take(indices)
    else:
        taken = [column_pool.submit(column.take, indices) for column in selected.columns]
        rows = pa.Table.from_arrays([future.result() for future in taken], schema=selected.schema)
    if valid is not None and rows[valid].null_count:
        rows = rows.filter(rows[valid].is_valid())
    return rows


def _one_value(column: pa.ChunkedArray) -> bool:
    bounds = pc.min_max(column)
    return bounds["min"].as_py() == bounds["max"].as_py()


def _windows(table: pa.Table, roles: np.ndarray) -> pa.Table:
    """first_ns, last_end_ns and events per chunk key of one file."""
    inside = roles != _ENVELOPE
    if table.num_rows and all(_one_value(table[key]) for key in CHUNK_KEYS):
        # The usual file: one flush chunk of one image, so one row, without a grouping pass.
        starts = table["ts_ns"].to_numpy()
        ends = starts + table["dur_ns"].to_numpy()
        any_inside = bool(inside.any())
        first = int(starts.min(where=inside, initial=np.iinfo(np.int64).max)) if any_inside else None
        last = int(ends.max(where=inside, initial=np.iinfo(np.int64).min)) if any_inside else None
        return pa.table(
            {
                **{key: pa.array([table[key][0].as_py()], pa.int32()) for key in CHUNK_KEYS},
                "ts_ns_count": pa.array([table.num_rows], pa.int64()),
                "ts_ns_min": pa.array([first], pa.int64()),
                "end_ns_max": pa.array([last], pa.int64()),
            }
        ).select(WINDOW_COLUMNS)
    events = table.select(CHUNK_KEYS).append_column("ts_ns", table["ts_ns"])
    events = events.append_column("end_ns", pc.add(table["ts_ns"], table["dur_ns"]))
    counted = events.group_by(CHUNK_KEYS).aggregate([("ts_ns", "count")])
    inside_events = events.filter(pa.array(inside)).group_by(CHUNK_KEYS)
    bounds = inside_events.aggregate([("ts_ns", "min"), ("end_ns", "max")])
    return counted.join(bounds, CHUNK_KEYS, join_type="left outer").select(WINDOW_COLUMNS)


def _combine_windows(parts: list[pa.Table]) -> pa.Table:
    """One row per chunk key (in key order): events summed, first start and last end over the
    files that hold it. numpy, not Arrow's group_by: a row per file, where Acero's import and
    set-up would cost more than the work."""
    if not parts:
        return pa.table(
            {
                **{key: pa.array([], pa.int32()) for key in CHUNK_KEYS},
                "events": pa.array([], pa.int64()),
                "first_ns": pa.array([], pa.int64()),
                "last_end_ns": pa.array([], pa.int64()),
            }
        )
    windows = pa.concat_tables(parts)
    keys = chunk_key(windows)
    order = np.argsort(keys, kind="stable")
    windows = windows.take(pa.array(order))
    starts = run_starts(keys[order])
    first, last = windows["ts_ns_min"], windows["end_ns_max"]
    return pa.table(
        {
            **{key: windows[key].take(pa.array(starts)) for key in CHUNK_KEYS},
            "events": np.add.reduceat(windows["ts_ns_count"].to_numpy(), starts),
            "first_ns": _reduce_valid(np.minimum, first, starts, np.iinfo(np.int64).max),
            "last_end_ns": _reduce_valid(np.maximum, last, starts, np.iinfo(np.int64).min),
        }
    )


def _reduce_valid(ufunc: np.ufunc, column: pa.ChunkedArray, starts: np.ndarray, identity: int) -> pa.Array:
    """``ufunc.reduceat`` over the valid values of each group; null for a group with none."""
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    reduced = ufunc.reduceat(column.fill_null(identity).to_numpy(), starts)
    return pa.array(reduced, mask=~np.logical_or.reduceat(valid, starts))


def _concat(parts: list[pa.Table], columns: list[str]) -> pa.Table:
    if not parts:
        return schema.TRACE.empty_table().select(columns)
    return pa.concat_tables(parts).unify_dictionaries()


@dataclass(frozen=True)
class _FileParts:
    events: int
    ranges: pa.Table
    launches: pa.Table
    gpu_ops: pa.Table
    cpu_ops: pa.Table
    windows: pa.Table


def _load_file(path: Path, *, column_pool: Executor | None = None) -> _FileParts:
    """One trace file, checked, read and split by role; with ``column_pool``, its columns are
    decoded on pyarrow's threads and copied side by side on the pool's."""
    check_trace_file(path)
    # Damaged pages fail only here, past the footer: RunDirError.
    table = _read(path, use_threads=column_pool is not None)
    roles = _roles(table["cat"])
    rows = partial(_rows, table, column_pool=column_pool)
    return _FileParts(
        events=table.num_rows,
        ranges=rows(RANGE_COLUMNS, roles == _RANGE, valid="range_stage"),
        launches=rows(LAUNCH_COLUMNS, roles == _LAUNCH, valid="correlation"),
        gpu_ops=rows(GPU_OP_COLUMNS, roles == _GPU_OP),
        cpu_ops=rows(CPU_OP_COLUMNS, roles == _CPU_OP),
        windows=_windows(table, roles),
    )


def load_trace(run_dir: Path, pool: WorkerPool | None = None) -> TraceTables:
    """Read ``run_dir/trace`` (each file schema-checked); empty tables when there is no trace.

    Files are read on ``pool``'s threads (default: a pool of this process's cores), in order:
    the first bad file is the one reported, as in a plain loop.
    """
    return load_files(rundir.trace_files(run_dir), pool)


def load_files(files: list[Path], pool: WorkerPool | None = None) -> TraceTables:
    """``load_trace`` of some of a run's trace files (analyze reads a batch of whole images at a time)."""
    if pool is None:
        with worker_pool() as own_pool:
            return load_files(files, own_pool)
    if len(files) >= pool.workers:
        parts = list(ordered_map(pool, _load_file, files))
    else:
        # Fewer files than threads (one image in one flush chunk, say): the idle threads' share
        # goes to each file's columns instead, decoded and copied side by side.
        with ThreadPoolExecutor(pool.workers, thread_name_prefix="dsocr-columns") as column_pool:
            parts = list(ordered_map(pool, partial(_load_file, column_pool=column_pool), files))
    return TraceTables(
        events=sum(part.events for part in parts),
        files=len(files),
        ranges=_concat([part.ranges for part in parts], RANGE_COLUMNS).combine_chunks(),
        launches=_concat([part.launches for part in parts], LAUNCH_COLUMNS),
        gpu_ops=_concat([part.gpu_ops for part in parts], GPU_OP_COLUMNS),
        cpu_ops=_concat([part.cpu_ops for part in parts], CPU_OP_COLUMNS),
        chunks=_combine_windows([part.windows for part in parts]),
    )
