"""torch.profiler sessions around the traced windows of each image, flushed to Parquet by a worker.

One profiler *session* per traced window (sampled mode) or per chunk (full mode), started right
before the window's first step and stopped right after its last. Between sessions no profiler
exists, and with ``TEARDOWN_CUPTI=1`` (sampled mode) Kineto finalizes CUPTI at each stop, so untraced steps run
with no CUPTI callback and no RecordFunction observer: measured on an H200, one long-lived
session with a cyclic schedule kept CUPTI subscribed between windows and slowed every untraced
step (docs/performance.md has the figures).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import torch
from dsocr.capture.config import CaptureConfig, ProfilerSessions
from dsocr.capture.schedule import StepPlan, full_plan, sampled_plan, schedule_from_plan
from dsocr.capture.signals import helper_process_init, sigint_blocked
from dsocr.capture.trace_convert import convert_chunk, warm_up
from torch.profiler import ProfilerActivity, profile

from dsocr.rundir import FILE_MODE, KINETO_DIR, PENDING_DIR, TRACE_DIR
from dsocr.vocab import NS_PER_MS, ProfileMode, RangeStage, range_name

CONVERTER_PROCESSES = 1
#: Kineto reads it when a profiler starts: "1" finalizes CUPTI at every stop (no callbacks left
#: on between sessions). A value the user set is kept (and recorded in run.json).
TEARDOWN_CUPTI_ENV = "TEARDOWN_CUPTI"
#: Sampled mode: untraced steps between windows run with no CUPTI subscriber (docs/performance.md).
TEARDOWN_CUPTI_SAMPLED = "1"
#: Full mode: its sessions follow each other with no untraced step between, so teardown buys
#: nothing, and it lost the GPU activities of every session after an image's first (H100,
#: 2026-12-07: 3 of 6 sessions without a kernel with teardown, 0 of 6 without; docs/performance.md).
TEARDOWN_CUPTI_FULL = "0"
#: Set by torch itself (to "1", with TEARDOWN_CUPTI "0") when CUDA graphs are compiled on CUDA < 12.6.
DISABLE_CUPTI_LAZY_REINIT_ENV = "DISABLE_CUPTI_LAZY_REINIT"
# Per-image sessions use a cyclic schedule whose cycles are flushed on purpose.
_CYCLE_WARNING = ".*Profiler clears events at the end of each cycle.*"


def trace_part_path(run_dir: Path, rank: int, image_index: int, chunk: int) -> Path:
    """Where one image's flush chunk lives: ``trace/rank=R/imageNNNNNNN-chunkCCCC.parquet``."""
    return run_dir / TRACE_DIR / f"rank={rank}" / f"image{image_index:07d}-chunk{chunk:04d}.parquet"


def _json_name(rank: int, image_index: int, chunk: int) -> str:
    return f"rank{rank}-image{image_index:07d}-chunk{chunk:04d}.json"


def _pending_path(run_dir: Path, rank: int, image_index: int, chunk: int) -> Path:
    return run_dir / TRACE_DIR / PENDING_DIR / _json_name(rank, image_index, chunk)


def kineto_json_path(run_dir: Path, rank: int, image_index: int, chunk: int) -> Path:
    """Where ``--keep-kineto`` keeps a chunk's JSON: ``trace/kineto/rankR-imageNNNNNNN-chunkCCCC.json``."""
    return run_dir / TRACE_DIR / KINETO_DIR / _json_name(rank, image_index, chunk)


#: The value this process's last capture set, so that a later capture in the same process (tests,
#: sweeps run in-process) sets its own mode's value while a user's or torch's value is kept.
_teardown_set_by_dsocr: str | None = None


def teardown_cupti_setting(device: torch.device, profile: ProfileMode) -> str | None:
    """Set Kineto's CUPTI teardown for ``profile`` unless someone else set it (CUDA only); return it."""
    global _teardown_set_by_dsocr
    if device.type != "cuda":
        return None
    current = os.environ.get(TEARDOWN_CUPTI_ENV)
    if current is None or current == _teardown_set_by_dsocr:
        wanted = TEARDOWN_CUPTI_FULL if profile is ProfileMode.full else TEARDOWN_CUPTI_SAMPLED
        os.environ[TEARDOWN_CUPTI_ENV] = wanted
        _teardown_set_by_dsocr = wanted
    return os.environ[TEARDOWN_CUPTI_ENV]


