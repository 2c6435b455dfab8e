"""Does profiling change what it measures? Capture variants side by side, each in its own process.

For every variant: the median decode step of the steady-state images (all but the first),
split into steps the profiler recorded and steps it did not, against `--profile off` of the same
run; the capture loop's wall time against `off`; cold steps (decode lengths new to the process);
and, on CUDA, kernels whose recorded start precedes their own launch (pytorch/pytorch#192021).

    python bench/fidelity.py --model bench/configs/deepseek-ocr2-full.json --device cuda --tokens 128 \
        --json bench/results/h200-fidelity-128.json
    python bench/fidelity.py --device cpu --tokens 24     # embedded tiny model: the CPU figures
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dsocr.capture.samples import write_sample_images
from run_figures import VariantFailed, kernels_before_launch, median, step_medians

from dsocr.rundir import read_predictions, read_run_json
from dsocr.vocab import ImageStatus

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_CONFIG = ROOT / "capture" / "embedded" / "tiny-deepseek-ocr2.json"
KIB = 1024

#: name -> (capture flags, environment). TEARDOWN_CUPTI unset means dsocr's default for the mode
#: ("1" sampled, "0" full: capture/tracing.py).
VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "off": (["--profile", "off"], {}),
    "sampled": (["--profile", "sampled"], {}),
    "sampled-no-teardown": (["--profile", "sampled"], {"TEARDOWN_CUPTI": "0"}),
    "sampled-image-session": (["--profile", "sampled", "--profiler-sessions", "image"], {}),
    "sampled-image-session-no-teardown": (
        ["--profile", "sampled", "--profiler-sessions", "image"],
        {"TEARDOWN_CUPTI": "0"},
    ),
    "full": (["--profile", "full"], {}),
    "full-with-flops": (["--profile", "full", "--with-flops"], {}),
    # Full mode's later sessions lost their GPU side with teardown (docs/performance.md): full's
    # default since 2026-12-07 is "0"; `full-teardown` reproduces the loss.
    "full-no-teardown": (["--profile", "full"], {"TEARDOWN_CUPTI": "0"}),
    "full-teardown": (["--profile", "full"], {"TEARDOWN_CUPTI": "1"}),
    "full-image-session-no-teardown": (
        ["--profile", "full", "--profiler-sessions", "image"],
        {"TEARDOWN_CUPTI": "0"},
    ),
    "off-sdpa-flash": (["--profile", "off", "--sdpa-backend", "flash"], {}),
    "off-sdpa-efficient": (["--profile", "off", "--sdpa-backend", "efficient"], {}),
    "off-sdpa-math": (["--profile", "off", "--sdpa-backend", "math"], {}),
}
DEFAULT_VARIANTS = "off,sampled,sampled-no-teardown,sampled-image-session,full"


def _image_figures(row: dict[str, Any]) -> dict[str, Any]:
    steps = row["decode_step_ms"] or []
    cold = row.get("decode_step_cold") or [False] * len(steps)
    return {
        "image_index": row["image_index"],
        "prompt_tokens": row["prompt_tokens"],
        "steps": len(steps),
        **step_medians(row),
        "cold_steps": sum(cold),
        "warm_step_p50_ms": median([ms for ms, is_cold in zip(steps, cold, strict=True) if not is_cold]),
        "cold_step_p50_ms": median([ms for ms, is_cold in zip(steps, cold, strict=True) if is_cold]),
        "prefill_ms": row["prefill_ms"],
        "decode_ms": row["decode_ms"],
        "profiler_step_ms": row["profiler_step_ms"],
        # Start + stop + export of the image's sessions: the last stop may fall after its last step.
        "profiler_sessions_ms": sum(
            row.get(name) or 0.0 for name in ("profiler_start_ms", "profiler_stop_ms", "profiler_export_ms")
        ),
    }


def _capture(args: argparse.Namespace, images: list[Path], name: str) -> dict[str, Any]:
    flags, env = VARIANTS[name]
    out = args.out / f"run-{name}"
    command = [sys.executable, "-m", "dsocr.cli", "capture", *map(str, images), "--out", str(out)]
    command += ["--model", str(args.model), "--device", args.device, "--max-new-tokens", str(args.tokens), *flags]
    environment = {**os.environ, **env}
    start = time.perf_counter()
    with out.with_suffix(".log").open("w") as log:
        # cwd outside the repository: its dsocr/ folder would shadow the installed package.
        status = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=args.out, check=False
        )
    wall_s = time.perf_counter() - start
    if status.returncode != 0:
        raise VariantFailed(name, status.returncode, out.with_suffix(".log"))
    rows = [row for row in read_predictions(out).to_pylist() if row["status"] == ImageStatus.ok]
    images_figures = [_image_figures(row) for row in sorted(rows, key=lambda row: row["image_index"])]
    steady = images_figures[1:] or images_figures
    run = read_run_json(out)
    return {
        "variant": name,
        "flags": flags,
        "env": env,
        "process_wall_seconds": wall_s,
        "capture_seconds": run.capture_seconds,
        "profiler_env": run.profiler_env,
        "images": images_figures,
        "steady_untraced_step_p50_ms": median([i["untraced_step_p50_ms"] for i in steady if i["untraced_step_p50_ms"]]),
        "steady_traced_step_p50_ms": median([i["traced_step_p50_ms"] for i in steady if i["traced_step_p50_ms"]]),
        "steady_step_p50_ms": median([i["step_p50_ms"] for i in steady]),
        "first_image_step_p50_ms": images_figures[0]["step_p50_ms"],
        "profiler_step_ms_per_image": median([i["profiler_step_ms"] or 0.0 for i in images_figures]),
        "profiler_sessions_ms_per_image": median([i["profiler_sessions_ms"] for i in images_figures]),
        "profiler_start_stop_export_ms_per_image": [
            median([row.get(name) or 0.0 for row in rows])
            for name in ("profiler_start_ms", "profiler_stop_ms", "profiler_export_ms")
        ],
        "trace_events": sum(row["trace_events"] or 0 for row in rows),
        "kernel_timestamps": kernels_before_launch(out) if args.device == "cuda" else None,
    }


def _lost_sessions(kernels: dict[str, int] | None) -> str:
    """Profiler sessions without a kernel, of all sessions (``-`` without kernels in the trace)."""
    return "-" if kernels is None else f"{kernels['chunks_without_kernels']}/{kernels['chunks']}"


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.3f}"


def _table(results: dict[str, Any]) -> str:
    variants = results["variants"]
    off = variants.get("off")
    base_step = off["steady_step_p50_ms"] if off else None
    base_wall = off["capture_seconds"] if off else None
    lines = [
        f"{results['model']} on {results['device']}, {results['tokens']} new tokens, {results['image_count']} images; "
        "steady = images 2..N; ratios against `off` of this run",
        f"{'variant':<36}{'untraced ms':>12}{'x off':>7}{'traced ms':>11}{'x off':>7}{'1st img ms':>11}"
        f"{'capture s':>10}{'x off':>7}{'prof ms/img':>12}{'cold':>6}{'early krn':>10}{'no-krn sess':>12}",
    ]
    for name, row in variants.items():
        untraced = row["steady_untraced_step_p50_ms"]
        traced = row["steady_traced_step_p50_ms"]
        early = row["kernel_timestamps"]
        profiler_ms = row.get("profiler_sessions_ms_per_image") or row["profiler_step_ms_per_image"]
        lines.append(
            f"{name:<36}{untraced or 0:>12.2f}{_ratio(untraced, base_step):>7}{traced or 0:>11.2f}"
            f"{_ratio(traced, base_step):>7}{row['first_image_step_p50_ms']:>11.2f}{row['capture_seconds']:>10.2f}"
            f"{_ratio(row['capture_seconds'], base_wall):>7}{profiler_ms:>12.1f}"
            f"{sum(image['cold_steps'] for image in row['images']):>6}"
            f"{'-' if early is None else early['start_before_launch']:>10}"
            f"{_lost_sessions(early):>12}"
        )
    lines += [f"{name:<36}failed (exit {row['returncode']}): {row['log']}" for name, row in results["failed"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=EMBEDDED_CONFIG, help="architecture config (.json)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--images", type=Path, nargs="*", help="default: dsocr's three sample pages")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dsocr-bench-fidelity"))
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args()
    args.model = args.model.resolve()  # captures run with their cwd in --out
    args.out.mkdir(parents=True, exist_ok=True)
    images = args.images or write_sample_images(args.out / "samples")
    results: dict[str, Any] = {
        "model": args.model.name,
        "device": args.device,
        "tokens": args.tokens,
        "image_count": len(images),
        "variants": {},
        "failed": {},
    }
    for name in args.variants.split(","):
        try:
            results["variants"][name] = _capture(args, images, name)
            print(f"{name}: done", flush=True)
        except VariantFailed as failure:  # one refused backend must not cost the variants after it
            results["failed"][name] = failure.record
            print(failure, flush=True)
        if args.json:  # partial results survive a run cut short
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    results["table"] = _table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])


if __name__ == "__main__":
    main()
