"""``dsocr export-trace``: the Parquet trace back to Chrome trace JSON (Perfetto, HTA).

Built column-wise with pyarrow string kernels, one flush chunk at a time, so a 10 M-event
run streams to disk without a Python loop per event and without holding the JSON in memory.
Names and categories are escaped once per distinct value (they are dictionary columns).
Times are written in µs relative to ``baseTimeNanoseconds`` so that nanoseconds survive
the double-precision parse every viewer does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from dsocr.analyze.categories import GPU_OP_CATS
from dsocr.analyze.load import check_trace_file

from dsocr import rundir, schema
from dsocr.errors import BadInputError, OutputError, RunDirError
from dsocr.vocab import NS_PER_US

EXPORT_DIR = "export"
FRACTION_DIGITS = 3
RECORD_END = ",\n"
#: Kineto writes its own whole-cycle envelope with no pid; it has no place on a timeline.
ENVELOPE_CAT = "Trace"


def default_output(run_dir: Path, image: int | None) -> Path:
    """``analysis/export/trace.json`` or ``.../trace-image<N>.json``."""
    name = "trace.json" if image is None else f"trace-image{image}.json"
    return run_dir / rundir.ANALYSIS_DIR / EXPORT_DIR / name


def _output_path(run_dir: Path, image: int | None, output: Path | None) -> Path:
    """The file to write: the default one inside the run (never through a link out of it), or
    ``--out``, which must not be a folder."""
    if output is None:
        return rundir.inside_run(run_dir, default_output(run_dir, image))
    if output.is_dir():
        raise OutputError(f"--out {output}: is a folder; give the JSON file's name")
    return output


def _escaped(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """JSON string literals of a dictionary column, escaping each distinct value once."""
    chunks = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            quoted = pa.array([json.dumps(value, ensure_ascii=False) for value in chunk.dictionary.to_pylist()])
            chunks.append(pa.DictionaryArray.from_arrays(chunk.indices, quoted).cast(pa.string()))
        else:
            chunks.append(pa.array([json.dumps(value, ensure_ascii=False) for value in chunk.to_pylist()]))
    return pa.chunked_array(chunks, type=pa.string())


def _microseconds(ns: pa.ChunkedArray) -> pa.ChunkedArray:
    """Integer ns as a decimal µs string with three fraction digits ("12.345")."""
    whole = pc.divide(ns, NS_PER_US)
    fraction = pc.subtract(ns, pc.multiply(whole, NS_PER_US))
    digits = pc.utf8_lpad(pc.cast(fraction, pa.string()), width=FRACTION_DIGITS, padding="0")
    return pc.binary_join_element_wise(pc.cast(whole, pa.string()), digits, ".")


def _field(label: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``,"label":value`` where the value is present, an empty string elsewhere."""
    return pc.fill_null(pc.binary_join_element_wise(f',"{label}":', pc.cast(values, pa.string()), ""), "")


def _records(table: pa.Table, base_ns: int) -> pa.ChunkedArray:
    """One JSON object per event, each followed by ``,\\n``."""
    # (binary_join_element_wise's null_handling="skip" drops rows on chunked input: pyarrow 26.)
    fields = pc.binary_join_element_wise(
        _field("External id", table["external_id"]),
        _field("correlation", table["correlation"]),
        _field("device", table["device"]),
        _field("stream", table["stream"]),
        "",
    )
    args = pc.replace_substring_regex(fields, pattern="^,", replacement="")
    pieces = [
        '{"ph":"X","cat":',
        _escaped(table["cat"]),
        ',"name":',
        _escaped(table["name"]),
        ',"pid":',
        pc.cast(table["pid"], pa.string()),
        ',"tid":',
        pc.cast(pc.fill_null(table["tid"], 0), pa.string()),
        ',"ts":',
        _microseconds(pc.subtract(table["ts_ns"], base_ns)),
        ',"dur":',
        _microseconds(table["dur_ns"]),
        ',"args":{',
        args,
        "}}" + RECORD_END,
    ]
    return pc.binary_join_element_wise(*pieces, "")


def _write_strings(handle, strings: pa.ChunkedArray) -> None:
    """Write the concatenated values of a string array straight from its data buffer."""
    for chunk in strings.chunks:
        if len(chunk) == 0:
            continue
        if chunk.null_count:
            raise ValueError("an exported event rendered as null")  # a bug: every field is filled
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
        handle.write(memoryview(chunk.buffers()[2])[offsets[0] : offsets[-1]])


