"""Sort orders that skip the sort when the rows already hold it.

Kineto writes each thread's events in start order and capture writes one file per flush
chunk, so most sorts analyze needs (by chunk and id, by lane and start) meet rows that are
already in order. Checking costs one comparison pass per key; a sort on a key that is not
nearly sorted (a duration, say) costs tens of times more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def is_lex_sorted(keys: Sequence[np.ndarray]) -> bool:
    """True when the rows are already in ``np.lexsort(keys)`` order (the last key is the primary)."""
    if len(keys) == 0 or len(keys[0]) < 2:
        return True
    undecided: np.ndarray | None = None  # pairs of neighbours equal on every key seen so far
    for key in reversed(keys):
        step = np.diff(key)
        if undecided is None:
            if (step < 0).any():
                return False
            undecided = step == 0
        else:
            if (step[undecided] < 0).any():
                return False
            undecided &= step == 0
        if not undecided.any():
            return True
    return True


def lex_order(keys: Sequence[np.ndarray]) -> np.ndarray:
    """``np.lexsort(keys)``, without sorting when the rows are already in that order.

    Equal rows keep their input order either way (lexsort is stable).
    """
    if is_lex_sorted(keys):
        return np.arange(len(keys[0]) if len(keys) else 0)
    return np.lexsort(keys)


def lex_sorted(keys: Sequence[np.ndarray], *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """``columns`` put in ``np.lexsort(keys)`` order: the arrays themselves, uncopied, when the
    rows already are in that order."""
    if is_lex_sorted(keys):
        return columns
    order = np.lexsort(keys)
    return tuple(column[order] for column in columns)
