"""Independent per-file and per-chunk work on every core the process may use, results in order.

Threads, not processes: pyarrow's readers and kernels and numpy's sorts and searches release
the GIL, and tables stay shared instead of being pickled across. Within one file pyarrow's own
reader threads only add hand-off cost (one row group per file); across files they pay.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Results allowed to wait per worker: enough to keep each one busy while the caller folds the
#: oldest, few enough that memory stays near one file (or chunk) per worker.
PENDING_PER_WORKER = 2


def worker_count() -> int:
    """Cores this process may run on (its affinity mask and cpuset, not the host's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_pool() -> ThreadPoolExecutor:
    """A pool of ``worker_count()`` threads, named for stack dumps."""
    return ThreadPoolExecutor(max_workers=worker_count(), thread_name_prefix="dsocr-analyze")


def ordered_map(
    pool: ThreadPoolExecutor, function: Callable[[Item], Result], items: Iterable[Item]
) -> Iterator[Result]:
    """``map(function, items)`` on ``pool``, in input order, with a bounded number pending.

    The first failure (in input order) is raised, as a plain loop would raise it; work not
    started by then is cancelled.
    """
    limit = PENDING_PER_WORKER * worker_count()
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
