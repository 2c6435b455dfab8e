"""Baseline for the capture benchmark: plain HF generate, no ranges, no profiler, no hooks.

Decode ms/token = (time of generate(N) - time of generate(1)) / (N - 1), per image, each
generate bracketed by a device synchronize. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from dsocr.capture.config import DType
from dsocr.capture.images import load_image
from dsocr.capture.models import encode, greedy_generate, load_random_weights, resolve_dtype

from dsocr.families import DEEPSEEK_OCR2

PROMPT = DEEPSEEK_OCR2.default_prompt
WARMUP_TOKENS = 8
FIRST_TOKEN_REPEATS = 3


def _timed_generate(loaded, inputs, tokens: int) -> tuple[float, int]:
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    output = greedy_generate(loaded, inputs, tokens)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000, output.shape[1] - inputs["input_ids"].shape[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()
    dtype = resolve_dtype(DType(args.dtype) if args.dtype else None, args.device)
    loaded = load_random_weights(args.model, device=args.device, dtype=dtype, seed=0)
    results = []
    with torch.inference_mode():
        _timed_generate(loaded, encode(loaded, load_image(args.images[0]), PROMPT), WARMUP_TOKENS)
        for path in args.images:
            inputs = encode(loaded, load_image(path), PROMPT)
            # Median of a few: the first-token time is subtracted from the long run's time.
            first_ms = statistics.median(_timed_generate(loaded, inputs, 1)[0] for _ in range(FIRST_TOKEN_REPEATS))
            total_ms, generated = _timed_generate(loaded, inputs, args.tokens)
            results.append(
                {
                    "image": str(path),
                    "prompt_tokens": int(inputs["input_ids"].shape[1]),
                    "generated_tokens": int(generated),
                    "first_token_ms": first_ms,
                    "generate_ms": total_ms,
                    "decode_ms_per_token": (total_ms - first_ms) / max(generated - 1, 1),
                }
            )
    print(json.dumps({"images": results}))


if __name__ == "__main__":
    main()
