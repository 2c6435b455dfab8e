"""Figures the capture benches read from a finished run (step medians, kernel timestamps), and a
failed variant's record."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dsocr.rundir import trace_files

#: Lines of a failed variant's log kept in the results.
LOG_TAIL_LINES = 20


class VariantFailed(Exception):
    """A variant's capture exited non-zero: recorded in the results, the next variant still runs."""

    def __init__(self, name: str, returncode: int, log: Path) -> None:
        tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log.exists() else []
        super().__init__(f"{name}: exited {returncode}; see {log}")
        self.record = {"variant": name, "returncode": returncode, "log": str(log), "log_tail": tail}


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def step_medians(row: dict[str, Any]) -> dict[str, float | None]:
    """Median decode step of one prediction row: all steps, untraced ones, traced ones."""
    steps = row["decode_step_ms"] or []
    traced = row.get("decode_step_traced") or [False] * len(steps)
    return {
        "step_p50_ms": median(steps),
        "untraced_step_p50_ms": median([ms for ms, on in zip(steps, traced, strict=True) if not on]),
        "traced_step_p50_ms": median([ms for ms, on in zip(steps, traced, strict=True) if on]),
    }


def kernels_before_launch(run_dir: Path) -> dict[str, int] | None:
    """Kernels whose start precedes the runtime call that launched them (pytorch/pytorch#192021),
    and the flush chunks (profiler sessions) that recorded no kernel at all (docs/performance.md:
    full mode's later sessions lost their GPU side on the H200)."""
    files = trace_files(run_dir)
    if not files:
        return None
    keys = ["image_index", "chunk", "correlation"]
    table = pa.concat_tables([pq.read_table(path, columns=[*keys, "cat", "ts_ns"]) for path in files])
    cat = pc.cast(table["cat"], pa.string())
    kernels = table.filter(pc.equal(cat, "kernel")).select([*keys, "ts_ns"])
    launches = table.filter(pc.is_in(cat, pa.array(["cuda_runtime", "cuda_driver"]))).select([*keys, "ts_ns"])
    if kernels.num_rows == 0:
        return None
    # Per flush chunk: CUPTI restarts its correlation ids when it is torn down between sessions.
    joined = kernels.join(launches.rename_columns([*keys, "launch_ts_ns"]), keys)
    early = pc.sum(pc.less(joined["ts_ns"], joined["launch_ts_ns"])).as_py() or 0
    chunks = table.group_by(keys[:2]).aggregate([]).num_rows
    chunks_with_kernels = kernels.group_by(keys[:2]).aggregate([]).num_rows
    return {
        "kernels": kernels.num_rows,
        "joined": joined.num_rows,
        "start_before_launch": early,
        "chunks": chunks,
        "chunks_without_kernels": chunks - chunks_with_kernels,
    }
