"""``dsocr emit``: every prediction row of a run to its viz folder and predictions.jsonl.

Reads the run's Parquet alone: no model, no GPU, no torch. Rows are planned in the parent
process (cheap: text only); images are decoded, drawn and encoded in worker processes, a few
at a time, so memory stays flat however large the run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from dsocr.emit.artifacts import INFO_FILE, SUBFOLDERS, clear_temps
from dsocr.emit.family import parse_output, run_family
from dsocr.emit.guard import check_viz_root, check_writable, clear_run_temps, emit_lock
from dsocr.emit.info import (
    EMIT_CAPTURE_FAILED,
    EMIT_FAILED,
    EMIT_NOT_SELECTED,
    EMIT_RENDERED,
    EMIT_UP_TO_DATE,
    prediction_record,
)
from dsocr.emit.options import EmitOptions
from dsocr.emit.plan import inputs_mtime_ns, is_md5, is_up_to_date, select_md5s
from dsocr.emit.sources import check_roots_used, recorded_source, source_now, stored_page
from dsocr.emit.summary import EmitSummary
from dsocr.emit.timings import AnalysisTimings, StageTimings, load_analysis_timings, stage_timings
from dsocr.emit.worker import RenderJob, RenderOutcome, init_worker, render_image, render_images

from dsocr.errors import RunDirError
from dsocr.families import FamilyFacts
from dsocr.records import RunRecord
from dsocr.rundir import PREDICTIONS_JSONL, RUN_JSON, read_predictions, read_run_json, write_bytes_atomic
from dsocr.vocab import ImageStatus, RunKind

#: The prediction columns emit reads (decode_step_ms, the largest, is not among them).
COLUMNS = [
    "image_index",
    "image_path",
    "image_md5",
    "status",
    "error",
    "width",
    "height",
    "text_raw",
    "prompt_tokens",
    "image_tokens",
    "generated_tokens",
    "stop_reason",
    "vision_ms",
    "prefill_ms",
    "decode_ms",
    "source_path",
    "page",
    "page_count",
    "render_ms",
    "loop_start_step",
    "loop_period_tokens",
    "loop_ms",
]
UNKNOWN_MODEL = "unknown"
BATCH_ROWS = 256  # rows converted to Python at a time
IMAGES_PER_TASK = 2  # small tasks keep workers evenly busy; each image costs far more than IPC
TASKS_IN_FLIGHT_PER_WORKER = 2
# Workers start clean ("spawn"): nothing of the parent (threads, open files) leaks into them.
POOL_START_METHOD = "spawn"


@dataclass(frozen=True)
class _RunContext:
    """What planning a row needs to know about the run and the options."""

    viz_root: Path
    model_id: str
    family: FamilyFacts
    family_warning: str | None  # set when run.json names no family and the default was taken
    imported: bool
    analysis: AnalysisTimings
    inputs_ns: int
    selected: set[str] | None
    options: EmitOptions
    viz_link: str
    run_dir: Path


def _viz_root_link(run_dir: Path, viz_root: Path) -> str:
    """The viz root as predictions.jsonl names folders: relative to the run when inside it."""
    run, root = run_dir.resolve(), viz_root.resolve()
    return os.path.relpath(root, run) if root.is_relative_to(run) else str(viz_root.absolute())


def _plan_row(context: _RunContext, row: dict[str, Any]) -> tuple[dict[str, Any], RenderJob | None]:
    """The predictions.jsonl record of a row, and its render job when it is to be rendered.

    Rows not rendered are parsed here (text only); a rendered row's worker parses it and
    fills in its record's text_clean and boxes.
    """
    timings = stage_timings(row, context.analysis, imported=context.imported)
    out_dir = context.viz_root / row["image_md5"]
    link = f"{context.viz_link}/{row['image_md5']}"
    job = None
    viz: str | None = None
    error = None
    if row["status"] != ImageStatus.ok:
        status = EMIT_CAPTURE_FAILED
    elif not is_md5(row["image_md5"]):
        # The folder name comes from the Parquet: anything but a digest could point elsewhere.
        status, error = EMIT_FAILED, f"image_md5 {row['image_md5']!r} is not an md5 digest: not rendered"
    elif context.selected is not None and row["image_md5"] not in context.selected:
        status = EMIT_NOT_SELECTED
        viz = link if (out_dir / INFO_FILE).is_file() else None
    else:
        _check_folder(out_dir)
        status, viz = EMIT_RENDERED, link
        if not context.options.force and is_up_to_date(out_dir, context.inputs_ns, context.options.style):
            status = EMIT_UP_TO_DATE
        else:
            job = _job(context, row, timings, out_dir)
    has_text = row["status"] == ImageStatus.ok or row.get("text_raw") is not None
    grounding = parse_output(row.get("text_raw") or "", context.family) if has_text and job is None else None
    record = prediction_record(
        row=row, grounding=grounding, timings=timings, viz=viz, emit_status=status, emit_error=error
    )
    return record, job


def _job(context: _RunContext, row: dict[str, Any], timings: StageTimings, out_dir: Path) -> RenderJob:
    """The render job of a row: where its source is now (relative paths, --image-root; a PDF
    page: the page capture rendered and kept in the run) and where to write."""
    if row.get("page") is not None:
        source = stored_page(context.run_dir, row["image_md5"])
    else:
        recorded = recorded_source(row["image_path"], row["image_md5"], context.run_dir)
        source = source_now(recorded, context.options.image_roots)
    return RenderJob(row, timings, context.model_id, out_dir, context.options.style, context.family, source)


def _check_folder(out_dir: Path) -> None:
    """Check that neither ``out_dir`` nor its images/ folder is a symbolic link, and clear the
    temp files a killed emit may have left in it (the run's lock is held).

    Writing or clearing through a link would change files outside the run, so the whole emit
    is refused (RunDirError) before anything is written.
    """
    for path in (out_dir, *(out_dir / name for name in SUBFOLDERS)):
        if path.is_symlink():
            raise RunDirError(
                f"{path} is a symbolic link: emit never writes or deletes through a link out of the run directory"
            )
    try:
        clear_temps(out_dir)
    except OSError as exc:
        raise RunDirError(f"{out_dir}: cannot clear its temp files ({exc.strerror or exc})") from None


def _chunks(jobs: list[RenderJob], size: int) -> Iterator[list[RenderJob]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _submit(pool: ProcessPoolExecutor, chunk: list[RenderJob]) -> Future[list[RenderOutcome]]:
    """Submit one task; a worker the pool starts for it starts with Ctrl-C blocked.

    A terminal's Ctrl-C reaches the whole process group: a worker still importing when it
    arrives would print a KeyboardInterrupt traceback before its initializer could ignore it.
    A blocked signal stays blocked across the exec that starts a "spawn" worker (its initializer
    then ignores it, which drops one pending). Blocked, not ignored, here: a Ctrl-C that arrives
    during the submit waits, and stops emit once it returns, where an ignored one was lost.
    """
    if threading.current_thread() is not threading.main_thread():
        return pool.submit(render_images, chunk)  # signals are the main thread's to set
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return pool.submit(render_images, chunk)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run_jobs(jobs: list[RenderJob], workers: int) -> Iterator[RenderOutcome]:
    """Outcomes of ``jobs`` (in completion order), in this process or in a pool of ``workers``."""
    if workers <= 1:
        yield from map(render_image, jobs)
        return
    context = multiprocessing.get_context(POOL_START_METHOD)
    limit = workers * TASKS_IN_FLIGHT_PER_WORKER
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=init_worker, initargs=(os.getpid(),)
    )
    try:
        pending: set[Future[list[RenderOutcome]]] = set()
        for chunk in _chunks(jobs, IMAGES_PER_TASK):
            if len(pending) >= limit:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
            pending.add(_submit(pool, chunk))
        for future in pending:
            yield from future.result()
    finally:
        # On Ctrl-C or an error, queued images are dropped; running ones finish their folder.
        pool.shutdown(wait=True, cancel_futures=True)


def _context(run_dir: Path, run: RunRecord, options: EmitOptions, md5_paths: list[tuple[str, str]]) -> _RunContext:
    viz_root = run_dir / options.viz_dir
    family, family_warning = run_family(run, where=str(run_dir / RUN_JSON))
    if options.image_roots:
        check_roots_used(options.image_roots, (recorded_source(path, md5, run_dir) for md5, path in md5_paths))
    return _RunContext(
        viz_root=viz_root,
        model_id=run.model.id or UNKNOWN_MODEL,
        family=family,
        family_warning=family_warning,
        imported=run.kind is RunKind.import_,
        analysis=load_analysis_timings(run_dir),
        inputs_ns=inputs_mtime_ns(run_dir),
        selected=select_md5s(options.only, md5_paths),
        options=options,
        viz_link=_viz_root_link(run_dir, viz_root),
        run_dir=run_dir,
    )


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    write_bytes_atomic(path, text.encode("utf-8"))


def _plan_rows(context: _RunContext, table: pa.Table) -> tuple[dict[int, dict[str, Any]], list[RenderJob]]:
    """Every row's predictions.jsonl record (by image_index) and the jobs of the rows to render."""
    records: dict[int, dict[str, Any]] = {}
    jobs: list[RenderJob] = []
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        for row in batch.to_pylist():
            records[row["image_index"]], job = _plan_row(context, row)
            if job is not None:
                jobs.append(job)
    return records, jobs


def _record_outcome(record: dict[str, Any], outcome: RenderOutcome) -> None:
    record.update(text_clean=outcome.text_clean, boxes=outcome.boxes)
    if outcome.error is None:
        return
    if outcome.kept:
        error = f"{outcome.error}; its previous render is kept"
        record.update(emit_status=EMIT_FAILED, emit_error=error)
    else:
        record.update(viz=None, emit_status=EMIT_FAILED, emit_error=outcome.error)


def render_run(run_dir: Path, options: EmitOptions) -> EmitSummary:
    """Render every prediction of ``run_dir`` into ``viz/<md5>/`` and write predictions.jsonl.

    Failures of single images are in the summary (and predictions.jsonl), never raised;
    a missing or unreadable run directory, a second emit of the same run, a link out of the run
    or a viz root that cannot be written raise a DsocrError before anything is written.
    """
    started = time.perf_counter()
    run = read_run_json(run_dir)
    table = read_predictions(run_dir, columns=COLUMNS)
    if table.num_rows == 0:
        raise RunDirError(f"{run_dir}: no predictions to emit")
    md5_paths = list(zip(table.column("image_md5").to_pylist(), table.column("image_path").to_pylist(), strict=True))
    context = _context(run_dir, run, options, md5_paths)
    with emit_lock(run_dir):
        check_viz_root(run_dir, options.viz_dir)
        check_writable(context.viz_root)
        clear_run_temps(run_dir)
        records, jobs = _plan_rows(context, table)
        for outcome in _run_jobs(jobs, min(options.worker_count, len(jobs))):
            _record_outcome(records[outcome.image_index], outcome)
        summary = EmitSummary(run_dir, context.viz_root, run_dir / PREDICTIONS_JSONL, total=table.num_rows)
        summary.warnings.extend(filter(None, [context.family_warning]))
        for record in records.values():
            summary.count(record)
            if record["viz"] is not None:
                summary.folders.append((record["image_path"], context.viz_root / record["image_md5"]))
        try:
            _write_jsonl(summary.jsonl, list(records.values()))
        except OSError as exc:
            raise RunDirError(f"{summary.jsonl}: cannot write it ({exc.strerror or exc})") from None
    summary.seconds = time.perf_counter() - started
    return summary
