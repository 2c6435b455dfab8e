"""Host cost of ``--no-repeat-ngram`` per decode step, without a model: µs per step, side by side.

Calls generate's logits processing for one decode step exactly as generate does (a
LogitsProcessorList over the step's input_ids and full-vocabulary scores) with the guard
(capture.ngram.NoRepeatNGram, the vendor's n=30, window 90) and with no processor, interleaved
round by round in one process, at several generated lengths, in two cases:

- ``text``: varied tokens, the usual step (the guard bans nothing);
- ``loop``: a period-3 loop in the window (the guard bans a token every step).

The guard is tensor operations on the step's device (no read back to the host), so on cuda its
host cost is the launch of a dozen small kernels; this bench times it on the CPU, where those
operations also run. It runs inside the step, so capture's per-step timings include it.

    python bench/ngram_guard.py [--steps 2000] [--repeats 5] [--json results/cpu-ngram-guard.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from dsocr.capture.ngram import NoRepeatNGram  # noqa: E402
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList  # noqa: E402

from dsocr.options import DEFAULT_NGRAM_WINDOW, VENDOR_NO_REPEAT_NGRAM  # noqa: E402

NS_PER_US = 1000
NS_PER_MS = 1_000_000
MODEL_PAGE = (640, 640)  # one global view, no tiles: a short prefill
#: DeepSeek-OCR's vocabulary (scores are one float per token, as the real model's).
VOCAB = 129_280
PROMPT_TOKENS = 1_000  # a page's prompt: image tokens and text (the guard does not search it)
GENERATED = (100, 1_000, 7_000)
ALLOWED_IDS = (128_821, 128_822)  # the vendor's <td> and </td>
#: Step times to put the added µs against: the H200's full-size decode steps (docs/performance.md).
STEP_MS = (14.7, 23.5)


def _input_ids(generated: int, case: str) -> torch.Tensor:
    rng = random.Random(generated)
    prompt = [rng.randrange(2, VOCAB) for _ in range(PROMPT_TOKENS)]
    if case == "text":
        tokens = [rng.randrange(2, VOCAB) for _ in range(generated)]
    else:
        tokens = [rng.randrange(2, VOCAB) for _ in range(generated - DEFAULT_NGRAM_WINDOW)]
        tokens += [500, 501, 502] * (DEFAULT_NGRAM_WINDOW // 3)
    return torch.tensor([prompt + tokens], dtype=torch.long)


def _time(processors: LogitsProcessorList, input_ids: torch.Tensor, scores: torch.Tensor, steps: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(steps):
        processors(input_ids, scores)
    return (time.perf_counter_ns() - start) / steps / NS_PER_US


def measure(steps: int, repeats: int) -> list[dict[str, object]]:
    """Per case and generated length: median µs per step with no processor and with the guard."""
    results = []
    scores = torch.randn(1, VOCAB)
    for case in ("text", "loop"):
        for generated in GENERATED:
            input_ids = _input_ids(generated, case)
            guard = NoRepeatNGram(VENDOR_NO_REPEAT_NGRAM, DEFAULT_NGRAM_WINDOW, ALLOWED_IDS, PROMPT_TOKENS)
            banned = len(guard.banned(input_ids[0, PROMPT_TOKENS:].tolist()))
            none_us, guard_us = [], []
            for _ in range(repeats):  # interleaved: both see the same machine state
                none_us.append(_time(LogitsProcessorList(), input_ids, scores, steps))
                guard_us.append(_time(LogitsProcessorList([guard]), input_ids, scores, steps))
            none_median, guard_median = statistics.median(none_us), statistics.median(guard_us)
            results.append(
                {
                    "case": case,
                    "generated_tokens": generated,
                    "banned_per_step": banned,
                    "no_processor_us": none_median,
                    "guard_us": guard_median,
                    "added_us": guard_median - none_median,
                    "ratio": guard_median / none_median,
                    "added_share_of_step": {str(ms): (guard_median - none_median) / (ms * 1000) for ms in STEP_MS},
                }
            )
    return results


class _StepClock(StoppingCriteria):
    """Never stops generate: records the clock at each appended token (decode step boundaries)."""

    def __init__(self) -> None:
        self.marks: list[int] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        self.marks.append(time.perf_counter_ns())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def model_steps(tokens: int, repeats: int) -> dict[str, object]:
    """The embedded tiny model's decode step (median ms), no processor and the guard, interleaved."""
    from dsocr.capture.config import CaptureConfig
    from dsocr.capture.models import encode, greedy_generate, load_model
    from PIL import Image

    loaded = load_model(CaptureConfig(images=(), out=Path("unused")))
    inputs = encode(loaded, Image.new("RGB", MODEL_PAGE, "white"), loaded.family.facts.default_prompt)
    prompt = int(inputs["input_ids"].shape[1])
    steps: dict[str, list[float]] = {"none": [], "guard": []}
    for _ in range(repeats):
        for name in steps:
            processors = LogitsProcessorList()
            if name == "guard":
                processors.append(NoRepeatNGram(VENDOR_NO_REPEAT_NGRAM, DEFAULT_NGRAM_WINDOW, ALLOWED_IDS, prompt))
            clock = _StepClock()
            greedy_generate(
                loaded,
                dict(inputs),
                tokens,
                stopping_criteria=StoppingCriteriaList([clock]),
                logits_processor=processors,
            )
            steps[name] += [(b - a) / NS_PER_MS for a, b in itertools.pairwise(clock.marks)]
    none_ms, guard_ms = statistics.median(steps["none"]), statistics.median(steps["guard"])
    return {"model": loaded.model_id, "tokens": tokens, "steps_each": len(steps["none"]),
            "no_processor_step_ms": none_ms, "guard_step_ms": guard_ms, "ratio": guard_ms / none_ms}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="decode steps timed per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds, each timing both variants")
    parser.add_argument("--model-tokens", type=int, default=40, help="tokens per generate of the tiny model")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = measure(args.steps, args.repeats)
    model = model_steps(args.model_tokens, args.repeats)
    print(
        f"host cost of --no-repeat-ngram {VENDOR_NO_REPEAT_NGRAM} --ngram-window {DEFAULT_NGRAM_WINDOW} per decode"
        f" step (CPU: {platform.processor() or platform.machine()}, vocab {VOCAB}, median of {args.repeats} rounds"
        f" of {args.steps} steps)"
    )
    print(f"{'case':<5} {'generated':>9} {'banned':>6} {'none µs':>8} {'guard µs':>8} {'added µs':>8} {'ratio':>6}")
    for row in results:
        print(
            f"{row['case']:<5} {row['generated_tokens']:>9} {row['banned_per_step']:>6} {row['no_processor_us']:>8.1f}"
            f" {row['guard_us']:>8.1f} {row['added_us']:>8.1f} {row['ratio']:>6.1f}"
        )
    worst = max(float(row["added_us"]) for row in results)  # type: ignore[arg-type]
    for ms in STEP_MS:
        ratio = 1 + worst / (ms * 1000)
        print(f"  worst added {worst:.1f} µs at {ms} ms per decode step (H200, full-size model): {ratio:.4f}x")
    print(
        f"{model['model']} decode step (median of {model['steps_each']} steps each, interleaved generates):"
        f" {model['no_processor_step_ms']:.2f} ms without a processor, {model['guard_step_ms']:.2f} ms with the"
        f" guard: {model['ratio']:.3f}x"
    )
    if args.json:
        payload = {
            "bench": "ngram_guard",
            "device": "cpu",
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "steps": args.steps,
            "repeats": args.repeats,
            "ngram_size": VENDOR_NO_REPEAT_NGRAM,
            "window": DEFAULT_NGRAM_WINDOW,
            "vocab": VOCAB,
            "results": results,
            "tiny_model": model,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
