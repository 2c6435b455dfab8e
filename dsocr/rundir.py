"""The run-directory contract: where each artifact lives, and atomic readers and writers.

Layout of ``runs/x`` (documented in docs/run-format.md)::

    run.json                 run metadata, status and resolved configuration
    capture.log              log of the capture
    predictions.parquet      one row per image (written when a run finishes)
    predictions.parts/       one Parquet file per finished image while a run is in progress
    trace/                   torch.profiler events, one Parquet file per image and flush chunk
    analysis/                written by ``dsocr analyze``
    viz/<md5>/               written by ``dsocr emit``
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dsocr import options, schema
from dsocr.errors import OutputError, RunDirError, SchemaMismatchError
from dsocr.json_stream import write_json
from dsocr.records import PredictionRow, RunRecord
from dsocr.tempnames import temp_path
from dsocr.vocab import AnalysisFile, RunStatus

if TYPE_CHECKING:
    import pyarrow.dataset

    from dsocr.prediction_store import PredictionStore

RUN_JSON = "run.json"
CAPTURE_LOG = "capture.log"
PREDICTIONS_FILE = "predictions.parquet"
PREDICTIONS_PARTS_DIR = "predictions.parts"
TRACE_DIR = "trace"
ANALYSIS_DIR = "analysis"
VIZ_DIR = options.VIZ_DIR
PREDICTIONS_JSONL = "predictions.jsonl"
#: PDF pages as capture rendered them, ``pages/<image_md5>.png``: emit draws on these pixels.
PAGES_DIR = "pages"

PARQUET_COMPRESSION = "zstd"
#: Every data page carries a CRC32 and readers verify it: a damaged page is an error naming the
#: file, never numbers decoded from garbage (zstd alone does not notice every damaged byte).
PAGE_CHECKSUMS = True
#: Published artifacts get the mode a plain open() gives: this, less the process umask.
FILE_MODE = 0o666


def resolved(path: str | os.PathLike[str]) -> Path:
    """``path`` absolute and resolved; a symlink loop is kept as it is, made absolute (Python 3.11
    raises RuntimeError on one): a loop is the image's failure to report, not the run's."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(path).absolute()


#: Read size when hashing an image's bytes.
HASH_BLOCK_BYTES = 1 << 20


def path_md5(image_path: str | os.PathLike[str]) -> str:
    """md5 hex digest of the absolute, resolved path string: the image's viz folder name."""
    return hashlib.md5(str(resolved(image_path)).encode("utf-8")).hexdigest()


