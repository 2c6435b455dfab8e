"""analyze on several threads: the same results as on one, errors in file order, bounded work."""

from __future__ import annotations

import shutil
import threading
import time
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from analyze_helpers import gpu_run_or_skip
from dsocr.analyze import cpu_self, runner, threads
from dsocr.analyze.load import load_trace
from dsocr.analyze.runner import analyze_run
from dsocr.analyze.summary import to_json

from dsocr import rundir
from dsocr.errors import RunDirError


def _analysis(run_dir: Path, workers: int) -> tuple[dict, dict]:
    analysis = analyze_run(run_dir, jobs=workers)
    written = {path.name: pq.read_table(path).to_pylist() for path in sorted(analysis.output_dir.glob("*.parquet"))}
    return to_json(analysis.summary), written


def test_one_thread_and_four_give_the_same_analysis(tmp_path: Path) -> None:
    run_dir = shutil.copytree(gpu_run_or_skip(), tmp_path / "run")
    summary_one, files_one = _analysis(run_dir, 1)
    summary_four, files_four = _analysis(run_dir, 4)
    assert summary_one == summary_four
    assert files_one == files_four and len(files_one) == 4


def test_flush_chunks_cut_at_whole_call_trees_give_the_same_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fixture's chunks hold ~61k operators each, under the cut's threshold: lower it so
    # that each chunk is placed in four slices on four threads, and compare with one thread.
    run_dir = shutil.copytree(gpu_run_or_skip(), tmp_path / "run")
    summary_one, files_one = _analysis(run_dir, 1)
    cut = partial(cpu_self.whole_call_trees, min_rows=1_000)
    cpu_ops = load_trace(run_dir).cpu_ops
    assert len(list(cut(cpu_ops, 4))) == 4 * len(cpu_ops.to_batches()) == 8
    monkeypatch.setattr(runner, "whole_call_trees", cut)
    summary_cut, files_cut = _analysis(run_dir, 4)
    assert summary_one == summary_cut
    assert files_one == files_cut


def test_a_single_file_is_read_on_pyarrow_threads_and_gives_the_same_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = shutil.copytree(gpu_run_or_skip(), tmp_path / "run")
    rundir.trace_files(run_dir)[1].unlink()
    (trace_file,) = rundir.trace_files(run_dir)
    summary_one, files_one = _analysis(run_dir, 1)
    reads: dict[Path, bool] = {}
    read = rundir.read_parquet

    def recording(path: Path, *args: object, use_threads: bool = False, **kwargs: object) -> object:
        reads[path] = use_threads
        return read(path, *args, use_threads=use_threads, **kwargs)

    monkeypatch.setattr(rundir, "read_parquet", recording)
    summary_four, files_four = _analysis(run_dir, 4)
    assert reads[trace_file] is True  # one file, four threads: its columns decode side by side
    assert summary_one == summary_four
    assert files_one == files_four


def test_the_first_bad_file_in_order_is_the_one_reported(tmp_path: Path) -> None:
    run_dir = shutil.copytree(gpu_run_or_skip(), tmp_path / "run")
    files = rundir.trace_files(run_dir)
    assert len(files) >= 2
    for path in files:
        path.write_bytes(b"not parquet")
    with pytest.raises(RunDirError, match=files[0].name):
        analyze_run(run_dir, jobs=4)


def test_ordered_map_keeps_input_order_with_out_of_order_finishes() -> None:
    def slow_for_small(value: int) -> int:
        time.sleep(0.002 * (10 - value))  # earlier items finish last
        return value * value

    with threads.worker_pool() as pool:
        assert list(threads.ordered_map(pool, slow_for_small, range(10))) == [value * value for value in range(10)]


def test_ordered_map_bounds_what_is_pending() -> None:
    limit = threads.PENDING_PER_WORKER * 2
    started: list[int] = []
    lock = threading.Lock()

    def record(value: int) -> int:
        with lock:
            started.append(value)
        return value

    with threads.worker_pool(2) as pool:
        results = threads.ordered_map(pool, record, range(50))
        first = next(results)
        time.sleep(0.05)  # every submitted item has run by now; no more may have been submitted
        with lock:
            submitted = len(started)
        rest = list(results)
    assert first == 0 and rest == list(range(1, 50))
    assert submitted <= limit


def test_ordered_map_raises_the_first_failure_and_cancels_the_rest() -> None:
    ran: list[int] = []

    def fail_on_three(value: int) -> int:
        ran.append(value)
        if value in (3, 5):
            raise ValueError(f"bad {value}")
        return value

    with threads.worker_pool(1) as pool, pytest.raises(ValueError, match="bad 3"):
        list(threads.ordered_map(pool, fail_on_three, range(100)))
    assert max(ran) < 3 + threads.PENDING_PER_WORKER + 1


def test_the_default_is_the_usable_cores_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 16)
    assert threads.worker_count() == threads.DEFAULT_MAX_WORKERS
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.worker_count() == 2
    assert threads.worker_count(jobs=9) == 9
    with threads.worker_pool(3) as pool:
        assert pool.workers == 3 and pool._max_workers == 3
