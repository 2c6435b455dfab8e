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


def _one(loaded, inputs, tokens: int, with_flops: bool, activities, export: Path) -> dict[str, float]:
    prof = profile(activities=activities, with_flops=with_flops)
    prof.start()
    start = time.perf_counter()
    greedy_generate(loaded, inputs, tokens)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    prof.stop()  # where Kineto collects the session: the cost dsocr pays per window or chunk
    stop_s = time.perf_counter() - start
    start = time.perf_counter()
    prof.export_chrome_trace(str(export))
    export_s = time.perf_counter() - start
    events = json.loads(export.read_text())["traceEvents"]
    counted = sum(1 for event in events if op_flops(event.get("name", ""), event.get("args") or {}))
    return {
        "generate_s": generate_s,
        "stop_s": stop_s,
        "export_s": export_s,
        "json_mb": export.stat().st_size / 1e6,
        "events": len(events),
        "operators_with_flops": counted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=EMBEDDED_CONFIG)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the medians here")
    args = parser.parse_args()
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    loaded = load_random_weights(args.model, device=args.device, dtype=dtype, seed=0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with tempfile.TemporaryDirectory() as tmp:
        page = write_sample_images(Path(tmp))[0]
        from PIL import Image

        inputs = encode(loaded, Image.open(page).convert("RGB"), PROMPT)
        greedy_generate(loaded, inputs, args.tokens)  # warm-up
        results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for with_flops in (False, True) if repeat % 2 == 0 else (True, False):
                results[with_flops].append(
                    _one(loaded, inputs, args.tokens, with_flops, activities, Path(tmp) / "trace.json")
                )
    medians = {
        f"with_flops={with_flops}": {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        for with_flops, rows in results.items()
    }
    print(f"{args.model.name}, {args.device}, {args.tokens} tokens, {args.repeats} repeats (medians)")
    for name, row in medians.items():
        print(
            f"{name:16}: generate {row['generate_s']:.3f} s, stop {row['stop_s']:.3f} s,"
            f" export {row['export_s']:.3f} s, JSON {row['json_mb']:.1f} MB, events {row['events']:.0f},"
            f" operators with FLOPs {row['operators_with_flops']:.0f}"
        )
    off, on = medians["with_flops=False"], medians["with_flops=True"]
    stop_ratio, generate_ratio = on["stop_s"] / off["stop_s"], on["generate_s"] / off["generate_s"]
    print(f"with_flops costs: stop {stop_ratio:.2f}x, generate {generate_ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"tokens": args.tokens, "device": args.device, **medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
