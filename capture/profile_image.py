"""Profile one image: encode, generate under the profiler with ranges and clock, build its row."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import torch
from dsocr.capture.clock import clock_for
from dsocr.capture.config import CaptureConfig
from dsocr.capture.images import load_image
from dsocr.capture.limits import STOP_ERROR, TokenCap, resolve_cap, stop_reason
from dsocr.capture.models import LoadedModel, decode_text, encode, greedy_generate, image_token_count
from dsocr.capture.timeline import ImageTimeline
from dsocr.capture.tracing import ImageTrace, TraceWriter
from transformers import StoppingCriteriaList

from dsocr.rundir import path_md5

KIB_PER_MIB = 1024


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def failed_row(config: CaptureConfig, image_index: int, image_path: Path, error: str, rank: int) -> dict[str, Any]:
    """The prediction row of an image that could not be processed."""
    return {
        "image_index": image_index,
        "image_path": str(image_path),
        "image_md5": path_md5(image_path),
        "status": "failed",
        "error": error,
        "prompt": config.prompt,
        "max_new_tokens_requested": config.max_new_tokens,
        "stop_reason": STOP_ERROR,
        "profile_mode": config.profile.value,
        "rank": rank,
        "started_unix_ns": time.time_ns(),
    }


def _generate(loaded: LoadedModel, inputs: dict[str, Any], cap: TokenCap, timeline: ImageTimeline) -> torch.LongTensor:
    hooks = [
        loaded.vision_module.register_forward_pre_hook(timeline.on_vision_forward),
        loaded.text_module.register_forward_pre_hook(timeline.on_text_forward),
    ]
    try:
        timeline.begin()
        return greedy_generate(loaded, inputs, cap.max_new_tokens, stopping_criteria=StoppingCriteriaList([timeline]))
    except BaseException:
        timeline.abandon()
        raise
    finally:
        for hook in hooks:
            hook.remove()


def warm_up(loaded: LoadedModel, image_path: Path, prompt: str, tokens: int) -> None:
    """One generate outside any range or profiler, so one-time costs (CUDA context, cuBLAS
    handles, allocator growth) do not land in the first image's timings."""
    greedy_generate(loaded, encode(loaded, load_image(image_path), prompt), tokens)


def profile_image(
    *,
    config: CaptureConfig,
    loaded: LoadedModel,
    tracer: TraceWriter,
    image_index: int,
    image_path: Path,
    rank: int,
) -> tuple[dict[str, Any], ImageTrace, TokenCap]:
    """Run one image; return its row (without trace_events), its trace futures and its cap.

    Raises ImageReadError or BadInputError for a bad image or a prompt that fills the context.
    """
    started_unix_ns = time.time_ns()
    image = load_image(image_path)
    inputs = encode(loaded, image, config.prompt)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    cap = resolve_cap(config.max_new_tokens, prompt_tokens, loaded.context_limit)
    clock = clock_for(loaded.device)
    with torch.inference_mode(), tracer.profile_image(image_index) as (profiler_step, image_trace):
        timeline = ImageTimeline(
            image_index=image_index,
            clock=clock,
            profiler_step=profiler_step,
            max_new_tokens=cap.max_new_tokens,
            eos_token_id=loaded.eos_token_id,
            decode_in_trace=tracer.decode_fits_one_cycle(cap.max_new_tokens),
        )
        output_ids = _generate(loaded, inputs, cap, timeline)
    times = timeline.times()
    generated = output_ids[0, prompt_tokens:].tolist()
    if len(generated) != timeline.generated_tokens:
        raise RuntimeError(f"generate returned {len(generated)} tokens, the timeline saw {timeline.generated_tokens}")
    row = {
        "image_index": image_index,
        "image_path": str(image_path),
        "image_md5": path_md5(image_path),
        "status": "ok",
        "width": image.width,
        "height": image.height,
        "prompt": config.prompt,
        "text_raw": decode_text(loaded, generated),
        "prompt_tokens": prompt_tokens,
        "image_tokens": image_token_count(loaded, inputs["input_ids"]),
        "generated_tokens": len(generated),
        "max_new_tokens_requested": config.max_new_tokens,
        "max_new_tokens_resolved": cap.max_new_tokens,
        "stop_reason": stop_reason(len(generated), timeline.last_token_is_eos, cap),
        "vision_ms": times.vision_ms,
        "prefill_ms": times.prefill_ms,
        "decode_ms": times.decode_ms,
        "decode_step_ms": times.decode_step_ms,
        "timing_clock": clock.name,
        "profile_mode": config.profile.value,
        "rank": rank,
        "started_unix_ns": started_unix_ns,
        "profiler_step_ms": times.profiler_step_ms,
        "peak_rss_mib": peak_rss_mib(),
    }
    return row, image_trace, cap
