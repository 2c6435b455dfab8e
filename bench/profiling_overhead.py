"""What profiling costs, measured in one process on one loaded model, modes interleaved.

Per repetition and image, in rotating order: a plain HF generate; the same generate with
dsocr's per-step ranges, hooks and clock but no profiler (`--profile off`); and full
captures in `off`, `sampled` and `full` mode. Interleaving matters: on the H200 the same
generate varies by tens of percent between runs minutes apart, far more than the effects
measured here. Prints a table; --json writes every figure.

    python bench/profiling_overhead.py --model bench/configs/deepseek-ocr2-full.json --device cuda \
        --tokens 128 --repeats 2 --json results.json
    python bench/profiling_overhead.py --device cpu --tokens 16 --repeats 1   # dry run, tiny model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from dsocr.capture.config import CaptureConfig, Device  # noqa: E402
from dsocr.capture.images import load_image  # noqa: E402
from dsocr.capture.models import LoadedModel, encode, greedy_generate, load_model, resolve_prompt  # noqa: E402
from dsocr.capture.profile_image import profile_image  # noqa: E402
from dsocr.capture.runner import run  # noqa: E402
from dsocr.capture.samples import write_sample_images  # noqa: E402
from dsocr.capture.tracing import TraceWriter  # noqa: E402

from dsocr.rundir import read_predictions, read_run_json, trace_files  # noqa: E402
from dsocr.vocab import ProfileMode  # noqa: E402

EMBEDDED_CONFIG = ROOT / "capture" / "embedded" / "tiny-deepseek-ocr2.json"
KIB = 1024
CAPTURE_MODES = (ProfileMode.off, ProfileMode.sampled, ProfileMode.full)
WARMUP_TOKENS = 8


def _sync(loaded: LoadedModel) -> None:
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()


def _plain_generate_s(loaded: LoadedModel, image: Path, config: CaptureConfig) -> float:
    _sync(loaded)
    start = time.perf_counter()
    greedy_generate(loaded, encode(loaded, load_image(image), config.prompt), config.max_new_tokens)
    _sync(loaded)
    return time.perf_counter() - start


def _ranges_generate_s(loaded: LoadedModel, image: Path, config: CaptureConfig, scratch: Path) -> float:
    tracer = TraceWriter(config, scratch, loaded.device, rank=0)
    _sync(loaded)
    start = time.perf_counter()
    profile_image(config=config, loaded=loaded, tracer=tracer, image_index=0, image_path=image, rank=0)
    _sync(loaded)
    elapsed = time.perf_counter() - start
    tracer.close()
    return elapsed


def _capture(loaded: LoadedModel, images: list[Path], config: CaptureConfig, out: Path) -> dict[str, Any]:
    """One capture run over every image, as a user would run it."""
    shutil.rmtree(out, ignore_errors=True)
    run(dataclasses.replace(config, images=tuple(map(str, images)), out=out), loaded=loaded)
    rows = read_predictions(out).to_pylist()
    return {
        "capture_seconds": read_run_json(out).capture_seconds,
        "decode_ms_per_token": [row["decode_ms"] / max(len(row["decode_step_ms"]), 1) for row in rows],
        "prefill_ms": [row["prefill_ms"] for row in rows],
        "generated_tokens": sum(row["generated_tokens"] for row in rows),
        "trace_events": sum(row["trace_events"] or 0 for row in rows),
        "json_bytes": sum(row["trace_json_bytes"] or 0 for row in rows),
        "parquet_bytes": sum(path.stat().st_size for path in trace_files(out)),
        "peak_rss_mib": [row["peak_rss_mib"] for row in rows],
    }


def _ratio_summary(numerators: list[float], denominators: list[float]) -> dict[str, float]:
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "n": len(ratios)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    images = args.images or write_sample_images(out / "samples")
    base = CaptureConfig(
        images=(), out=out / "unused", model=args.model, device=Device(args.device),
        max_new_tokens=args.tokens, profile=ProfileMode.off,
    )  # fmt: skip
    loaded = load_model(base)
    base = dataclasses.replace(base, prompt=resolve_prompt(base, loaded.family))
    # Warm-up: CUDA context, cuBLAS handles, allocator.
    greedy_generate(loaded, encode(loaded, load_image(images[0]), base.prompt), WARMUP_TOKENS)
    samples: dict[str, list[Any]] = {"plain_s": [], "ranges_s": [], **{m.value: [] for m in CAPTURE_MODES}}
    kinds = ["plain", *(m.value for m in CAPTURE_MODES)]
    for repeat in range(args.repeats):
        shift = repeat % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            if kind in ("plain", "ranges"):
                # Plain and ranges-only alternate image by image: their ratio is the finest figure.
                for image_number, image in enumerate(images):
                    plain_s = _plain_generate_s(loaded, image, base)
                    ranges_s = _ranges_generate_s(loaded, image, base, out / "scratch")
                    samples["plain_s"].append((image_number, repeat, plain_s))
                    samples["ranges_s"].append((image_number, repeat, ranges_s))
                if kind == "ranges":
                    continue
            else:
                config = dataclasses.replace(base, profile=ProfileMode(kind))
                samples[kind].append((repeat, _capture(loaded, images, config, out / f"run-{kind}")))
            print(f"repeat {repeat} {kind} done", flush=True)
    return {"images": [str(p) for p in images], "model": loaded.describe(), "samples": samples, "args": vars(args)}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    samples = raw["samples"]
    plain = [seconds for *_, seconds in samples["plain_s"]]
    summary: dict[str, Any] = {
        "ranges_vs_plain_generate": _ratio_summary([s for *_, s in samples["ranges_s"]], plain),
        "modes": {},
    }
    off_seconds = [result["capture_seconds"] for *_, result in samples["off"]]
    for mode in CAPTURE_MODES:
        results = [result for *_, result in samples[mode.value]]
        tokens = sum(result["generated_tokens"] for result in results)
        json_bytes = sum(result["json_bytes"] for result in results)
        parquet_bytes = sum(result["parquet_bytes"] for result in results)
        summary["modes"][mode.value] = {
            "decode_ms_per_token_median": statistics.median(ms for r in results for ms in r["decode_ms_per_token"]),
            "capture_vs_off": _ratio_summary([r["capture_seconds"] for r in results], off_seconds),
            "events_per_token": sum(r["trace_events"] for r in results) / tokens,
            "json_kib_per_token": json_bytes / tokens / KIB,
            "parquet_kib_per_token": parquet_bytes / tokens / KIB,
            "parquet_over_json": parquet_bytes / json_bytes if json_bytes else None,
            "peak_rss_mib_per_capture": [r["peak_rss_mib"] for r in results],
        }
    return summary


def table(raw: dict[str, Any], summary: dict[str, Any]) -> str:
    model = raw["model"]
    ranges = summary["ranges_vs_plain_generate"]
    lines = [
        f"{model['id']} ({model['parameters'] / 1e9:.2f} B params, {model['dtype']}) on {model['device']}: "
        f"{raw['args']['tokens']} new tokens, {len(raw['images'])} images x {raw['args']['repeats']} repeats, "
        "modes interleaved",
        f"per-step ranges + clock, no profiler, vs plain generate (wall): median {ranges['median']:.3f}x "
        f"(min {ranges['min']:.3f}, max {ranges['max']:.3f}, n={ranges['n']})",
        f"{'mode':<9}{'decode ms/tok':>14}{'capture vs off':>16}{'events/tok':>12}{'JSON KiB/tok':>14}"
        f"{'Parquet KiB/tok':>17}{'Parquet/JSON':>14}",
    ]
    for mode, row in summary["modes"].items():
        ratio = row["parquet_over_json"]
        lines.append(
            f"{mode:<9}{row['decode_ms_per_token_median']:>14.2f}{row['capture_vs_off']['median']:>16.3f}"
            f"{row['events_per_token']:>12.0f}{row['json_kib_per_token']:>14.1f}{row['parquet_kib_per_token']:>17.2f}"
            f"{'-' if ratio is None else f'{ratio:.4f}':>14}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=EMBEDDED_CONFIG, help="architecture config (.json)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=Path, nargs="*", help="default: dsocr's three sample pages")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dsocr-bench-overhead"))
    parser.add_argument("--json", type=Path, help="write raw samples, summary and table here")
    args = parser.parse_args()
    raw = measure(args)
    summary = summarize(raw)
    text = table(raw, summary)
    if args.json:
        args.json.write_text(json.dumps({**raw, "summary": summary, "table": text}, indent=2, default=str) + "\n")
    print(text)


if __name__ == "__main__":
    main()