def profiler_env(device: torch.device) -> dict[str, str | None]:
    """The Kineto settings in force now, for run.json (null on CPU, where there is no CUPTI)."""
    if device.type != "cuda":
        return {TEARDOWN_CUPTI_ENV: None}
    return {name: os.environ.get(name) for name in (TEARDOWN_CUPTI_ENV, DISABLE_CUPTI_LAZY_REINIT_ENV)}


@dataclass
class ImageTrace:
    """The conversions in flight for one image; its event count once they are done."""

    image_index: int
    futures: list[Future[int]] = field(default_factory=list)
    #: Size of the chrome-trace JSON the profiler exported (deleted once converted).
    json_bytes: int = 0
    #: Host milliseconds spent starting sessions, stopping them (Kineto collects the session's
    #: events then) and exporting them: where the profiler's cost goes, all outside step timings.
    start_ms: float = 0.0
    stop_ms: float = 0.0
    export_ms: float = 0.0

    def done(self) -> bool:
        return all(future.done() for future in self.futures)

    def event_count(self) -> int:
        """Events written for this image (waits for its conversions; raises if one failed)."""
        return sum(future.result() for future in self.futures)


class _Fd2Into:
    """Points file descriptor 2 at a log file while the profiler starts and stops.

    Kineto prints ``USDT: ... profiler_start`` / ``profiler_stop`` from C++ straight to fd 2 at
    every start and stop, and no setting silences them (KINETO_LOG_LEVEL does not): on a terminal
    they break the progress bar. They go to the run's log instead. ``log_path`` None: no change.
    """

    def __init__(self, log_path: Path | None) -> None:
        self._target: int | None = None
        self._saved: int | None = None
        if log_path is not None:
            self._target = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            self._saved = os.dup(2)

    @contextlib.contextmanager
    def redirected(self) -> Iterator[None]:
        if self._target is None or self._saved is None:
            yield
            return
        sys.stderr.flush()
        os.dup2(self._target, 2)
        try:
            yield
        finally:
            os.dup2(self._saved, 2)

    def close(self) -> None:
        for fd in (self._target, self._saved):
            if fd is not None:
                os.close(fd)
        self._target = self._saved = None


def _release(profiler: profile) -> None:
    """Drop the session's results now: a profile object sits in a reference cycle (its action map
    holds its bound methods), so without this its events lived until a full gc collection."""
    profiler.profiler = None


def _elapsed_ms(since_ns: int) -> float:
    return (time.perf_counter_ns() - since_ns) / NS_PER_MS


class _WindowSessions:
    """Drives one profiler session per traced window from the per-token step callback."""

    def __init__(
        self,
        plan: StepPlan,
        start: Callable[[], profile],
        flush: Callable[[profile], None],
        costs: ImageTrace | None = None,
        stop_session: Callable[[profile], None] | None = None,
    ) -> None:
        self._plan = plan
        self._start = start
        self._flush = flush
        self._stop_session = stop_session or (lambda session: session.stop())
        self._costs = costs if costs is not None else ImageTrace(-1)
        self._active: profile | None = None
        self._step = 0  # the step now running: 0 is vision + prefill, K is decode step K

    def begin(self) -> None:
        if self._plan.records(0):
            self._start_session()

    def step(self) -> None:
        """A token was appended: step ``self._step`` ended and the next one starts."""
        ended, following = self._step, self._step + 1
        if self._active is not None and (not self._plan.records(following) or self._plan.flush_after(ended)):
            self._stop()
        if self._active is None and self._plan.records(following):
            self._start_session()
        self._step = following

    def _start_session(self) -> None:
        started = time.perf_counter_ns()
        self._active = self._start()
        self._costs.start_ms += _elapsed_ms(started)

    def end(self) -> None:
        if self._active is not None:
            self._stop()

    def abandon(self) -> None:
        """Stop the open session without exporting it: the image failed or was interrupted."""
        if self._active is not None:
            active, self._active = self._active, None
            self._stop_session(active)
            _release(active)

    def _stop(self) -> None:
        assert self._active is not None
        active, self._active = self._active, None
        # The session's last CPU event: a range still open at the stop ends after it (Kineto
        # writes the stop as its end), a range that closed before it does not (analyze tells the
        # two apart by this).
        with torch.profiler.record_function(range_name(RangeStage.session_end)):
            pass
        stopping = time.perf_counter_ns()
        self._stop_session(active)
        exporting = time.perf_counter_ns()
        self._flush(active)
        self._costs.stop_ms += (exporting - stopping) / NS_PER_MS
        self._costs.export_ms += _elapsed_ms(exporting)
        _release(active)