def content_sha256(image_path: str | os.PathLike[str]) -> str | None:
    """sha256 hex digest of the file's bytes (the page itself, wherever it is stored); None when
    unreadable or not a regular file (a FIFO would block the open forever)."""
    digest = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.stat(image_path).st_mode):
            return None
        with open(image_path, "rb") as handle:
            for block in iter(lambda: handle.read(HASH_BLOCK_BYTES), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def inside_run(run_dir: Path, path: Path) -> Path:
    """``path``, refused (RunDirError) when it resolves outside ``run_dir``.

    A folder of the run that is a link elsewhere (``analysis -> /home/me``) would make dsocr
    write, replace or delete files outside the run: refused, never followed.
    """
    try:
        root, resolved = run_dir.resolve(), path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise RunDirError(f"{path}: cannot be resolved ({exc})") from None
    if not resolved.is_relative_to(root):
        raise RunDirError(
            f"{path}: leads outside the run directory (to {resolved}); dsocr writes only inside the run:"
            " remove the link"
        )
    return path


def analysis_dir(run_dir: Path) -> Path:
    """``run_dir/analysis``, refused when it (or a link in it) leads outside the run."""
    return inside_run(run_dir, run_dir / ANALYSIS_DIR)


def analysis_path(run_dir: Path, name: AnalysisFile) -> Path:
    """Where ``dsocr analyze`` writes one of its files (its folder checked by analysis_dir)."""
    return analysis_dir(run_dir) / name


#: Suffixes of the temp files temp_beside creates (``.<name>.<hex>.tmp``) and of the sample
#: pages' (``.<name>.tmp.png``): such a file still there when a run starts was left by a process
#: killed mid-write.
_TEMP_SUFFIXES = (".tmp", ".tmp.png")
#: Trace chunks exported as JSON and not yet converted when a capture was killed.
PENDING_DIR = ".pending"
#: ``capture --keep-kineto``: each chunk's chrome-trace JSON as torch exported it, kept after
#: conversion for tools that read Kineto's own format (HTA, Perfetto). dsocr never reads it.
KINETO_DIR = "kineto"
#: Folders of a run that only capture writes; stale temporaries are looked for there, in trace/,
#: and in the run's root for capture's own files only (analysis/, viz/ and emit's files in the
#: root belong to analyze and emit, which may be running).
_CAPTURE_FOLDERS = (PREDICTIONS_PARTS_DIR, "samples", PAGES_DIR)
_CAPTURE_ROOT_FILES = (RUN_JSON, PREDICTIONS_FILE)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete what a killed capture left half-written in ``run_dir``; return what was deleted.

    Call it only while no other process writes the run (capture's leader, before any rank
    starts writing). Links are never followed: only files inside the run are removed.
    """
    stale: list[Path] = []
    for folder in _CAPTURE_FOLDERS:
        directory = run_dir / folder
        if directory.is_dir() and not directory.is_symlink():
            stale += [path for path in directory.iterdir() if _is_temp_name(path.name) and path.is_file()]
    if run_dir.is_dir():
        stale += [
            path
            for path in run_dir.iterdir()
            if _is_temp_name(path.name) and path.name.startswith(tuple(f".{name}." for name in _CAPTURE_ROOT_FILES))
        ]
    trace_dir = run_dir / TRACE_DIR
    if trace_dir.is_dir() and not trace_dir.is_symlink():
        for root, _folders, names in os.walk(trace_dir):
            in_pending = Path(root).name == PENDING_DIR
            stale += [Path(root, name) for name in names if in_pending or _is_temp_name(name)]
    for path in stale:
        path.unlink(missing_ok=True)
    pending = trace_dir / PENDING_DIR
    if pending.is_dir() and not pending.is_symlink() and not any(pending.iterdir()):
        pending.rmdir()
    return stale


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(_TEMP_SUFFIXES)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def make_folder(folder: Path) -> None:
    """``mkdir -p``, with OutputError naming the folder and why (a file in the way, read-only)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(parent for parent in (folder, *folder.parents) if parent.exists() or parent.is_symlink())
        raise OutputError(
            f"{folder}: cannot create the folder: {blocker} is not a folder", reason=f"{blocker} is not a folder"
        ) from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the folder ({_reason(exc)})", reason=_reason(exc)) from None
    except ValueError as exc:  # an embedded NUL
        raise OutputError(f"{folder!r}: not a usable path ({exc})") from None


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing ``path`` (read-only, disk full, a folder in the way) into OutputError."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({_reason(exc)})", reason=_reason(exc)) from None


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a read or decode failure of Parquet file ``path`` (damaged pages, I/O error) into RunDirError."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise RunDirError(f"{path}: unreadable Parquet ({exc})") from None


def temp_beside(path: Path) -> Path:
    """A new, empty temp file beside ``path``.

    Created like a plain open() creates a file (FILE_MODE less the umask, which the kernel
    applies), not with mkstemp's 0600: reading the umask would mean setting it.
    """
    make_folder(path.parent)
    while True:
        temp = temp_path(path)
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({_reason(exc)})", reason=_reason(exc)) from None
        return temp


def discard(temp: Path) -> None:
    """Remove a temp file; one that cannot be removed is left (no reader reads ``.*.tmp`` files)."""
    with suppress(OSError):
        temp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it over ``path``."""
    temp = temp_beside(path)
    try:
        with writing(path):
            temp.write_bytes(data)
            os.replace(temp, path)
    finally:
        discard(temp)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write UTF-8 JSON (non-ASCII kept, newline-terminated) atomically, streamed to the temp
    file as it is encoded (a summary of 10,000 pages is 35 MB: never held whole as text; its
    lists per image are ``json_stream.RowStream``s, made while they are written)."""
    temp = temp_beside(path)
    try:
        with writing(path):
            with temp.open("w", encoding="utf-8") as file:
                write_json(payload, file)
            os.replace(temp, path)
    finally:
        discard(temp)


def write_parquet(table: pa.Table, where: str | Path | pa.NativeFile, *, row_group_rows: int | None = None) -> None:
    """Write ``table`` as dsocr writes every Parquet file: zstd-compressed, page checksums on
    (``row_group_rows``: rows per row group; default pyarrow's)."""
    pq.write_table(
        table,
        where,
        compression=PARQUET_COMPRESSION,
        write_page_checksum=PAGE_CHECKSUMS,
        row_group_size=row_group_rows,
    )


