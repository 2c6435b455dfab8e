"""What the optimized decode path buys, and what profiling it costs: dynamic vs static cache.

Each variant is its own `dsocr capture` process on the same pages: the dynamic cache (the eager
path) and the static cache compiled as transformers compiles it (`--compile auto`: inductor with
CUDA graphs on cuda), each under `--profile off`, `sampled` and `full`, plus the static cache
uncompiled (`--compile off`). For each: decode ms/token (median of the steady images' step
medians, untraced and traced steps apart), TTFT (prefill), the first image apart, compile and
warm-up seconds, graphs compiled per image (recompilations), capture seconds, kernels starting
before their launch; then `dsocr analyze` per run for GPU busy and kernels per traced step and
the count of kernels launched by CUDA graphs. Ratios: static over dynamic under `off` (what the
change buys), and every profiled variant over `off` of its own cache kind (sampled untraced steps
should stay within 1.05x).

On the H200 (each command under the device's 10-minute limit):

    python bench/static_cache.py --model bench/configs/deepseek-ocr2-full.json --device cuda --tokens 128 \\
        --json bench/results/h200-static-cache-128.json
    python bench/static_cache.py --model bench/configs/deepseek-ocr2-full.json --device cuda --tokens 512 \\
        --variants dynamic-off,dynamic-sampled,static-off,static-sampled --json bench/results/h200-static-cache-512.json

On a CPU (the embedded tiny model; transformers does not compile there, so `static-*` runs an
uncompiled static cache and says so): `python bench/static_cache.py --tokens 24`.
`--export-trace` also writes the trace of `static-full` as Chrome JSON, for Holistic Trace Analysis.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from dsocr.capture.samples import write_sample_images
from run_figures import VariantFailed, kernels_before_launch, median, step_medians

from dsocr.rundir import read_predictions, read_run_json, trace_files
from dsocr.vocab import ImageStatus

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_CONFIG = ROOT / "capture" / "embedded" / "tiny-deepseek-ocr2.json"
#: The fidelity target: untraced steps of a sampled run against `off` of the same path.
UNTRACED_TARGET = 1.05

#: name -> capture flags.
VARIANTS: dict[str, list[str]] = {
    "dynamic-off": ["--cache", "dynamic", "--profile", "off"],
    "dynamic-sampled": ["--cache", "dynamic", "--profile", "sampled"],
    "dynamic-full": ["--cache", "dynamic", "--profile", "full"],
    "static-off": ["--cache", "static", "--compile", "auto", "--profile", "off"],
    "static-sampled": ["--cache", "static", "--compile", "auto", "--profile", "sampled"],
    "static-full": ["--cache", "static", "--compile", "auto", "--profile", "full"],
    "static-nocompile-off": ["--cache", "static", "--compile", "off", "--profile", "off"],
}
DEFAULT_VARIANTS = ",".join(VARIANTS)


def _image_figures(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "image_index": row["image_index"],
        "prompt_tokens": row["prompt_tokens"],
        "generated_tokens": row["generated_tokens"],
        "stop_reason": row["stop_reason"],
        "ttft_ms": row["prefill_ms"],
        **step_medians(row),
        "cold_steps": sum(row.get("decode_step_cold") or []),
        "compiled_graphs": row.get("compiled_graphs"),
        "profiler_step_ms": row["profiler_step_ms"],
    }


def _dsocr(args: list[str], log: Path, cwd: Path, variant: str) -> None:
    with log.open("a") as handle:
        # cwd outside the repository: its dsocr/ folder would shadow the installed package.
        status = subprocess.run(
            [sys.executable, "-m", "dsocr.cli", *args], stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, check=False
        )
    if status.returncode != 0:
        raise VariantFailed(f"{variant} ({args[0]})", status.returncode, log)


def _analysis(run_dir: Path, log: Path, variant: str) -> dict[str, Any]:
    """GPU figures per traced step and the CUDA-graph count, from `dsocr analyze`."""
    _dsocr(["analyze", str(run_dir)], log, run_dir.parent, variant)
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    steps = pq.read_table(run_dir / "analysis" / "steps.parquet").to_pylist()
    busy = [row["gpu_busy_ms"] for row in steps if row["gpu_busy_ms"] is not None]
    kernels = [row["kernel_count"] for row in steps if row["kernel_count"] is not None]
    coverage = summary.get("coverage", {})
    return {
        "traced_steps": len(steps),
        "step_gpu_busy_p50_ms": median(busy),
        "step_kernels_p50": median(kernels),
        "gpu_ops_shared_launch": coverage.get("gpu_ops_shared_launch"),
        "gpu_ops_without_launch": coverage.get("gpu_ops_without_launch"),
        "gpu_ops_outside_ranges": coverage.get("gpu_ops_outside_ranges"),
    }


def _capture(args: argparse.Namespace, images: list[Path], name: str, tokens: int) -> dict[str, Any]:
    out = args.out / f"run-{name}-{tokens}"
    log = out.with_suffix(".log")
    command = ["capture", *map(str, images), "--out", str(out), "--model", str(args.model)]
    command += ["--device", args.device, "--max-new-tokens", str(tokens), *VARIANTS[name]]
    start = time.perf_counter()
    _dsocr(command, log, args.out, name)
    wall_s = time.perf_counter() - start
    rows = [row for row in read_predictions(out).to_pylist() if row["status"] == ImageStatus.ok]
    figures = [_image_figures(row) for row in sorted(rows, key=lambda row: row["image_index"])]
    steady = figures[1:] or figures
    run = read_run_json(out)
    kernels = (kernels_before_launch(out) or {}) if args.device == "cuda" else {}
    result: dict[str, Any] = {
        "variant": name,
        "tokens": tokens,
        "flags": VARIANTS[name],
        "process_wall_seconds": wall_s,
        "capture_seconds": run.capture_seconds,
        "static_cache": None if run.static_cache is None else dataclasses.asdict(run.static_cache),
        "profiler_env": run.profiler_env,
        "warnings": list(run.warnings),
        "images": figures,
        "steady_step_p50_ms": median([image["step_p50_ms"] for image in steady if image["step_p50_ms"]]),
        "steady_untraced_step_p50_ms": median(
            [image["untraced_step_p50_ms"] for image in steady if image["untraced_step_p50_ms"]]
        ),
        "steady_traced_step_p50_ms": median(
            [image["traced_step_p50_ms"] for image in steady if image["traced_step_p50_ms"]]
        ),
        "ttft_p50_ms": median([image["ttft_ms"] for image in steady]),
        "first_image_step_p50_ms": figures[0]["step_p50_ms"] if figures else None,
        "recompiled_images": sum(1 for image in figures if image["compiled_graphs"]),
        "kernels_start_before_launch": kernels.get("start_before_launch"),
        # Profiler sessions that recorded no kernel (full mode's later ones on the H200: docs/performance.md).
        "sessions_without_kernels": kernels.get("chunks_without_kernels"),
    }
    if trace_files(out) and not args.no_analyze:
        result["analysis"] = _analysis(out, log, name)
    if args.export_trace and name == "static-full":
        _dsocr(["export-trace", str(out), "--image", "1"], log, args.out, name)
    return result


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def _summary(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ratios the issue asks for, per token count."""
    result: dict[str, Any] = {}
    for tokens in sorted({row["tokens"] for row in variants.values()}):
        mine = {row["variant"]: row for row in variants.values() if row["tokens"] == tokens}
        figures: dict[str, Any] = {}
        dynamic_off, static_off = mine.get("dynamic-off"), mine.get("static-off")
        if dynamic_off and static_off:
            figures["static_over_dynamic_step_off"] = _ratio(
                static_off["steady_step_p50_ms"], dynamic_off["steady_step_p50_ms"]
            )
            figures["static_over_dynamic_ttft_off"] = _ratio(static_off["ttft_p50_ms"], dynamic_off["ttft_p50_ms"])
        for name, row in mine.items():
            kind, _, profile = name.partition("-")
            base = mine.get(f"{kind}-off")
            if profile in ("sampled", "full") and base:
                untraced = _ratio(row["steady_untraced_step_p50_ms"], base["steady_step_p50_ms"])
                figures[f"{name}_untraced_over_off"] = untraced
                figures[f"{name}_traced_over_off"] = _ratio(
                    row["steady_traced_step_p50_ms"], base["steady_step_p50_ms"]
                )
                if profile == "sampled" and untraced is not None:
                    figures[f"{name}_untraced_within_target"] = untraced <= UNTRACED_TARGET
        result[str(tokens)] = figures
    return result


