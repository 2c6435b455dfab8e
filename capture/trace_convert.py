"""Chrome-trace JSON chunk -> trace Parquet. Runs in a worker process, off the GPU's critical path.

Imports neither torch nor transformers, so a spawned worker starts in a fraction of a second.
The profiler's C++ exporter writes the JSON (fast); parsing it here costs a few microseconds per
event, paid on another core while the model keeps decoding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
from dsocr.capture.op_flops import op_flops

from dsocr import schema
from dsocr.rundir import write_parquet, write_table_atomic
from dsocr.vocab import NS_PER_US, parse_range_name

CPU_OP = "cpu_op"
COMPLETE_EVENT = "X"


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def events_to_table(trace: dict[str, Any], *, image_index: int, rank: int, chunk: int) -> pa.Table:
    """The complete ('X') events of one chrome trace as a TRACE table (absolute ns times)."""
    base_ns = int(trace.get("baseTimeNanoseconds", 0))
    columns: dict[str, list[Any]] = {name: [] for name in schema.TRACE.names}
    for event in trace.get("traceEvents", ()):
        if event.get("ph") != COMPLETE_EVENT:
            continue
        args = event.get("args") or {}
        name = str(event.get("name", ""))
        stage, step = parse_range_name(name)
        columns["cat"].append(str(event.get("cat", "")))
        columns["name"].append(name)
        columns["ts_ns"].append(base_ns + round(float(event["ts"]) * NS_PER_US))
        columns["dur_ns"].append(round(float(event.get("dur", 0)) * NS_PER_US))
        columns["pid"].append(_optional_int(event.get("pid")))
        columns["tid"].append(_optional_int(event.get("tid")))
        columns["device"].append(_optional_int(args.get("device")))
        columns["stream"].append(_optional_int(args.get("stream")))
        columns["correlation"].append(_optional_int(args.get("correlation")))
        columns["external_id"].append(_optional_int(args.get("External id")))
        columns["range_stage"].append(stage)
        columns["range_step"].append(step)
        columns["flops"].append(op_flops(name, args) if event.get("cat") == CPU_OP else None)
    count = len(columns["cat"])
    columns["image_index"] = [image_index] * count
    columns["rank"] = [rank] * count
    columns["chunk"] = [chunk] * count
    arrays = []
    for field in schema.TRACE:
        values = columns[field.name]
        if pa.types.is_dictionary(field.type):
            arrays.append(pa.array(values, type=pa.string()).dictionary_encode())
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema.TRACE)


#: A one-event trace for ``warm_up``: an operator, so the FLOP path runs too.
_WARM_UP_TRACE = {"traceEvents": [{"ph": COMPLETE_EVENT, "cat": CPU_OP, "name": "aten::mm", "ts": 0.0, "dur": 1.0}]}


def warm_up() -> int:
    """Import, build and write (to memory) what converting a chunk needs; returns the event count.

    Run in the converter process before the first image: its first conversion otherwise imports
    pyarrow and this module and loads the Parquet writer beside decode steps (on a 2-core CPU run,
    the four steps after the first trace window took 64 ms against 2 ms).
    """
    table = events_to_table(_WARM_UP_TRACE, image_index=0, rank=0, chunk=0)
    write_parquet(table, pa.BufferOutputStream())
    return table.num_rows


def convert_chunk(
    json_path: str, parquet_path: str, image_index: int, rank: int, chunk: int, keep_path: str | None = None
) -> int:
    """Convert one exported chunk to Parquet atomically, then delete the JSON (or move it to
    ``keep_path``); return the event count."""
    with open(json_path, encoding="utf-8") as handle:
        trace = json.load(handle)
    table = events_to_table(trace, image_index=image_index, rank=rank, chunk=chunk)
    write_table_atomic(table, Path(parquet_path))
    if keep_path is None:
        os.unlink(json_path)
    else:  # a rename within trace/: the kept file is whole or absent
        os.replace(json_path, keep_path)
    return table.num_rows
