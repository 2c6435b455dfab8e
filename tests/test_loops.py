"""dsocr.loops.find_loop on token sequences: loops of several periods, and outputs that are no loop."""

from __future__ import annotations

import random

import pytest

from dsocr.loops import MIN_LOOP_TOKENS, Loop, find_loop, loop_decode_ms

EOS = 1
TD, TD_END, TR, TR_END, TABLE, TABLE_END = 200, 201, 202, 203, 204, 205


def _text(length: int, seed: int = 0) -> list[int]:
    """Varied 'document' tokens (ids 10..189) with no repetition at the end by construction."""
    rng = random.Random(seed)
    return [rng.randrange(10, 190) for _ in range(length)]


def test_period_one_loop_starts_at_its_first_repeated_token() -> None:
    prefix = _text(50)
    tokens = [*prefix, 7] + [7] * 99
    assert find_loop(tokens) == Loop(start=50, period=1, tokens=100)


def test_period_two_loop_cut_mid_unit_by_the_cap() -> None:
    prefix = _text(40, seed=1)
    tokens = prefix + [5, 6] * 40 + [5]
    assert find_loop(tokens) == Loop(start=40, period=2, tokens=81)


def test_period_thirty_phrase_loop() -> None:
    unit = _text(30, seed=2)
    prefix = _text(25, seed=3)
    tokens = prefix + unit * 6 + unit[:11]
    loop = find_loop(tokens)
    assert loop == Loop(start=25, period=30, tokens=191)


def test_table_cells_loop_after_real_rows() -> None:
    rows = [TABLE] + [t for cell in _text(12, seed=4) for t in (TR, TD, cell, TD_END, TR_END)]
    tokens = rows + [TD, TD_END] * 200
    assert find_loop(tokens) == Loop(start=len(rows), period=2, tokens=400)


def test_a_loop_left_by_eos_is_still_found_and_eos_is_not_counted() -> None:
    tokens = _text(20, seed=5) + [8, 9, 10] * 20 + [EOS]
    assert find_loop(tokens, eos_token_id=EOS) == Loop(start=20, period=3, tokens=60)
    # Without naming EOS, the final token breaks the period: no loop at the end.
    assert find_loop(tokens) is None


def test_a_long_legitimate_table_is_no_loop() -> None:
    # 300 rows of three cells whose contents differ: structure repeats, tokens do not.
    cells = _text(900, seed=6)
    table = [TABLE]
    for row in range(300):
        table += [TR] + [t for cell in cells[row * 3 : row * 3 + 3] for t in (TD, cell, TD_END)] + [TR_END]
    tokens = [*table, TABLE_END, EOS]
    assert find_loop(tokens, eos_token_id=EOS) is None


def test_empty_cells_inside_a_table_that_ends_are_no_loop() -> None:
    # A blank form: many empty cells, then the table closes and text follows.
    tokens = [TABLE] + [TD, TD_END] * 300 + [TABLE_END] + _text(30, seed=7) + [EOS]
    assert find_loop(tokens, eos_token_id=EOS) is None


def test_short_repetition_at_the_end_is_below_the_thresholds() -> None:
    assert find_loop([*_text(40, seed=8), 3, 3, 3, 3]) is None  # 4 tokens < MIN_LOOP_TOKENS
    tokens = _text(40, seed=9) + [3, 4] * (MIN_LOOP_TOKENS // 2)
    assert find_loop(tokens) == Loop(start=40, period=2, tokens=MIN_LOOP_TOKENS)
    unit = _text(30, seed=10)
    assert find_loop(_text(10, seed=11) + unit * 3) is None  # 3 repeats < MIN_REPEATS
    assert find_loop([]) is None


def test_the_shortest_period_is_reported() -> None:
    # Periodic with 2, hence also with 4 and 6: the unit is 2 tokens.
    tokens = _text(10, seed=12) + [4, 5] * 50
    assert find_loop(tokens).period == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(("start", "expected"), [(0, 10.0), (1, 10.0), (3, 7.0), (4, 4.0), (5, 0.0)])
def test_loop_decode_ms_sums_the_steps_from_the_loop_start(start: int, expected: float) -> None:
    # decode_step_ms[K - 1] is step K, which produced token K; token 0 came from prefill.
    assert loop_decode_ms([1.0, 2.0, 3.0, 4.0], start) == expected
