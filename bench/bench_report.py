"""`dsocr report` on a large run: page size and build time for 100 images of 512 tokens.

Builds a synthetic run directory that follows the contract (run.json, predictions, and the
analysis files with their schemas: timings, kernels, steps, summary.json; a render per image
under viz/), the worst case for the page: every decode step traced with GPU time. Then times
``build_report`` and reports the HTML size against the 10 MB target.

    .venv/bin/python bench/bench_report.py                      # 100 images x 512 tokens
    .venv/bin/python bench/bench_report.py --images 1000 --tokens 4096 --json report.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsocr.report import build_report  # noqa: E402

from dsocr import rundir, schema  # noqa: E402
from dsocr.records import ImageCounts, ModelRecord, RunRecord  # noqa: E402
from dsocr.vocab import RunKind, RunStatus  # noqa: E402

DEFAULT_IMAGES = 100
DEFAULT_TOKENS = 512
TARGET_MB = 10.0
PAGE_SIZE = (1240, 1754)
STAGES = ("vision", "prefill_text", "prefill", "decode")
TOP = 10
KINDS = ("kernel", "operator", "cpu_operator")


def _render(path: Path, rng: random.Random) -> None:
    """A page-like JPEG, as emit writes: text bars and a box or two."""
    image = Image.new("RGB", PAGE_SIZE, "white")
    draw = ImageDraw.Draw(image)
    for top in range(80, PAGE_SIZE[1] - 80, 30):
        draw.rectangle((80, top, rng.randint(400, PAGE_SIZE[0] - 80), top + 12), fill=(30, 30, 30))
    draw.rectangle((70, 300, PAGE_SIZE[0] - 70, 700), outline=(200, 40, 40), width=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90)


def build_run(run_dir: Path, images: int, tokens: int, seed: int = 0) -> None:
    """Write the synthetic run: predictions and every analysis file the report reads."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    steps = tokens - 1
    model = ModelRecord(id="synthetic", dtype="bfloat16", device="cuda", device_name="NVIDIA H200")
    counts = ImageCounts(total=images, ok=images, failed=0)
    rundir.write_run_json(
        run_dir, RunRecord(kind=RunKind.capture, status=RunStatus.complete, model=model, images=counts)
    )
    predictions, timings, step_rows, latency = [], [], [], []
    for index in range(images):
        path = f"/pages/page{index:04d}.png"
        step_ms = np_rng.gamma(20, 1.0, steps) + 10
        predictions.append(
            {"image_index": index, "image_path": path, "image_md5": rundir.path_md5(path), "status": "ok",
             "generated_tokens": tokens, "prompt_tokens": 1157, "stop_reason": "max_new_tokens",
             "vision_ms": 150.0, "prefill_ms": 230.0, "decode_ms": float(step_ms.sum()),
             "decode_step_ms": step_ms.tolist(), "profile_mode": "full", "timing_clock": "cuda_event", "rank": 0}
        )  # fmt: skip
        for stage, cpu in zip(STAGES, (150.0, 80.0, 230.0, float(step_ms.sum())), strict=True):
            timings.append({"image_index": index, "rank": 0, "stage": stage, "clock_ms": cpu, "cpu_ms_traced": cpu,
                            "gpu_busy_ms_traced": cpu / 5, "gpu_span_ms_traced": cpu, "kernel_count_traced": 1000,
                            "reference_traced_ms": cpu})  # fmt: skip
        busy = step_ms * np_rng.uniform(0.05, 0.3, steps)
        step_rows.extend(
            {"image_index": index, "rank": 0, "step": k + 1, "wall_ms": float(step_ms[k]),
             "gpu_busy_ms": float(busy[k]), "gpu_span_ms": float(step_ms[k]), "kernel_count": 751}
            for k in range(steps)
        )  # fmt: skip
        latency.append({"image_index": index, "ttft_ms": 230.0, "tpot_p50_ms": float(np.median(step_ms)),
                        "vision_ms": 150.0, "prefill_text_ms": 80.0, "decode_ms": float(step_ms.sum()),
                        "other_ms": 20.0, "image_ms": 250.0 + float(step_ms.sum())})  # fmt: skip
        _render(run_dir / rundir.VIZ_DIR / rundir.path_md5(path) / "result_with_boxes.jpg", rng)
    kernels = [
        {"stage": stage, "kind": kind, "name": f"void kernel_{kind}_{rank}<cutlass::bf16, 128, 64>(Params)",
         "calls": 1000 - rank, "total_ms_traced": 100.0 / (rank + 1), "mean_us": 5.0, "share": 0.1}
        for stage in STAGES for kind in KINDS for rank in range(TOP)
    ]  # fmt: skip
    rundir.write_predictions(rundir.rows_to_table(predictions, schema.PREDICTIONS), run_dir)
    analysis = run_dir / rundir.ANALYSIS_DIR
    rundir.write_table_atomic(rundir.rows_to_table(timings, schema.TIMINGS), analysis / "timings.parquet")
    rundir.write_table_atomic(rundir.rows_to_table(kernels, schema.KERNELS), analysis / "kernels.parquet")
    rundir.write_table_atomic(rundir.rows_to_table(step_rows, schema.STEPS), analysis / "steps.parquet")
    describe = {"median": 1.0, "p90": 2.0}
    rundir.write_json_atomic(
        analysis / "summary.json",
        {"schema_version": schema.ANALYSIS_SCHEMA_VERSION, "run_dir": str(run_dir),
         "trace": {"present": True, "device_time": True, "profile_modes": ["full"], "timing_clocks": ["cuda_event"]},
         "stages": {stage: {"clock_ms": describe, "trace": {"cpu_ms": describe, "gpu_busy_ms": describe}}
                    for stage in STAGES},
         "latency": {"ttft_ms": describe, "tpot_p50_ms": describe}, "coverage": {"steps_total": images * steps},
         "images": latency, "top": kernels},
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES)
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        run_dir = Path(temp) / "run"
        started = time.perf_counter()
        build_run(run_dir, args.images, args.tokens)
        setup_s = time.perf_counter() - started
        result = build_report(run_dir)
    figures: dict[str, Any] = {
        "images": args.images,
        "tokens": args.tokens,
        "html_mb": round(result.bytes / 1e6, 2),
        "build_s": round(result.seconds, 2),
        "synthetic_run_s": round(setup_s, 2),
        "target_mb": TARGET_MB,
        "within_target": result.bytes / 1e6 < TARGET_MB,
    }
    print(f"{'images':>8} {'tokens':>7} {'HTML MB':>8} {'build s':>8}  target < {TARGET_MB} MB")
    print(f"{args.images:>8} {args.tokens:>7} {figures['html_mb']:>8} {figures['build_s']:>8}  "
          f"{'ok' if figures['within_target'] else 'OVER'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
