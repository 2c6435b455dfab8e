"""Independent per-file and per-chunk work on a few threads, results in order.

Threads, not processes: pyarrow's readers and kernels and numpy's sorts and searches release
the GIL, and tables stay shared instead of being pickled across. With a file per thread or more,
pyarrow's own reader threads only add hand-off cost; with fewer files than threads (one image in
one flush chunk) they decode each file's columns side by side, and the file's operators are
placed in slices of whole call trees (``cpu_self.whole_call_trees``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Threads by default, at most: past four, more threads only hold more files in memory. On the
#: H200's 16-core host at 1.1 M events (bench/results/h200-host-analyze-threads.json, medians of
#: 5 rounds), analyze_run took 0.87 s on 1 thread, 0.72 on 2, 0.64 on 4, 0.66 on 8 and 16, while
#: peak memory grew from 290 MiB (1) and 361 (4) to 628 (16).
DEFAULT_MAX_WORKERS = 4

#: Results allowed to wait per worker: enough to keep each one busy while the caller folds the
#: oldest, few enough that memory stays near one file (or chunk) per worker.
PENDING_PER_WORKER = 2


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask and cpuset, not the host's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(jobs: int | None = None) -> int:
    """``jobs`` threads when given, else the usable cores up to ``DEFAULT_MAX_WORKERS``."""
    return jobs if jobs is not None else min(usable_cores(), DEFAULT_MAX_WORKERS)


class WorkerPool(ThreadPoolExecutor):
    """A thread pool that says how many threads it has (``ordered_map`` bounds pending work by it)."""

    def __init__(self, workers: int) -> None:
        super().__init__(max_workers=workers, thread_name_prefix="dsocr-analyze")
        self.workers = workers


def worker_pool(jobs: int | None = None) -> WorkerPool:
    """A pool of ``worker_count(jobs)`` threads, named for stack dumps."""
    return WorkerPool(worker_count(jobs))


def ordered_map(pool: WorkerPool, function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
    """``map(function, items)`` on ``pool``, in input order, with a bounded number pending.

    The first failure (in input order) is raised, as a plain loop would raise it; work not
    started by then is cancelled.
    """
    limit = PENDING_PER_WORKER * pool.workers
    pending: deque[Future[Result]] = deque()
    iterator = iter(items)
    try:
        for item in iterator:
            pending.append(pool.submit(function, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