class TraceWriter:
    """Owns the converter process; hands each image profiler sessions whose events become Parquet."""

    def __init__(
        self, config: CaptureConfig, run_dir: Path, device: torch.device, rank: int, *, log_path: Path | None = None
    ) -> None:
        """``log_path``: where Kineto's own stderr lines go (see _Fd2Into); None leaves fd 2 alone."""
        self._mode = config.profile
        self._sessions = config.profiler_sessions
        self._plan = self._make_plan(config)
        self._trace_images = config.trace_images
        self._run_dir = run_dir
        self._rank = rank
        # Records the input shapes the converter turns into FLOPs of matrix products (op_flops.py),
        # for analyze's roofline cross-check. Full mode only: sampled mode exists to keep the
        # profiler's cost low (docs/performance.md).
        self._with_flops = config.with_flops
        self._keep_kineto = config.keep_kineto
        self._activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            self._activities.append(ProfilerActivity.CUDA)
        self._pool: ProcessPoolExecutor | None = None
        self._fd2 = _Fd2Into(log_path if self._mode is not ProfileMode.off else None)
        if self._mode is not ProfileMode.off:
            self._pool = _start_converter()

    @staticmethod
    def _make_plan(config: CaptureConfig) -> StepPlan | None:
        if config.profile is ProfileMode.sampled:
            return sampled_plan(config.sampling)
        if config.profile is ProfileMode.full:
            return full_plan(config.full_chunk_steps)
        return None

    def traces_image(self, image_index: int) -> bool:
        """Whether ``image_index`` (run-wide) is traced: every ``--trace-images``-th, the first always."""
        return self._plan is not None and image_index % self._trace_images == 0

    def traces_step(self, step: int, image_index: int) -> bool:
        """Whether profiler events are recorded for ``step`` (0: vision + prefill; K: decode step K)
        of image ``image_index``."""
        return self.traces_image(image_index) and self._plan is not None and self._plan.records(step)

    def decode_fits_one_cycle(self, max_new_tokens: int, image_index: int) -> bool:
        """Whether a whole decode of up to ``max_new_tokens`` tokens lies in the image's first session
        (always, for an image that is not traced).

        The decode range closes during step N-1 (N tokens); the first session ends after step
        ``first_steps`` (sampled) or ``full_chunk_steps`` (full).
        """
        if self._plan is None or not self.traces_image(image_index):
            return True
        return max_new_tokens - 1 <= self._plan.first_session_steps

    def _start_profiler(self, session: profile) -> None:
        with self._fd2.redirected():
            session.start()

    def _stop_profiler(self, session: profile) -> None:
        with self._fd2.redirected():
            session.stop()

    def _flusher(self, image_index: int, image_trace: ImageTrace) -> Callable[[profile], None]:
        chunk_counter = iter(range(1_000_000_000))

        def flush(profiler: profile) -> None:
            chunk = next(chunk_counter)
            json_path = _pending_path(self._run_dir, self._rank, image_index, chunk)
            json_path.parent.mkdir(parents=True, exist_ok=True)
            profiler.export_chrome_trace(str(json_path))
            image_trace.json_bytes += json_path.stat().st_size
            parquet_path = trace_part_path(self._run_dir, self._rank, image_index, chunk)
            parquet_path.parent.mkdir(parents=True, exist_ok=True)
            keep_path = None
            if self._keep_kineto:
                keep_path = kineto_json_path(self._run_dir, self._rank, image_index, chunk)
                keep_path.parent.mkdir(parents=True, exist_ok=True)
            assert self._pool is not None
            future = self._pool.submit(
                convert_chunk,
                str(json_path),
                str(parquet_path),
                image_index,
                self._rank,
                chunk,
                None if keep_path is None else str(keep_path),
            )
            image_trace.futures.append(future)

        return flush

    @contextlib.contextmanager
    def profile_image(self, image_index: int) -> Iterator[tuple[Callable[[], None], ImageTrace]]:
        """Profile one image; yields (step, trace): call step() once per generated token."""
        image_trace = ImageTrace(image_index)
        if self._pool is None or self._plan is None or not self.traces_image(image_index):
            yield (lambda: None), image_trace
            return
        flush = self._flusher(image_index, image_trace)
        if self._sessions is ProfilerSessions.image:
            try:
                with self._one_session_per_image(flush) as step:
                    yield step, image_trace
            except BaseException:
                self._drop(image_trace)
                raise
            return

        def start() -> profile:
            session = profile(activities=self._activities, with_flops=self._with_flops)
            with warnings.catch_warnings():
                # torch warns that a schedule's cycles clear events; a session here is one cycle.
                warnings.filterwarnings("ignore", message=_CYCLE_WARNING)
                self._start_profiler(session)
            return session

        sessions = _WindowSessions(self._plan, start, flush, image_trace, stop_session=self._stop_profiler)
        try:
            sessions.begin()
            yield sessions.step, image_trace
        except BaseException:
            sessions.abandon()
            self._drop(image_trace)
            raise
        sessions.end()

    @contextlib.contextmanager
    def _one_session_per_image(self, flush: Callable[[profile], None]) -> Iterator[Callable[[], None]]:
        """The earlier design, kept to measure against (--profiler-sessions image): one session per
        image whose cyclic schedule records the planned steps and flushes at the end of each cycle."""
        assert self._plan is not None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CYCLE_WARNING)
            profiler = profile(
                activities=self._activities,
                schedule=schedule_from_plan(self._plan),
                on_trace_ready=flush,
                with_flops=self._with_flops,
            )
            self._start_profiler(profiler)

            def step() -> None:
                with self._fd2.redirected():  # a cycle's start and stop happen inside step()
                    profiler.step()

            try:
                yield step
            finally:
                self._stop_profiler(profiler)
                _release(profiler)

    def discard_image(self, image_index: int) -> None:
        """Remove every trace file of an image, so an image that is run again starts clean.

        A prediction row is written only after its image's conversions finished, so any trace
        file of an image without a row (a crash, an error) is incomplete.
        """
        json_pattern = f"rank{self._rank}-image{image_index:07d}-chunk*.json"
        for directory, pattern in (
            (self._run_dir / TRACE_DIR / f"rank={self._rank}", f"image{image_index:07d}-chunk*.parquet"),
            (self._run_dir / TRACE_DIR / PENDING_DIR, json_pattern),
            (self._run_dir / TRACE_DIR / KINETO_DIR, json_pattern),
        ):
            if directory.is_dir():
                for path in directory.glob(pattern):
                    os.unlink(path)

    def _drop(self, image_trace: ImageTrace) -> None:
        """Forget a failed image's trace: wait for its conversions in flight (they write files),
        then delete every trace file it has. Its row says why it failed; a trace would mislead."""
        wait(image_trace.futures)
        image_trace.futures.clear()
        self.discard_image(image_trace.image_index)

    def close(self) -> None:
        """Wait for every conversion, then stop the worker."""
        self._fd2.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _start_converter() -> ProcessPoolExecutor:
    """The converter process, started and warmed now (not at the first chunk) with SIGINT blocked,
    so that a Ctrl-C to the process group never reaches it, even while it starts up."""
    # spawn: the worker imports only pyarrow and dsocr, never the parent's CUDA state.
    context = multiprocessing.get_context("spawn")
    with sigint_blocked():
        pool = ProcessPoolExecutor(
            max_workers=CONVERTER_PROCESSES,
            mp_context=context,
            initializer=helper_process_init,
            initargs=(os.getpid(),),
        )
        # Warm before the first image: the first conversion would import and load the writer
        # beside decode steps, which the reference clock then charges to those steps.
        pool.submit(warm_up).result()
    return pool