def _table(variants: dict[str, dict[str, Any]], failed: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'variant':<22}{'tok':>5}{'step ms':>9}{'untraced':>10}{'traced':>9}{'TTFT ms':>9}{'1st img':>9}"
        f"{'compile s':>10}{'warm-up s':>10}{'recomp':>7}{'graph krn':>10}{'early':>7}",
    ]
    for row in variants.values():
        static = row["static_cache"] or {}
        analysis = row.get("analysis") or {}

        def cell(value: float | None, width: int, digits: int = 2) -> str:
            return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

        lines.append(
            f"{row['variant']:<22}{row['tokens']:>5}{cell(row['steady_step_p50_ms'], 9)}"
            f"{cell(row['steady_untraced_step_p50_ms'], 10)}{cell(row['steady_traced_step_p50_ms'], 9)}"
            f"{cell(row['ttft_p50_ms'], 9, 1)}{cell(row['first_image_step_p50_ms'], 9)}"
            f"{cell(static.get('compile_seconds'), 10, 1)}{cell(static.get('warmup_seconds'), 10, 1)}"
            f"{row['recompiled_images']:>7}{analysis.get('gpu_ops_shared_launch', '-'):>10}"
            f"{'-' if row['kernels_start_before_launch'] is None else row['kernels_start_before_launch']:>7}"
        )
    lines += [f"{name:<27}failed (exit {row['returncode']}): {row['log']}" for name, row in failed.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=EMBEDDED_CONFIG, help="architecture config (.json)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", default="24", help="comma-separated new-token counts, e.g. 128,512")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--images", type=Path, nargs="*", help="default: dsocr's three sample pages")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dsocr-bench-static-cache"))
    parser.add_argument("--json", type=Path, help="write all figures here")
    parser.add_argument("--no-analyze", action="store_true", help="skip `dsocr analyze` of the profiled runs")
    parser.add_argument("--export-trace", action="store_true", help="Chrome JSON of static-full's image 1 (for HTA)")
    args = parser.parse_args()
    args.model = args.model.resolve()  # captures run with their cwd in --out
    args.out.mkdir(parents=True, exist_ok=True)
    images = [path.resolve() for path in args.images] if args.images else write_sample_images(args.out / "samples")
    results: dict[str, Any] = {"model": args.model.name, "device": args.device, "image_count": len(images)}
    variants: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    for tokens in (int(text) for text in args.tokens.split(",")):
        for name in args.variants.split(","):
            try:
                variants[f"{name}@{tokens}"] = _capture(args, images, name, tokens)
                print(f"{name} @ {tokens} tokens: done", flush=True)
            except VariantFailed as failure:  # recorded; the variants after it still run
                failed[f"{name}@{tokens}"] = failure.record
                print(failure, flush=True)
            results["variants"] = variants
            results["failed"] = failed
            if args.json:  # partial results survive a run cut short
                args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    results["summary"] = _summary(variants)
    results["table"] = _table(variants, failed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(results["table"])
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
