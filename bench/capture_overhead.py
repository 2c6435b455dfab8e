"""What profiling costs: plain generate vs capture with --profile off, sampled and full, in one run.

Each configuration runs in its own process on the same images (peak host memory is that
process's ru_maxrss). Prints a table and writes every figure to --json.

    python bench/capture_overhead.py --model bench/configs/deepseek-ocr2-full.json --device cuda \
        --tokens 512 --out /tmp/bench-capture --json results.json
    python bench/capture_overhead.py --device cpu --tokens 32     # embedded tiny model, a dry run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsocr.capture.samples import write_sample_images  # noqa: E402

from dsocr.rundir import read_predictions, read_run_json, trace_files  # noqa: E402

EMBEDDED_CONFIG = ROOT / "capture" / "embedded" / "tiny-deepseek-ocr2.json"
KIB = 1024
MODES = ("off", "sampled", "full")
WARMUP_TOKENS = 8


def _run(command: list[str], log: Path) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak RSS MiB of that process)."""
    start = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}); see {log}")
    return time.perf_counter() - start, usage.ru_maxrss / KIB


def _capture(args: argparse.Namespace, images: list[Path], mode: str, out: Path, extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "dsocr.cli", "capture", *map(str, images), "--out", str(out)]
    command += ["--model", str(args.model), "--device", args.device, "--max-new-tokens", str(args.tokens)]
    command += ["--profile", mode, "--warmup-tokens", str(WARMUP_TOKENS), *extra]
    wall_s, peak_mib = _run(command, out.with_suffix(".log"))
    rows = [row for row in read_predictions(out).to_pylist() if row["status"] == "ok"]
    steps = sum(len(row["decode_step_ms"]) for row in rows)
    tokens = sum(row["generated_tokens"] for row in rows)
    events = sum(row["trace_events"] or 0 for row in rows)
    json_bytes = sum(row["trace_json_bytes"] or 0 for row in rows)
    parquet_bytes = sum(path.stat().st_size for path in trace_files(out))
    parquet_rows = sum(pq.ParquetFile(path).metadata.num_rows for path in trace_files(out))
    return {
        "mode": mode,
        "images": len(rows),
        "generated_tokens": tokens,
        "capture_seconds": read_run_json(out).capture_seconds,
        "process_wall_seconds": wall_s,
        "peak_rss_mib": peak_mib,
        "peak_rss_mib_after_each_image": [row["peak_rss_mib"] for row in rows],
        "decode_ms_per_token": statistics.median(row["decode_ms"] / len(row["decode_step_ms"]) for row in rows),
        "prefill_ms": statistics.median(row["prefill_ms"] for row in rows),
        "vision_ms": statistics.median(row["vision_ms"] for row in rows),
        "profiler_step_ms": sum(row["profiler_step_ms"] or 0 for row in rows),
        "decode_steps": steps,
        "trace_events": events,
        "trace_rows_in_parquet": parquet_rows,
        "events_per_token": events / tokens,
        "json_bytes_per_token": json_bytes / tokens,
        "parquet_bytes_per_token": parquet_bytes / tokens,
        "parquet_over_json": parquet_bytes / json_bytes if json_bytes else None,
        "stop_reasons": sorted({row["stop_reason"] for row in rows}),
    }


def _plain(args: argparse.Namespace, images: list[Path], out: Path) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / "plain_generate.py"), "--model", str(args.model)]
    command += ["--device", args.device, "--tokens", str(args.tokens), *map(str, images)]
    log = out / "plain.log"
    wall_s, peak_mib = _run(command, log)
    result = json.loads(log.read_text().strip().splitlines()[-1])
    per_image = result["images"]
    return {
        "mode": "plain generate",
        "decode_ms_per_token": statistics.median(image["decode_ms_per_token"] for image in per_image),
        "first_token_ms": statistics.median(image["first_token_ms"] for image in per_image),
        "prompt_tokens": [image["prompt_tokens"] for image in per_image],
        "generated_tokens": sum(image["generated_tokens"] for image in per_image),
        "process_wall_seconds": wall_s,
        "peak_rss_mib": peak_mib,
    }


def _table(results: dict[str, Any]) -> str:
    plain, modes = results["plain"], results["modes"]
    off = modes["off"]
    lines = [
        f"model {results['model']} on {results['device']}, {results['tokens']} new tokens, "
        f"{len(results['images'])} images, prompt tokens {plain['prompt_tokens']}",
        f"{'mode':<15}{'ms/token':>10}{'vs plain':>10}{'capture s':>11}{'vs off':>8}"
        f"{'events/tok':>12}{'JSON KB/tok':>13}{'Parquet KB/tok':>16}{'PQ/JSON':>9}{'RSS MiB':>9}",
        f"{'plain generate':<15}{plain['decode_ms_per_token']:>10.2f}{1:>10.3f}{'':>11}{'':>8}"
        f"{'':>12}{'':>13}{'':>16}{'':>9}{plain['peak_rss_mib']:>9.0f}",
    ]
    for mode in MODES:
        row = modes[mode]
        ratio = row["parquet_over_json"]
        lines.append(
            f"{mode:<15}{row['decode_ms_per_token']:>10.2f}"
            f"{row['decode_ms_per_token'] / plain['decode_ms_per_token']:>10.3f}"
            f"{row['capture_seconds']:>11.1f}{row['capture_seconds'] / off['capture_seconds']:>8.2f}"
            f"{row['events_per_token']:>12.0f}{row['json_bytes_per_token'] / KIB:>13.1f}"
            f"{row['parquet_bytes_per_token'] / KIB:>16.2f}{'' if ratio is None else f'{ratio:.3f}':>9}"
            f"{row['peak_rss_mib']:>9.0f}"
        )
    growth = modes["full"]["peak_rss_mib_after_each_image"]
    lines.append(
        "full-mode capture peak RSS after each image (MiB): "
        + ", ".join(f"{mib:.0f}" for mib in growth)
        + f" (last/first {growth[-1] / growth[0]:.3f})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=EMBEDDED_CONFIG, help="architecture config (.json)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--images", type=Path, nargs="*", help="default: dsocr's three sample pages")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dsocr-bench-capture"))
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    images = args.images or write_sample_images(args.out / "samples")
    results: dict[str, Any] = {
        "model": args.model.name,
        "device": args.device,
        "tokens": args.tokens,
        "images": [str(path) for path in images],
        "plain": _plain(args, images, args.out),
        "modes": {},
    }
    for mode in MODES:
        results["modes"][mode] = _capture(args, images, mode, args.out / f"run-{mode}", [])
        if args.json:  # partial results survive a run cut short
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    table = _table(results)
    results["table"] = table
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
