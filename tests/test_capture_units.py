"""The pieces of capture that are plain logic: token caps, schedules, image discovery, tokenizer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from dsocr.capture import tracing
from dsocr.capture.config import SamplingSchedule, parse_max_new_tokens
from dsocr.capture.images import discover_images
from dsocr.capture.limits import FALLBACK_DECODE_CEILING, ContextLimit, find_context_limit, resolve_cap, stop_reason
from dsocr.capture.schedule import full_plan, sampled_plan, sampled_records, schedule_from_plan
from dsocr.capture.tokenizer import EOS_TOKEN, build_tokenizer
from dsocr.capture.trace_convert import events_to_table
from torch.profiler import ProfilerAction
from transformers import MistralConfig

from dsocr.errors import BadInputError
from dsocr.vocab import ProfileMode


@pytest.mark.parametrize(("text", "expected"), [("inf", None), ("INF", None), (" Inf ", None), ("1", 1), ("512", 512)])
def test_max_new_tokens_parsing(text: str, expected: int | None) -> None:
    assert parse_max_new_tokens(text) == expected


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "infinity", ""])
def test_max_new_tokens_rejects(text: str) -> None:
    with pytest.raises(BadInputError, match="--max-new-tokens must be an integer >= 1 or 'inf'"):
        parse_max_new_tokens(text)


def test_context_limit_prefers_the_text_config() -> None:
    config = SimpleNamespace(text_config=SimpleNamespace(max_position_embeddings=8192), max_position_embeddings=512)
    assert find_context_limit(config) == ContextLimit(8192, "text_config.max_position_embeddings")
    flat = SimpleNamespace(n_positions=1024)
    assert find_context_limit(flat) == ContextLimit(1024, "config.n_positions")
    assert find_context_limit(SimpleNamespace(hidden_size=64)) == ContextLimit(None, None)


def test_sliding_window_is_an_attention_window_not_a_context_limit() -> None:
    # A real HF config with both: attention looks back 4096 tokens, sequences run to 32768.
    mistral = MistralConfig(max_position_embeddings=32768, sliding_window=4096)
    assert find_context_limit(mistral) == ContextLimit(32768, "config.max_position_embeddings")
    # A window alone says nothing about how long a sequence may be.
    windowed = SimpleNamespace(text_config=SimpleNamespace(sliding_window=4096))
    assert find_context_limit(windowed) == ContextLimit(None, None)


def test_inf_is_bounded_by_the_model_limit() -> None:
    cap = resolve_cap(None, 1157, ContextLimit(8192, "text_config.max_position_embeddings"))
    assert (cap.max_new_tokens, cap.reason_at_cap, cap.warning) == (7035, "model_limit", None)


def test_inf_without_a_limit_uses_the_named_fallback_and_warns() -> None:
    cap = resolve_cap(None, 1157, ContextLimit(None, None))
    assert cap.max_new_tokens == FALLBACK_DECODE_CEILING == 4096
    assert cap.reason_at_cap == "fallback_ceiling"
    assert "FALLBACK_DECODE_CEILING=4096" in cap.warning


def test_integer_caps() -> None:
    limit = ContextLimit(1280, "text_config.max_position_embeddings")
    assert resolve_cap(8, 1157, limit).max_new_tokens == 8
    assert resolve_cap(8, 1157, limit).reason_at_cap == "max_new_tokens"
    capped = resolve_cap(500, 1157, limit)
    assert (capped.max_new_tokens, capped.reason_at_cap) == (123, "model_limit")
    assert "capped at 123" in capped.warning
    with pytest.raises(BadInputError, match="fills the model's context"):
        resolve_cap(None, 1280, limit)


def test_stop_reason() -> None:
    cap = resolve_cap(None, 10, ContextLimit(20, "x"))
    assert stop_reason(3, True, cap) == "eos"
    assert stop_reason(10, False, cap) == "model_limit"
    with pytest.raises(AssertionError):
        stop_reason(3, False, cap)


def test_sampled_schedule_windows() -> None:
    sampling = SamplingSchedule(first_steps=2, window_steps=2, window_every=8)
    traced = [step for step in range(30) if sampled_records(step, sampling)]
    assert traced == [0, 1, 2, 8, 9, 16, 17, 24, 25]
    action = schedule_from_plan(sampled_plan(sampling))
    assert [action(step) for step in (0, 2, 3, 7, 8, 9)] == [
        ProfilerAction.RECORD,
        ProfilerAction.RECORD_AND_SAVE,
        ProfilerAction.NONE,
        ProfilerAction.WARMUP,
        ProfilerAction.RECORD,
        ProfilerAction.RECORD_AND_SAVE,
    ]


def test_full_schedule_flushes_every_chunk() -> None:
    action = schedule_from_plan(full_plan(4))
    saves = [step for step in range(13) if action(step) is ProfilerAction.RECORD_AND_SAVE]
    assert saves == [4, 8, 12]


class _FakeSession:
    """Stands in for torch.profiler.profile in the session driver: records start and stop order."""

    def __init__(self, log: list[str], number: int) -> None:
        self._log, self._number = log, number

    def stop(self) -> None:
        self._log.append(f"stop{self._number}")


def test_window_sessions_start_before_and_stop_after_each_traced_window() -> None:
    from dsocr.capture.tracing import _WindowSessions

    log: list[str] = []
    started: list[int] = []

    def start() -> _FakeSession:
        started.append(len(started))
        log.append(f"start{started[-1]}")
        return _FakeSession(log, started[-1])

    sessions = _WindowSessions(sampled_plan(SamplingSchedule(first_steps=1, window_steps=2, window_every=4)), start,
                               flush=lambda session: log.append("flush"))  # fmt: skip
    sessions.begin()
    for token in range(1, 11):  # token K appended: step K-1 ended
        log.append(f"t{token}")
        sessions.step()
    sessions.end()
    # Steps 0-1 (prefill + decode step 1), 4-5 and 8-9 are recorded, each window in its own session.
    assert log == [
        "start0", "t1", "t2", "stop0", "flush", "t3", "t4", "start1", "t5", "t6", "stop1", "flush",
        "t7", "t8", "start2", "t9", "t10", "stop2", "flush",
    ]  # fmt: skip


def test_discovery_of_folders_lists_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "p2.PNG").write_bytes(b"x")
    (tmp_path / "a" / "notes.md").write_text("x")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "p1.jpg").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("a/p2.PNG\n\n# comment\nmissing.png\n")
    found = discover_images((str(tmp_path / "a"), str(listing)))
    assert found == [
        (tmp_path / "a" / "p2.PNG").resolve(),
        (tmp_path / "a" / "sub" / "p1.jpg").resolve(),
        (tmp_path / "missing.png").resolve(),
    ]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    with pytest.raises(BadInputError, match="no images found"):
        discover_images((str(empty),))


def test_tokenizer_round_trips_grounding_markup() -> None:
    tokenizer = build_tokenizer()
    text = "<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nÜber 数字" + EOS_TOKEN
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.bos_token_id == 0 and tokenizer.eos_token_id == 1
    assert tokenizer("x").input_ids[0] == tokenizer.bos_token_id


def test_trace_conversion_keeps_complete_events_and_parses_ranges() -> None:
    trace = {
        "baseTimeNanoseconds": 1_000_000_000,
        "traceEvents": [
            {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "python"}},
            {"ph": "X", "cat": "user_annotation", "name": "dsocr.decode_step#7", "pid": 1, "tid": 2,
             "ts": 10.5, "dur": 2.25, "args": {"External id": 9}},
            {"ph": "X", "cat": "kernel", "name": "gemm", "pid": 0, "tid": 7, "ts": 11.0, "dur": 1.0,
             "args": {"device": 0, "stream": 7, "correlation": 42, "External id": 9}},
            {"ph": "f", "cat": "ac2g", "name": "flow", "pid": 0, "tid": 7, "ts": 11.0, "id": 42},
        ],
    }  # fmt: skip
    table = events_to_table(trace, image_index=3, rank=0, chunk=1)
    rows = table.to_pylist()
    assert len(rows) == 2
    annotation, kernel = rows
    assert annotation["ts_ns"] == 1_000_010_500 and annotation["dur_ns"] == 2250
    assert (annotation["range_stage"], annotation["range_step"]) == ("decode_step", 7)
    assert (kernel["correlation"], kernel["device"], kernel["stream"], kernel["range_stage"]) == (42, 0, 7, None)
    assert {row["image_index"] for row in rows} == {3}


def test_the_converter_starts_warm_and_light() -> None:
    """The converter has imported what converting needs before the first window, and never torch."""
    from dsocr.capture import tracing

    pool = tracing._start_converter()
    try:
        # eval: a builtin, so the spawned worker needs no test module to run the check.
        imported = pool.submit(eval, "[name in __import__('sys').modules for name in ('pyarrow.parquet', 'torch')]")
        assert imported.result() == [True, False]
    finally:
        pool.shutdown()


def test_cupti_teardown_is_on_for_sampled_off_for_full_and_a_users_value_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Full mode's back-to-back sessions lost their GPU activities with teardown (docs/performance.md)."""
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    monkeypatch.delenv(tracing.TEARDOWN_CUPTI_ENV, raising=False)
    monkeypatch.setattr(tracing, "_teardown_set_by_dsocr", None)
    assert tracing.teardown_cupti_setting(cuda, ProfileMode.full) == "0"
    # A later capture in the same process sets its own mode's value over dsocr's earlier one.
    assert tracing.teardown_cupti_setting(cuda, ProfileMode.sampled) == "1"
    assert tracing.teardown_cupti_setting(cuda, ProfileMode.full) == "0"
    monkeypatch.setenv(tracing.TEARDOWN_CUPTI_ENV, "1")
    assert tracing.teardown_cupti_setting(cuda, ProfileMode.full) == "1"
    assert tracing.teardown_cupti_setting(torch.device("cpu"), ProfileMode.full) is None
