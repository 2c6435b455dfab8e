"""run.json for a capture: what was asked, what was resolved, on what, and how it ended."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import logging
import platform
import sys
from pathlib import Path
from typing import Any

from dsocr.capture.config import CaptureConfig
from dsocr.capture.embedded_models import embedded_name
from dsocr.capture.embedded_models import model_id as embedded_model_id
from dsocr.capture.models import LoadedModel
from dsocr.capture.outdir import check_run_dir
from dsocr.capture.pdf import discover_inputs

from dsocr.errors import RunDirError
from dsocr.records import ConfigRecord, ImageCounts, ModelRecord, RankRecord, RunRecord, SamplingRecord
from dsocr.rundir import read_run_json
from dsocr.vocab import US_PER_MS, ImageStatus, RunKind, RunStatus

_PACKAGES = ("torch", "transformers", "nvtx", "pyarrow", "pillow", "typer", "rich")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _model_argument(model: Path | None) -> str:
    """``--model`` as run.json records it: an embedded model by its name (the default included, so
    a resume without --model matches a run that named it), else the absolute path."""
    name = embedded_name(model)
    if name is not None:
        return embedded_model_id(name)
    assert model is not None  # embedded_name answers for None
    return str(model.resolve())


def config_record(config: CaptureConfig) -> ConfigRecord:
    """The capture options as run.json records them (max_new_tokens None means inf)."""
    return ConfigRecord(
        images=tuple(config.images),
        out=str(config.out),
        model=_model_argument(config.model),
        device=config.device.value,
        dtype=None if config.dtype is None else config.dtype.value,
        prompt=config.prompt,
        max_new_tokens=config.max_new_tokens,
        profile=config.profile,
        sampling=SamplingRecord(
            first_steps=config.sampling.first_steps,
            window_steps=config.sampling.window_steps,
            window_every=config.sampling.window_every,
        ),
        full_chunk_steps=config.full_chunk_steps,
        seed=config.seed,
        warmup_tokens=config.warmup_tokens,
        profiler_sessions=config.profiler_sessions.value,
        sdpa_backend=config.sdpa_backend.value,
        attn_implementation=config.attn_implementation,
        with_flops=config.with_flops,
        keep_kineto=config.keep_kineto,
        cache=config.cache.value,
        compile=config.compile.value,
        trace_images=config.trace_images,
        dpi=config.dpi,
        pages=config.pages,
        no_repeat_ngram=config.no_repeat_ngram,
        ngram_window=config.ngram_window,
        ngram_allow=tuple(config.ngram_allow),
    )


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def model_record(loaded: LoadedModel) -> ModelRecord:
    """run.json ``model`` of a loaded model (device_name included: what ran it)."""
    return ModelRecord.from_describe(loaded.describe())


def check_resumable(run_dir: Path, config: CaptureConfig) -> RunRecord | None:
    """The existing run.json when ``config`` may write into ``run_dir``; None for a fresh directory."""
    if not check_run_dir(run_dir, resume=config.resume):
        return None
    previous = read_run_json(run_dir)
    if previous.kind is not RunKind.capture:
        raise RunDirError(f"--out {run_dir} holds a {previous.kind} run, not a capture")
    differing = config_record(config).differing(previous.config)
    if differing:
        raise RunDirError(
            f"--out {run_dir} holds a different run (differs in {', '.join(differing)}); use another --out"
        )
    _check_same_images(run_dir, config, previous)
    return previous


def _check_same_images(run_dir: Path, config: CaptureConfig, previous: RunRecord) -> None:
    """A resumed run keeps its own images: image arguments that name others are refused.

    The same arguments as recorded continue the recorded list as it is (a folder's new files are
    not added); other arguments must name exactly the run's images, in order.
    """
    if previous.config is not None and tuple(config.images) == tuple(previous.config.images):
        return
    named = tuple(str(path) for path in discover_inputs(config.images, config.page_selection)) if config.images else ()
    if named != tuple(previous.image_paths):
        raise RunDirError(
            f"--out {run_dir} holds a run of {len(previous.image_paths)} images and --resume continues "
            "those: drop the image arguments to continue it, or use another --out for other images"
        )


def start_record(
    config: CaptureConfig,
    loaded: LoadedModel,
    images: list[Path],
    previous: RunRecord | None,
    *,
    world_size: int,
) -> RunRecord:
    """run.json content at the start (or restart) of a capture."""
    record = RunRecord(
        kind=RunKind.capture,
        status=RunStatus.running,
        argv=tuple(sys.argv),
        config=config_record(config),
        model=model_record(loaded),
        packages=_versions(),
        images=ImageCounts(total=len(images)),
        image_paths=tuple(str(path) for path in images),
        world_size=world_size,
        started_at=_now(),
    )
    if previous is not None:
        record = dataclasses.replace(
            record,
            started_at=previous.started_at or record.started_at,
            resumed_at=(*previous.resumed_at, _now()),
            warnings=previous.warnings,
        )
    return record


def guard_us_per_step(rows: list[dict[str, Any]]) -> float | None:
    """The guard's host µs per decode step over the ok rows that ran it; None when none did."""
    guarded = [row for row in rows if row.get("ngram_guard_ms") is not None and row.get("status") == ImageStatus.ok]
    steps = sum(len(row.get("decode_step_ms") or ()) for row in guarded)
    if not guarded or not steps:
        return None
    return sum(row["ngram_guard_ms"] for row in guarded) * US_PER_MS / steps


def finish_record(
    record: RunRecord,
    *,
    ok: int,
    failed: int,
    capture_seconds: float,
    ranks: list[RankRecord],
    ngram_guard_us_per_step: float | None = None,
) -> RunRecord:
    """run.json content at the end of a capture (capture_seconds: this session's image loop)."""
    return dataclasses.replace(
        record,
        ngram_guard_us_per_step=ngram_guard_us_per_step,
        status=RunStatus.complete,
        finished_at=_now(),
        capture_seconds=capture_seconds,
        images=dataclasses.replace(record.images, ok=ok, failed=failed),
        ranks=tuple(ranks),
    )


class WarningCollector(logging.Handler):
    """Keeps each distinct WARNING of a run, for run.json: fallbacks must be on record."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self._into:
            self._into.append(message)
