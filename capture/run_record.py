"""run.json for a capture: what was asked, what was resolved, on what, and how it ended."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import platform
import sys
from pathlib import Path
from typing import Any

from dsocr.capture.config import CaptureConfig
from dsocr.capture.models import LoadedModel

from dsocr import __version__, schema
from dsocr.errors import RunDirError
from dsocr.rundir import RUN_JSON, RUN_STATUS_RUNNING, read_run_json, write_json_atomic

_PACKAGES = ("torch", "transformers", "nvtx", "pyarrow", "pillow", "typer", "rich")
# Options that change what is measured: a resumed run must match them.
_FINGERPRINT_KEYS = (
    "model",
    "device",
    "dtype",
    "prompt",
    "max_new_tokens",
    "profile",
    "sampling",
    "seed",
    "profiler_sessions",
    "sdpa_backend",
    "attn_implementation",
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def config_record(config: CaptureConfig) -> dict[str, Any]:
    """The capture options as JSON (max_new_tokens null means inf)."""
    return {
        "images": list(config.images),
        "out": str(config.out),
        "model": None if config.model is None else str(config.model.resolve()),
        "device": config.device.value,
        "dtype": None if config.dtype is None else config.dtype.value,
        "prompt": config.prompt,
        "max_new_tokens": config.max_new_tokens,
        "profile": config.profile.value,
        "sampling": {
            "first_steps": config.sampling.first_steps,
            "window_steps": config.sampling.window_steps,
            "window_every": config.sampling.window_every,
        },
        "full_chunk_steps": config.full_chunk_steps,
        "seed": config.seed,
        "warmup_tokens": config.warmup_tokens,
        "profiler_sessions": config.profiler_sessions.value,
        "sdpa_backend": config.sdpa_backend.value,
        "attn_implementation": config.attn_implementation,
    }


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def check_resumable(run_dir: Path, config: CaptureConfig) -> dict[str, Any] | None:
    """The existing run.json when ``config`` may write into ``run_dir``; None for a fresh directory."""
    if not (run_dir / RUN_JSON).is_file():
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise RunDirError(f"--out {run_dir} is not empty and holds no dsocr run")
        return None
    if not config.resume:
        raise RunDirError(f"--out {run_dir} already holds a run: pass --resume to continue it, or another --out")
    previous = read_run_json(run_dir)
    if previous.get("kind") != "capture":
        raise RunDirError(f"--out {run_dir} holds a {previous.get('kind')} run, not a capture")
    wanted = config_record(config)
    differing = [key for key in _FINGERPRINT_KEYS if previous.get("config", {}).get(key) != wanted[key]]
    if differing:
        raise RunDirError(
            f"--out {run_dir} holds a different run (differs in {', '.join(differing)}); use another --out"
        )
    return previous


def start_record(config: CaptureConfig, loaded: LoadedModel, images: list[Path], previous: dict | None) -> dict:
    """run.json content at the start (or restart) of a capture."""
    record = {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": "capture",
        "dsocr_version": __version__,
        "status": RUN_STATUS_RUNNING,
        "argv": sys.argv,
        "config": config_record(config),
        "model": loaded.describe(),
        "device_name": loaded.device_name,  # also in model: kept here for readers of older runs
        "packages": _versions(),
        "images": {"total": len(images), "ok": 0, "failed": 0},
        "world_size": 1,
        "started_at": _now(),
        "finished_at": None,
        "resumed_at": [],
        "warnings": [],
    }
    if previous is not None:
        record["started_at"] = previous.get("started_at", record["started_at"])
        record["resumed_at"] = [*previous.get("resumed_at", []), _now()]
        record["warnings"] = previous.get("warnings", [])
    return record


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write run.json atomically."""
    write_json_atomic(run_dir / RUN_JSON, record)


def finish_record(record: dict[str, Any], status: str, ok: int, failed: int, capture_seconds: float) -> dict[str, Any]:
    """run.json content at the end of a capture (capture_seconds: this session's image loop)."""
    return {
        **record,
        "status": status,
        "finished_at": _now(),
        "capture_seconds": capture_seconds,
        "images": {**record["images"], "ok": ok, "failed": failed},
    }


class WarningCollector(logging.Handler):
    """Keeps each distinct WARNING of a run, for run.json: fallbacks must be on record."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self._into:
            self._into.append(message)