def write_table_atomic(table: pa.Table, path: Path, *, row_group_rows: int | None = None) -> None:
    """Write a Parquet file atomically (temp file, then rename), zstd-compressed."""
    temp = temp_beside(path)
    try:
        with writing(path):
            write_parquet(table, temp, row_group_rows=row_group_rows)
            os.replace(temp, path)
    finally:
        discard(temp)


def write_tables_atomic(tables: Iterable[pa.Table], table_schema: pa.Schema, path: Path) -> None:
    """Write ``tables`` (each cast to ``table_schema``) as one Parquet file, one at a time and
    atomically (temp file, then rename): what is written is never held whole."""
    temp = temp_beside(path)
    try:
        with writing(path):
            with pq.ParquetWriter(
                temp, table_schema, compression=PARQUET_COMPRESSION, write_page_checksum=PAGE_CHECKSUMS
            ) as writer:
                for table in tables:
                    if table.num_rows:
                        writer.write_table(table.cast(table_schema))
            os.replace(temp, path)
    finally:
        discard(temp)


def read_json(path: Path) -> Any:
    """The parsed JSON file; RunDirError naming ``path`` when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc})") from exc
    except RecursionError:  # [[[[... nested deeper than Python's parser recurses
        raise RunDirError(f"{path}: unreadable (JSON nested too deeply)") from None


def read_run_json(run_dir: Path) -> RunRecord:
    """Read, version-check and validate ``run.json``."""
    path = run_dir / RUN_JSON
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a dsocr run directory (no {RUN_JSON})")
    return RunRecord.from_json(read_json(path), source=str(path))


def write_run_json(run_dir: Path, record: RunRecord) -> None:
    """Write ``run.json`` atomically."""
    write_json_atomic(run_dir / RUN_JSON, record.to_json())


def rows_to_table(rows: Iterable[Mapping[str, Any]], table_schema: pa.Schema) -> pa.Table:
    """Build a table of ``table_schema`` from row dicts; absent keys become nulls.

    A key that is not a column is refused (SchemaMismatchError naming it): a typo would
    otherwise become a null column without a word.
    """
    rows = list(rows)
    names = set(table_schema.names)
    unknown = sorted({key for row in rows for key in row if key not in names})
    if unknown:
        table = (table_schema.metadata or {}).get(schema.TABLE_KEY, b"?").decode()
        raise SchemaMismatchError(f"{table} rows have keys that are not columns: {', '.join(unknown)}")
    columns = {name: [row.get(name) for row in rows] for name in table_schema.names}
    return pa.Table.from_pydict(columns, schema=table_schema)


def read_parquet(path: Path, columns: list[str] | None = None, *, use_threads: bool = False) -> pa.Table:
    """``columns`` (default: all) of one Parquet file, page checksums verified; RunDirError naming
    the file when a page cannot be read or decoded. ``use_threads``: decode columns on pyarrow's
    threads (worth it only when the caller is not already reading other files side by side)."""
    # ParquetFile, not read_table: no dataset layer (15% of analyze's read CPU). Decoded on this
    # thread by default: with several files read at once, pyarrow's reader threads only add
    # hand-off cost (on a 2-core box they tripled analyze's read CPU time).
    with reading(path), pq.ParquetFile(path, page_checksum_verification=PAGE_CHECKSUMS) as parquet:
        return parquet.read(columns=columns, use_threads=use_threads)


def parquet_format() -> pyarrow.dataset.ParquetFileFormat:
    """The format for pyarrow.dataset scans: page checksums verified like read_parquet."""
    import pyarrow.dataset as ds  # here: the dataset layer costs every command's start-up ~7 ms

    options = ds.ParquetFragmentScanOptions(page_checksum_verification=PAGE_CHECKSUMS)
    return ds.ParquetFileFormat(default_fragment_scan_options=options)


def check_schema(path: Path, expected: str) -> None:
    """Check that Parquet file ``path`` holds dsocr table ``expected`` of a version this reader knows."""
    try:
        file_schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RunDirError(f"{path}: unreadable Parquet ({exc})") from exc
    schema.check_table(file_schema, expected, source=str(path))


def conform(table: pa.Table, fields: Iterable[pa.Field], metadata: Mapping[bytes, bytes] | None) -> pa.Table:
    """``table`` as exactly ``fields`` (with ``metadata``): a column an older file lacks is nulls."""
    fields = list(fields)
    columns = [
        table.column(item.name) if item.name in table.column_names else pa.nulls(table.num_rows, item.type)
        for item in fields
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata))


def read_checked(path: Path, expected: str) -> pa.Table:
    """Read one dsocr Parquet file and check its table name and schema version."""
    check_schema(path, expected)
    expected_schema = schema.SCHEMAS[expected]
    return conform(read_parquet(path), expected_schema, expected_schema.metadata)


def write_prediction_part(run_dir: Path, row: PredictionRow) -> Path:
    """Record one finished image as its own part file, so a crash loses no finished image."""
    rank = row.get("rank") or 0
    path = run_dir / PREDICTIONS_PARTS_DIR / f"rank{rank:03d}-image{row['image_index']:07d}.parquet"
    write_table_atomic(rows_to_table([row], schema.PREDICTIONS), path)
    return path


def prediction_files(run_dir: Path, run: RunRecord | None = None) -> list[Path]:
    """The run's predictions files (the finished file, then the in-progress parts by name), each
    checked to be a predictions table of a version this reader knows.

    With ``run`` (its run.json), a run that says it finished with images but has no row at all (its
    predictions.parquet deleted) is refused: RunDirError, not figures computed from nothing.
    """
    files = []
    main_file = run_dir / PREDICTIONS_FILE
    if main_file.exists():
        files.extend(_regular_files([main_file]))
    parts_dir = run_dir / PREDICTIONS_PARTS_DIR
    if parts_dir.is_dir():
        files.extend(_regular_files(parts_dir.glob("*.parquet")))
    for path in files:
        check_schema(path, "predictions")
    if not files and run is not None and run.status == RunStatus.complete and run.images.ok + run.images.failed:
        raise RunDirError(
            f"{main_file}: missing, though {RUN_JSON} says the run finished "
            f"{run.images.ok + run.images.failed} images: restore it, or capture the run again"
        )
    return files


def open_predictions(run_dir: Path, run: RunRecord | None = None) -> PredictionStore:
    """The run's prediction rows, to read by column (every image) or by image (whole rows)."""
    from dsocr.prediction_store import open_predictions as open_store  # it reads through this module

    return open_store(prediction_files(run_dir, run))


