"""Repetition loops in generated token ids: DeepSeek-OCR's best-known failure, found and measured.

A page the model cannot read well (skewed, blurred, a long table) can make greedy decoding
repeat a phrase, or ``<td></td>``, until the token cap. Such an output ends in a periodic tail:
from some token on, every token equals the one ``period`` tokens before it. This module finds
that tail from the token ids alone (no torch, no model), so capture records it per image and
analyze and emit read it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Longest repeating unit looked for, in tokens. The vendor's guard bans 30-grams repeated within
#: 90 tokens; a unit of a table row or a paragraph can be longer, a unit longer than this is not
#: told apart from a document that quotes itself.
MAX_PERIOD_TOKENS = 256
#: A tail counts as a loop when its unit repeats at least this many times...
MIN_REPEATS = 4
#: ...and it spans at least this many tokens (so that ``a a a a`` at the end of a text is no loop).
MIN_LOOP_TOKENS = 32


@dataclass(frozen=True)
class Loop:
    """A periodic tail of an output: from token ``start`` on, token i equals token i - ``period``."""

    #: 0-based index of the loop's first token among the generated ids; token K is produced by
    #: decode step K (token 0 by prefill), so this is also the decode step the loop starts at.
    start: int
    #: Tokens in the repeating unit (the shortest period of the tail).
    period: int
    #: Tokens from ``start`` to the end of the output (the final EOS, when there is one, excluded).
    tokens: int


def _periodic_start(ids: Sequence[int], period: int) -> int:
    """The first index from which ``ids`` is ``period``-periodic to its end (len(ids) when not at all)."""
    index = len(ids) - 1
    while index >= period and ids[index] == ids[index - period]:
        index -= 1
    # ids[index + 1 :] all equal the token one period earlier, so the tail starts one period before.
    return index + 1 - period if index + 1 < len(ids) else len(ids)


def find_loop(
    token_ids: Sequence[int],
    *,
    eos_token_id: int | None = None,
    max_period: int = MAX_PERIOD_TOKENS,
    min_repeats: int = MIN_REPEATS,
    min_tokens: int = MIN_LOOP_TOKENS,
) -> Loop | None:
    """The repetition loop at the end of ``token_ids`` (a model's generated ids), or None.

    Looks for the shortest period ``p <= max_period`` such that the output, from some first
    token on to its end, repeats a unit of ``p`` tokens (the last unit may be cut short by the
    token cap) at least ``min_repeats`` times and over at least ``min_tokens`` tokens; returns
    the earliest such first token. A trailing ``eos_token_id`` is ignored: a loop the model
    left by EOS is still a loop. Repetition that the output leaves before its end (a long
    table of empty cells followed by more text) is not a loop, nor is a table whose cells differ.
    Cost: O(len(token_ids)) per period tried; most periods fail at the first comparison.
    """
    ids = list(token_ids)
    if ids and eos_token_id is not None and ids[-1] == eos_token_id:
        ids.pop()
    for period in range(1, min(max_period, len(ids) // min_repeats) + 1):
        start = _periodic_start(ids, period)
        span = len(ids) - start
        if span >= max(min_repeats * period, min_tokens):
            return Loop(start=start, period=period, tokens=span)
    return None


def loop_decode_ms(decode_step_ms: Sequence[float], start: int) -> float:
    """Decode time (reference clock) from the loop's start to the end of generation.

    ``decode_step_ms[K - 1]`` is decode step K, which produced token K; a loop that starts at
    token 0 (produced by prefill) counts every decode step.
    """
    return float(sum(decode_step_ms[max(start, 1) - 1 :]))
