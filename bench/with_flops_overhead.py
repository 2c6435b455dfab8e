"""What torch.profiler's ``with_flops`` costs: the same generate profiled with and without it.

``with_flops`` makes the profiler record input shapes, from which capture's converter computes
FLOPs (capture/op_flops.py). One process, one loaded model, the two settings interleaved (the
host's load drifts more than the effect). Per repetition: ``generate`` of N tokens under
``profile(activities=[CPU(, CUDA)], with_flops=X)``, then the chrome-trace export; prints the
median wall time of each, the JSON size and the operators that get a FLOP count.

    python bench/with_flops_overhead.py --device cpu --tokens 16 --repeats 5
    python bench/with_flops_overhead.py --model bench/configs/deepseek-ocr2-full.json --device cuda --tokens 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from dsocr.capture.models import EMBEDDED_CONFIG, encode, greedy_generate, load_random_weights  # noqa: E402
from dsocr.capture.op_flops import op_flops  # noqa: E402
from dsocr.capture.samples import write_sample_images  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

PROMPT = "<image>\nFree OCR."


def _one(loaded, inputs, tokens: int, with_flops: bool, activities, export: Path) -> tuple[float, float, int, int]:
    start = time.perf_counter()
    with profile(activities=activities, with_flops=with_flops) as prof:
        greedy_generate(loaded, inputs, tokens)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    prof.export_chrome_trace(str(export))
    export_s = time.perf_counter() - start
    events = json.loads(export.read_text())["traceEvents"]
    counted = sum(1 for event in events if op_flops(event.get("name", ""), event.get("args") or {}))
    return generate_s, export_s, export.stat().st_size, counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=EMBEDDED_CONFIG)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    loaded = load_random_weights(args.model, device=args.device, dtype=dtype, seed=0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with tempfile.TemporaryDirectory() as tmp:
        page = write_sample_images(Path(tmp))[0]
        from PIL import Image

        inputs = encode(loaded, Image.open(page).convert("RGB"), PROMPT)
        greedy_generate(loaded, inputs, args.tokens)  # warm-up
        results: dict[bool, list[tuple[float, float, int, int]]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for with_flops in (False, True) if repeat % 2 == 0 else (True, False):
                results[with_flops].append(
                    _one(loaded, inputs, args.tokens, with_flops, activities, Path(tmp) / "trace.json")
                )
    print(f"{args.model.name}, {args.device}, {args.tokens} tokens, {args.repeats} repeats (medians)")
    for with_flops, rows in results.items():
        generate = statistics.median(row[0] for row in rows)
        export = statistics.median(row[1] for row in rows)
        print(
            f"with_flops={with_flops!s:5}: generate {generate:.3f} s, export {export:.3f} s,"
            f" JSON {rows[0][2] / 1e6:.1f} MB, operators with FLOPs {rows[0][3]}"
        )


if __name__ == "__main__":
    main()