def _scan(files: list[Path], image: int | None) -> tuple[set[int], int | None, list[int]]:
    """Traced images, the first timestamp and the ranks of the selection, one file at a time
    (so a damaged file is named)."""
    images: set[int] = set()
    first: int | None = None
    ranks: set[int] = set()
    for path in files:
        table = rundir.read_parquet(path, ["image_index", "ts_ns", "rank"])
        images.update(pc.unique(table["image_index"]).to_pylist())
        if image is not None:
            table = table.filter(pc.equal(table["image_index"], image))
        if table.num_rows:
            low = pc.min(table["ts_ns"]).as_py()
            first = low if first is None else min(first, low)
            ranks.update(pc.unique(table["rank"]).to_pylist())
    return images, first, sorted(ranks)


def _selection(run_dir: Path, image: int | None) -> tuple[list[Path], pc.Expression | None, int, list[int]]:
    """Files, filter, first timestamp (ns) and ranks of what is exported."""
    files = rundir.trace_files(run_dir)
    if not files:
        raise RunDirError(f"{run_dir}: the run has no trace to export (no files under {rundir.TRACE_DIR}/)")
    for path in files:
        check_trace_file(path)
    images, first, ranks = _scan(files, image)
    if image is not None and image not in images:
        known = ", ".join(map(str, sorted(images)))
        raise BadInputError(f"--image {image}: no trace for that image in {run_dir} (traced images: {known})")
    return files, None if image is None else pc.field("image_index") == image, first or 0, ranks


def _batches(files: list[Path], where: pc.Expression | None) -> Iterator[pa.Table]:
    """One table per trace file (an image's flush chunk), filtered, without the envelope."""
    for path in files:
        with rundir.reading(path):
            table = ds.dataset(str(path), schema=schema.TRACE, format=rundir.parquet_format()).to_table(filter=where)
        table = table.filter(pc.and_(pc.is_valid(table["pid"]), pc.not_equal(table["cat"], ENVELOPE_CAT)))
        if table.num_rows:
            yield table


def _metadata(pids: dict[int, bool], rank: int | None) -> str:
    """process_name events (GPU devices and host processes); the array's last elements."""
    events = [
        {"name": "process_name", "ph": "M", "pid": pid, "args": {"name": f"GPU {pid}" if gpu else f"host {pid}"}}
        for pid, gpu in sorted(pids.items())
    ]
    if not events:
        events = [{"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "dsocr"}}]
    suffix = "" if rank is None else f" rank {rank}"
    events.append({"name": "trace_name", "ph": "M", "pid": 0, "args": {"name": f"dsocr export{suffix}"}})
    return ",\n".join(json.dumps(event) for event in events)


def export_trace(run_dir: Path, *, image: int | None = None, output: Path | None = None) -> tuple[Path, int]:
    """Write the trace of one image (or the whole run) as Chrome trace JSON; return (path, events).

    The file carries ``distributedInfo.rank`` when the selection holds one rank, which
    Holistic Trace Analysis needs to load it.
    """
    rundir.read_run_json(run_dir)
    output = _output_path(run_dir, image, output)
    files, where, base_ns, ranks = _selection(run_dir, image)
    rank = ranks[0] if len(ranks) == 1 else None
    header = {"schemaVersion": 1, "baseTimeNanoseconds": base_ns, "displayTimeUnit": "ms"}
    if rank is not None:
        header["distributedInfo"] = {"rank": rank, "world_size": 1}
    head = json.dumps(header)[:-1] + ',"traceEvents":[\n'
    pids: dict[int, bool] = {}
    events = 0
    temp = rundir.temp_beside(output)
    try:
        with rundir.writing(output):
            with temp.open("wb") as handle:
                handle.write(head.encode())
                for table in _batches(files, where):
                    _write_strings(handle, _records(table, base_ns))
                    events += table.num_rows
                    gpu = pc.is_in(table["cat"], value_set=pa.array(GPU_OP_CATS))
                    for pid in pc.unique(table.filter(gpu)["pid"]).to_pylist():
                        pids[pid] = True
                    for pid in pc.unique(table.filter(pc.invert(gpu))["pid"]).to_pylist():
                        pids.setdefault(pid, False)
                handle.write((_metadata(pids, rank) + "\n]}\n").encode())
            os.replace(temp, output)
    finally:
        rundir.discard(temp)
    return output, events
