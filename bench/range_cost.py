"""Host cost of dsocr's per-token instrumentation, without a model: µs per generated token.

Drives capture.timeline.ImageTimeline exactly as generate does (one stopping-criteria call
per appended token) with a no-op profiler step, and compares with a bare stopping criterion
that only returns its tensor. The difference is what `--profile off` adds to every token on
the host; divide by a decode step's time for the ratio to a plain generate.

    python bench/range_cost.py [--tokens 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from dsocr.capture.clock import PerfCounterClock  # noqa: E402
from dsocr.capture.timeline import ImageTimeline  # noqa: E402

NS_PER_US = 1000
REPEATS = 5
EOS_TOKEN_ID = 1
NOT_EOS = 7


def _bare(input_ids: torch.Tensor) -> torch.Tensor:
    return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _time_bare(tokens: int, input_ids: torch.Tensor) -> float:
    start = time.perf_counter_ns()
    for _ in range(tokens):
        _bare(input_ids)
    return (time.perf_counter_ns() - start) / tokens / NS_PER_US


def _time_timeline(tokens: int, input_ids: torch.Tensor) -> float:
    timeline = ImageTimeline(
        image_index=0, clock=PerfCounterClock(), profiler_step=lambda: None,
        max_new_tokens=tokens, eos_token_id=EOS_TOKEN_ID, decode_in_trace=True,
    )  # fmt: skip
    timeline.begin()
    timeline.on_vision_forward(None, ())
    timeline.on_text_forward(None, ())
    start = time.perf_counter_ns()
    for _ in range(tokens):
        timeline(input_ids, None)
    elapsed = (time.perf_counter_ns() - start) / tokens / NS_PER_US
    timeline.times()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=20000)
    args = parser.parse_args()
    input_ids = torch.full((1, 1200), NOT_EOS, dtype=torch.long)
    bare = statistics.median(_time_bare(args.tokens, input_ids) for _ in range(REPEATS))
    timed = statistics.median(_time_timeline(args.tokens, input_ids) for _ in range(REPEATS))
    added = timed - bare
    print(f"bare stopping criterion: {bare:.1f} us/token; dsocr timeline: {timed:.1f} us/token; added {added:.1f} us")
    for step_ms in (14.7, 23.5):
        print(f"  at {step_ms} ms per decode step (H200, full-size model): {1 + added / (step_ms * 1000):.4f}x")


if __name__ == "__main__":
    main()
