"""`dsocr capture` as a handful of named steps: prepare the run, load, profile each image, finish."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from dsocr.capture.attention import check_sdpa_backend, text_head_dim
from dsocr.capture.config import CacheKind, CaptureConfig, SdpaBackend
from dsocr.capture.distributed import Ranks, image_size_bytes, join, shard
from dsocr.capture.images import ImageReadError
from dsocr.capture.models import LoadedModel, load_model, resolve_family, resolve_prompt
from dsocr.capture.outdir import SAMPLES_DIR, capture_lock, check_run_dir
from dsocr.capture.pdf import discover_inputs
from dsocr.capture.profile_image import (
    ShapeHistory,
    check_backend_runs,
    failed_row,
    peak_gpu_mib,
    profile_image,
    warm_up,
)
from dsocr.capture.result import CaptureResult, OnImage, OnStart
from dsocr.capture.run_record import WarningCollector, check_resumable, finish_record, guard_us_per_step, start_record
from dsocr.capture.samples import sample_image_paths, write_sample_images
from dsocr.capture.signals import stop_once_on_signals
from dsocr.capture.static_cache import DecodePath, check_static_support, prepare_decode
from dsocr.capture.tracing import ImageTrace, TraceWriter, profiler_env, teardown_cupti_setting

from dsocr.errors import BadInputError, DsocrError
from dsocr.records import PredictionRow, RankRecord, RunRecord
from dsocr.rundir import (
    CAPTURE_LOG,
    PENDING_DIR,
    RUN_JSON,
    TRACE_DIR,
    finalize_predictions,
    make_folder,
    read_predictions,
    remove_stale_temporaries,
    resolved,
    write_prediction_part,
    write_run_json,
)
from dsocr.vocab import ImageStatus, ProfileMode, RunStatus

log = logging.getLogger(__package__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CaptureInterrupted(DsocrError):
    """The user stopped the capture; finished images are kept and --resume continues."""


@dataclass
class _Pending:
    """Rows whose trace conversions are still running; a row is written only once they finish."""

    items: list[tuple[PredictionRow, ImageTrace]] = field(default_factory=list)

    def write_finished(self, run_dir: Path, *, wait: bool) -> list[PredictionRow]:
        written, still = [], []
        for row, image_trace in self.items:
            if wait or image_trace.done():
                if image_trace.futures:
                    _add_trace_figures(row, image_trace)
                write_prediction_part(run_dir, row)
                written.append(row)
            else:
                still.append((row, image_trace))
        self.items = still
        return written


def _add_trace_figures(row: PredictionRow, image_trace: ImageTrace) -> None:
    """The trace columns of a row whose conversions finished; a failed conversion fails the row
    (the outputs are kept, the trace is not: analyze must not read half an image)."""
    try:
        row["trace_events"] = image_trace.event_count()
    except Exception as exc:  # the converter's error, re-raised by its future: any kind
        row["status"] = ImageStatus.failed
        row["error"] = f"trace conversion failed: {one_line(exc)}"
        log.error("image %d: %s", row["image_index"], row["error"])
        return
    row["trace_json_bytes"] = image_trace.json_bytes
    row["profiler_start_ms"] = image_trace.start_ms
    row["profiler_stop_ms"] = image_trace.stop_ms
    row["profiler_export_ms"] = image_trace.export_ms


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type, then the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@dataclass(frozen=True)
class _Callbacks:
    """The caller's progress hooks (the CLI's progress bar); called on the leader rank only."""

    on_start: OnStart | None = None
    on_image: OnImage | None = None


def _log_path(run_dir: Path, rank: int) -> Path:
    return run_dir / (CAPTURE_LOG if rank == 0 else f"capture-rank{rank}.log")


class _LogFileHandler(logging.FileHandler):
    """capture.log: a line that cannot be written (a full disk) is lost, not printed to the
    terminal as logging's own traceback; the error that stops the run says why, in one line."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextmanager
def _logging_to(run_dir: Path, warnings: list[str], rank: int) -> Iterator[None]:
    """The run's own log file and run.json's warnings; showing them on a terminal is the caller's."""
    file_handler = _LogFileHandler(_log_path(run_dir, rank), encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handlers = [file_handler, WarningCollector(warnings)]
    log.setLevel(logging.INFO)
    for handler in handlers:
        log.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            log.removeHandler(handler)
        file_handler.close()


def _user_images(config: CaptureConfig, previous: RunRecord | None) -> list[Path] | None:
    """The run's images when they come from the user or a resumed run; None means sample pages."""
    if previous is not None and previous.image_paths:
        return [Path(path) for path in previous.image_paths]
    return discover_inputs(config.images, config.page_selection) if config.images else None


def _done_indices(run_dir: Path) -> set[int]:
    table = read_predictions(run_dir)
    return {
        row["image_index"]
        for row in table.select(["image_index", "status"]).to_pylist()
        if row["status"] == ImageStatus.ok
    }


def _my_images(images: list[Path], done: set[int], ranks: Ranks) -> list[tuple[int, Path]]:
    remaining = {index: image_size_bytes(path) for index, path in enumerate(images) if index not in done}
    mine = shard(remaining, ranks.world_size)[ranks.rank]
    return [(index, images[index]) for index in mine]


def _profile_all(
    config: CaptureConfig,
    loaded: LoadedModel,
    run_dir: Path,
    images: list[Path],
    callbacks: _Callbacks,
    ranks: Ranks,
    done: set[int],
    decode: DecodePath,
) -> list[PredictionRow]:
    todo = _my_images(images, done, ranks)
    if done:
        log.info("resuming: %d of %d images already done", len(done), len(images))
    log.info("rank %d of %d: %d images", ranks.rank, ranks.world_size, len(todo))
    shapes = ShapeHistory()
    if config.sdpa_backend is not SdpaBackend.auto and todo:
        try:
            check_backend_runs(loaded, todo[0][1], config)
        except Exception as exc:  # the image's own failure; a backend without a kernel is refused
            if isinstance(exc, BadInputError):
                raise
            reason = exc if isinstance(exc, DsocrError) else one_line(exc)
            log.warning("--sdpa-backend check skipped: the first image failed (%s)", reason)
    if decode.cache_length is not None:
        shapes.mark_cold([decode.cache_length])  # the static warm-up ran the run's only shape
    elif config.warmup_tokens and todo:
        log.info("warm-up: %d tokens on %s", config.warmup_tokens, todo[0][1])
        try:
            warm_up(loaded, todo[0][1], config, shapes)
        except Exception as exc:  # the first image's own failure: its row will say it again
            log.warning("warm-up skipped: %s", exc if isinstance(exc, DsocrError) else one_line(exc))
    tracer = TraceWriter(config, run_dir, loaded.device, ranks.rank, log_path=_log_path(run_dir, ranks.rank))

    pending = _Pending()
    rows: list[PredictionRow] = []
    warned: set[str] = set()
    on_image = callbacks.on_image if ranks.is_leader else None
    if ranks.is_leader and callbacks.on_start is not None:
        callbacks.on_start(len(images), len(done))
    try:
        for image_index, image_path in todo:
            tracer.discard_image(image_index)
            try:
                row, image_trace, cap = profile_image(
                    config=config, loaded=loaded, tracer=tracer, image_index=image_index,
                    image_path=image_path, rank=ranks.rank, shapes=shapes, decode=decode,
                )  # fmt: skip
                if row.get("compiled_graphs"):
                    log.warning(
                        "image %d: torch.compile compiled %d graph(s) during the image (a recompilation: "
                        "its timings include compile time)", image_index, row["compiled_graphs"],
                    )  # fmt: skip
                if cap.warning and cap.warning not in warned:
                    warned.add(cap.warning)
                    log.warning(cap.warning)
            except Exception as exc:  # any failure of one image becomes that image's row
                row = failed_row(
                    config, image_index, image_path, _image_error(image_index, image_path, exc), ranks.rank
                )
                image_trace = ImageTrace(image_index)
                tracer.discard_image(image_index)
            pending.items.append((row, image_trace))
            rows.extend(pending.write_finished(run_dir, wait=False))
            if on_image is not None:
                on_image(row)
    finally:
        # Finished images are kept whatever stops the loop (Ctrl-C included): --resume skips them.
        try:
            rows.extend(pending.write_finished(run_dir, wait=True))
        finally:
            tracer.close()  # a write that fails (a full disk) must not leave the converter running
    pending_json = run_dir / TRACE_DIR / PENDING_DIR
    if pending_json.is_dir() and not any(pending_json.iterdir()):
        pending_json.rmdir()
    return rows


def _image_error(image_index: int, image_path: Path, exc: Exception) -> str:
    """The failed row's one-line reason; capture.log keeps the traceback of an unexpected error."""
    expected = isinstance(exc, ImageReadError | BadInputError)
    if expected:
        # Every row's reason starts with its image, as the file-level ones already do.
        message = str(exc) if str(exc).startswith(str(image_path)) else f"{image_path}: {exc}"
    elif isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        message = f"{image_path}: CUDA out of memory"
    else:
        message = f"{image_path}: {one_line(exc)}"
    log.error("image %d: %s", image_index, message)
    if not expected:
        log.info("image %d: traceback", image_index, exc_info=exc)
    return message


def run(
    config: CaptureConfig,
    *,
    loaded: LoadedModel | None = None,
    on_start: OnStart | None = None,
    on_image: OnImage | None = None,
) -> CaptureResult:
    """Capture every image of ``config`` into ``config.out``; return what was captured.

    ``loaded``: a model already loaded for this config (library use: load once, capture many).
    ``on_start(total, already_done)`` and ``on_image(row)``: progress hooks, called on the
    leader rank only. Nothing is printed: showing progress and the result is the caller's.
    Under torchrun, each rank captures its shard of the images (see capture.distributed).
    SIGINT or SIGTERM (main thread only) stop the run: finished images are kept, run.json says
    ``interrupted`` and CaptureInterrupted is raised.
    """
    with stop_once_on_signals():
        try:
            ranks = join(config.device.value)
            try:
                with ExitStack() as held:
                    lock = _RunLock(config.out, held)
                    return _run(config, _Callbacks(on_start, on_image), loaded, ranks, lock)
            finally:
                ranks.close()
        except KeyboardInterrupt:
            # Stopped before the image loop (loading the model, joining the ranks): nothing to keep.
            raise CaptureInterrupted(f"interrupted before the first image; {config.out} is unchanged") from None


@dataclass
class _RunLock:
    """The run's capture lock (leader only), taken once and released when the capture returns."""

    run_dir: Path
    stack: ExitStack
    taken: bool = False

    def take(self) -> None:
        if not self.taken:
            self.stack.enter_context(capture_lock(self.run_dir))
            self.taken = True


def _prepare_run_dir(run_dir: Path, resume: bool, lock: _RunLock) -> list[Path]:
    """Create the run directory under its capture lock, and clear what a killed capture left
    half-written in it. A new run's folder is checked again once locked: another capture may
    have started a run there since this one's first check."""
    make_folder(run_dir)  # one line where it cannot be made (--out /proc/x, read-only)
    if not lock.taken:
        lock.take()
        check_run_dir(run_dir, resume=resume)
    return remove_stale_temporaries(run_dir)


def _interrupted(record: RunRecord, run_dir: Path, warnings: list[str]) -> RunRecord:
    """run.json of a stopped run: every finished image counted (parts included)."""
    statuses = read_predictions(run_dir).column("status").to_pylist()
    ok = statuses.count(ImageStatus.ok)
    counts = replace(record.images, ok=ok, failed=len(statuses) - ok)
    return replace(record, status=RunStatus.interrupted, images=counts, warnings=tuple(warnings))


def _record_stop(record: RunRecord, run_dir: Path, warnings: list[str], ranks: Ranks, exc: OSError) -> None:
    """run.json of a run that a failed write stopped (a full disk): ``interrupted`` with every
    finished image counted, so that --resume continues it once there is room, not ``running``
    forever. Should run.json itself not fit, the previous one stays whole (atomic rename)."""
    log.error("stopped: %s", exc)
    if not ranks.is_leader:
        return
    if ranks.world_size == 1:
        # The half-written files of this run's own writers (a trace export cut short) take the
        # room run.json needs; no other process writes this run (one rank, its converter closed).
        remove_stale_temporaries(run_dir)
    gc.collect()  # a profiler left in a traceback's frames keeps its export file, and its room, open
    try:
        # The warnings hold the "stopped:" line already: the collector keeps ERROR records too.
        write_run_json(run_dir, _interrupted(record, run_dir, warnings))
    except DsocrError as second:
        log.error("run.json not updated: %s", second)


def _run(
    config: CaptureConfig, callbacks: _Callbacks, loaded: LoadedModel | None, ranks: Ranks, lock: _RunLock
) -> CaptureResult:
    run_dir = config.out
    if ranks.is_leader and (run_dir / RUN_JSON).is_file():
        lock.take()  # before anything of the run is read: a second capture must not read it half-done
    # Everything that can reject the command runs before the first byte is written.
    # The prompt first: no --prompt means the model family's default (the family is read from
    # the model's config.json, no weights), and run.json records the prompt that runs.
    config = replace(config, prompt=resolve_prompt(config, loaded.family if loaded else resolve_family(config)))
    previous = check_resumable(run_dir, config)
    images = _user_images(config, previous)
    loaded = loaded or load_model(config)
    check_sdpa_backend(
        config.sdpa_backend, device=loaded.device, dtype=loaded.dtype, head_dim=text_head_dim(loaded.model.config)
    )
    if config.cache is CacheKind.static:
        check_static_support(loaded)
    ranks.barrier()  # every rank has checked --out before rank 0 writes into it
    stale: list[Path] = []
    if ranks.is_leader:
        stale = _prepare_run_dir(run_dir, config.resume, lock)
        images = images or write_sample_images(run_dir / SAMPLES_DIR)
    ranks.barrier()
    # Absolute paths in run.json and the rows: emit and analyze may run from another directory.
    images = [resolved(path) for path in images or sample_image_paths(run_dir / SAMPLES_DIR)]
    record = start_record(config, loaded, images, previous, world_size=ranks.world_size)
    # Filled by the WarningCollector while the run goes on; every write of run.json takes it.
    warnings: list[str] = list(record.warnings)
    with _logging_to(run_dir, warnings, ranks.rank):
        log.info("model %s: %s", loaded.model_id, loaded.describe())
        for path in stale:
            log.info("removed %s, left half-written by an earlier capture that was stopped", path)
        if config.profile is not ProfileMode.off:
            # Set before the first profiler starts: Kineto reads it then.
            teardown_cupti_setting(loaded.device, config.profile)
            record = replace(record, profiler_env=profiler_env(loaded.device))
        done = _done_indices(run_dir)
        ranks.barrier()  # every rank has read what is done before anything new is written
        if ranks.is_leader:
            write_run_json(run_dir, replace(record, warnings=tuple(warnings)))
        # A static cache is sized, built and compiled here: outside every timing and profiler session.
        mine = [path for _, path in _my_images(images, done, ranks)]
        decode = prepare_decode(config, loaded, images, mine)
        if decode.record is not None:
            log.info("static cache: %s", decode.record)
            if decode.record.compile_note:
                log.warning(decode.record.compile_note)
            record = replace(record, static_cache=decode.record)
            if record.profiler_env is not None:
                # Compiling with CUDA graphs may change Kineto's settings (torch turns CUPTI
                # teardown off with CUDA graphs before CUDA 12.6): record what is in force now.
                record = replace(record, profiler_env=profiler_env(loaded.device))
        loop_start = time.perf_counter()
        try:
            rows = _profile_all(config, loaded, run_dir, images, callbacks, ranks, done, decode)
        except KeyboardInterrupt:
            log.info("interrupted: finished images are kept")
            if ranks.is_leader:
                write_run_json(run_dir, _interrupted(record, run_dir, warnings))
            raise CaptureInterrupted(
                f"interrupted; finished images are kept, continue with --resume --out {run_dir}"
            ) from None
        except OSError as exc:  # OutputError, or a library writer's own (a full disk)
            _record_stop(record, run_dir, warnings, ranks, exc)
            raise
        rank_seconds = time.perf_counter() - loop_start
        mine_record = RankRecord(
            rank=ranks.rank, images=len(rows), capture_seconds=rank_seconds, peak_gpu_mib=peak_gpu_mib(loaded.device)
        )
        per_rank = ranks.gather(mine_record)
        if ranks.is_leader:
            try:
                table = finalize_predictions(run_dir)
            except OSError as exc:
                _record_stop(record, run_dir, warnings, ranks, exc)
                raise
            statuses = table.column("status").to_pylist()
            ok = statuses.count(ImageStatus.ok)
            rows = table.to_pylist()
            finished = finish_record(
                replace(record, warnings=tuple(warnings)),
                ok=ok,
                failed=len(statuses) - ok,
                capture_seconds=time.perf_counter() - loop_start,
                ranks=per_rank,
                ngram_guard_us_per_step=guard_us_per_step(rows),
            )
            write_run_json(run_dir, finished)
    return CaptureResult(
        run_dir=run_dir,
        model_id=loaded.model_id,
        device=str(loaded.device),
        is_leader=ranks.is_leader,
        rows=tuple(rows),
        capture_seconds=rank_seconds,
        static_cache=decode.record,
    )
