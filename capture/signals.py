"""Signals for capture's processes: the main process stops once, cleanly; helpers never talk back.

- The capturing process (or each torchrun rank) turns the first SIGINT or SIGTERM into a
  KeyboardInterrupt, then ignores both while it saves the finished images and marks the run
  ``interrupted``: a second Ctrl-C must not cut that saving short.
- Helper processes (the trace converter) ignore SIGINT, so a Ctrl-C to the process group stops
  only the capture (which then waits for their last conversions), and they exit when their
  parent dies, even by SIGKILL (Linux's parent-death signal).

Torch-free: the converter worker imports this module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: prctl(2) option that makes the kernel signal this process when its parent thread exits.
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stop(signum: int, frame: FrameType | None) -> None:
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def stop_once_on_signals() -> Iterator[None]:
    """SIGINT or SIGTERM raise KeyboardInterrupt once; later ones are ignored until the block ends,
    and after it when one stopped the block: the process is then on its way out, and a third
    quick Ctrl-C would otherwise land in Python's shutdown (``KeyboardInterrupt in
    threading._shutdown``, exit 130) instead of the one ``Error:`` line. A library caller that
    goes on after CaptureInterrupted sets its own handlers again.

    Only the main thread can set handlers: elsewhere (a library caller's thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        _stop(signum, frame)

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    try:
        yield
    finally:
        if not received:
            for number, handler in previous.items():
                signal.signal(number, handler)


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while child processes start: they inherit the blocked mask
    through exec, so a Ctrl-C during their start-up cannot print their traceback. A SIGINT that
    arrives meanwhile is delivered to this process when the block ends."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def exit_with_parent(signum: int = signal.SIGKILL, *, parent_pid: int | None = None) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux; elsewhere a
    no-op). ``parent_pid``: the parent expected; if it is already gone, exit now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before prctl took effect: nobody waits for this worker


def helper_process_init(parent_pid: int) -> None:
    """Initializer of capture's helper processes: no Ctrl-C, and die with the capture."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid=parent_pid)