def read_predictions(run_dir: Path, run: RunRecord | None = None, columns: Sequence[str] | None = None) -> pa.Table:
    """All prediction rows of a run, finished file and in-progress parts together, sorted by image:
    ``columns`` of them (default: all; only those are read).

    A part written after the finished file (a resumed run) replaces that image's row. ``run``:
    see ``prediction_files``.
    """
    return open_predictions(run_dir, run).read(columns)


def write_predictions(table: pa.Table, run_dir: Path) -> None:
    """Write ``run_dir/predictions.parquet`` atomically, in row groups of
    ``prediction_store.ROW_GROUP_ROWS`` rows: readers decode a few images' per-step lists at a
    time, never the run's."""
    from dsocr.prediction_store import ROW_GROUP_ROWS

    write_table_atomic(table, run_dir / PREDICTIONS_FILE, row_group_rows=ROW_GROUP_ROWS)


def finalize_predictions(run_dir: Path) -> pa.Table:
    """Merge the parts into ``predictions.parquet`` atomically, then remove the parts."""
    table = read_predictions(run_dir)
    write_predictions(table, run_dir)
    parts_dir = run_dir / PREDICTIONS_PARTS_DIR
    if parts_dir.is_dir():
        for part in parts_dir.glob("*.parquet"):
            part.unlink()
        for temp in parts_dir.glob(".*.tmp"):  # left by a writer killed mid-write: never a row
            temp.unlink()
        with contextlib.suppress(OSError):  # a file someone else put there stays, and so does the folder
            parts_dir.rmdir()
    return table


def _regular_files(paths: Iterable[Path]) -> list[Path]:
    """``paths`` sorted, each checked to be a regular file (links followed): a FIFO named
    ``x.parquet`` would block its reader forever, a folder would fail it."""
    paths = sorted(paths)
    for path in paths:
        if not path.is_file():
            raise RunDirError(f"{path}: not a regular file (a folder, FIFO or device): remove it from the run")
    return paths


def trace_files(run_dir: Path) -> list[Path]:
    """The trace Parquet files of a run (empty when the run has no trace)."""
    trace_dir = run_dir / TRACE_DIR
    return _regular_files(trace_dir.rglob("*.parquet")) if trace_dir.is_dir() else []
