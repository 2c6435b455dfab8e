"""torch.profiler around each image, flushing every cycle to Parquet through a worker process."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from dsocr.capture.config import CaptureConfig, ProfileMode
from dsocr.capture.schedule import Schedule, full_schedule, sampled_schedule
from dsocr.capture.trace_convert import convert_chunk
from torch.profiler import ProfilerActivity, profile

from dsocr.rundir import TRACE_DIR

PENDING_DIR = ".pending"

# Clearing events at the end of each cycle is the point here: each cycle is flushed to Parquet.
warnings.filterwarnings("ignore", message=".*Profiler clears events at the end of each cycle.*")
CONVERTER_PROCESSES = 1


def trace_part_path(run_dir: Path, rank: int, image_index: int, chunk: int) -> Path:
    """Where one image's flush chunk lives: ``trace/rank=R/imageNNNNNNN-chunkCCCC.parquet``."""
    return run_dir / TRACE_DIR / f"rank={rank}" / f"image{image_index:07d}-chunk{chunk:04d}.parquet"


def _pending_path(run_dir: Path, rank: int, image_index: int, chunk: int) -> Path:
    return run_dir / TRACE_DIR / PENDING_DIR / f"rank{rank}-image{image_index:07d}-chunk{chunk:04d}.json"


@dataclass
class ImageTrace:
    """The conversions in flight for one image; its event count once they are done."""

    image_index: int
    futures: list[Future[int]] = field(default_factory=list)
    #: Size of the chrome-trace JSON the profiler exported (deleted once converted).
    json_bytes: int = 0

    def done(self) -> bool:
        return all(future.done() for future in self.futures)

    def event_count(self) -> int:
        """Events written for this image (waits for its conversions; raises if one failed)."""
        return sum(future.result() for future in self.futures)


class TraceWriter:
    """Owns the converter process; hands each image a profiler whose cycles become Parquet files."""

    def __init__(self, config: CaptureConfig, run_dir: Path, device: torch.device, rank: int) -> None:
        self._mode = config.profile
        self._schedule = self._make_schedule(config)
        self._first_cycle_steps = (
            config.sampling.first_steps if config.profile is ProfileMode.sampled else config.full_chunk_steps
        )
        self._run_dir = run_dir
        self._rank = rank
        self._activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            self._activities.append(ProfilerActivity.CUDA)
        self._pool: ProcessPoolExecutor | None = None
        if self._mode is not ProfileMode.off:
            # spawn: the worker imports only pyarrow and dsocr, never the parent's CUDA state.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=CONVERTER_PROCESSES, mp_context=context)

    @staticmethod
    def _make_schedule(config: CaptureConfig) -> Schedule | None:
        if config.profile is ProfileMode.sampled:
            return sampled_schedule(config.sampling)
        if config.profile is ProfileMode.full:
            return full_schedule(config.full_chunk_steps)
        return None

    def decode_fits_one_cycle(self, max_new_tokens: int) -> bool:
        """Whether a whole decode of up to ``max_new_tokens`` tokens lies in the first profiler cycle.

        The decode range closes during step N-1 (N tokens); the first cycle ends after step
        ``first_steps`` (sampled) or ``full_chunk_steps`` (full).
        """
        if self._mode is ProfileMode.off:
            return True
        return max_new_tokens - 1 <= self._first_cycle_steps

    @contextlib.contextmanager
    def profile_image(self, image_index: int) -> Iterator[tuple[Callable[[], None], ImageTrace]]:
        """Profile one image; yields (step, trace): call step() once per generated token."""
        image_trace = ImageTrace(image_index)
        if self._pool is None:
            yield (lambda: None), image_trace
            return
        chunk_counter = iter(range(1_000_000_000))

        def flush(profiler: profile) -> None:
            chunk = next(chunk_counter)
            json_path = _pending_path(self._run_dir, self._rank, image_index, chunk)
            json_path.parent.mkdir(parents=True, exist_ok=True)
            profiler.export_chrome_trace(str(json_path))
            image_trace.json_bytes += json_path.stat().st_size
            parquet_path = trace_part_path(self._run_dir, self._rank, image_index, chunk)
            parquet_path.parent.mkdir(parents=True, exist_ok=True)
            assert self._pool is not None
            future = self._pool.submit(convert_chunk, str(json_path), str(parquet_path), image_index, self._rank, chunk)
            image_trace.futures.append(future)

        profiler = profile(activities=self._activities, schedule=self._schedule, on_trace_ready=flush)
        profiler.start()
        try:
            yield profiler.step, image_trace
        finally:
            profiler.stop()
            # A torch.profiler.profile is in a reference cycle (its action map holds its bound
            # methods), so its last cycle's results outlive it until a full collection: host
            # memory grew with every image until this. Not per cycle: a full collection costs
            # ~155 ms with transformers loaded (measured on this project's CPU box).
            del profiler
            gc.collect()

    def discard_image(self, image_index: int) -> None:
        """Remove every trace file of an image, so an image that is run again starts clean.

        A prediction row is written only after its image's conversions finished, so any trace
        file of an image without a row (a crash, an error) is incomplete.
        """
        for directory, pattern in (
            (self._run_dir / TRACE_DIR / f"rank={self._rank}", f"image{image_index:07d}-chunk*.parquet"),
            (self._run_dir / TRACE_DIR / PENDING_DIR, f"rank{self._rank}-image{image_index:07d}-chunk*.json"),
        ):
            if directory.is_dir():
                for path in directory.glob(pattern):
                    os.unlink(path)

    def close(self) -> None:
        """Wait for every conversion, then stop the worker."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
