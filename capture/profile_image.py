"""Profile one image: encode, generate under the profiler with ranges and clock, build its row."""

from __future__ import annotations

import hashlib
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from dsocr.capture.attention import NO_KERNEL_MESSAGE, sdpa_backend
from dsocr.capture.clock import clock_for
from dsocr.capture.config import CaptureConfig
from dsocr.capture.limits import TokenCap, resolve_cap, stop_reason
from dsocr.capture.models import LoadedModel, decode_text, encode, image_token_count
from dsocr.capture.ngram import NoRepeatNGram, allowed_token_ids
from dsocr.capture.pdf import RenderedPage, is_pdf, load_input, parse_page_key, store_page
from dsocr.capture.static_cache import DYNAMIC, DecodePath, compiled_graphs, generate_on
from dsocr.capture.timeline import ImageTimeline
from dsocr.capture.tracing import ImageTrace, TraceWriter
from PIL import Image
from transformers import LogitsProcessorList, StoppingCriteriaList

from dsocr.errors import BadInputError
from dsocr.loops import find_loop, loop_decode_ms
from dsocr.records import PredictionRow
from dsocr.rundir import content_sha256, path_md5
from dsocr.vocab import NS_PER_MS, ImageStatus, StopReason

KIB_PER_MIB = 1024
BYTES_PER_MIB = 1024 * KIB_PER_MIB


class ShapeHistory:
    """The decode sequence lengths this process has already run.

    Kernels that plan per shape (cuDNN's SDPA builds a plan for each new sequence length) are
    slow the first time a length is seen in a process; a step at such a length is *cold*.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def decode_lengths(self, prompt_tokens: int, steps: int) -> list[int]:
        """The key/value length of decode steps 1..steps (step K attends over prompt + K tokens)."""
        return [prompt_tokens + step for step in range(1, steps + 1)]

    def mark_cold(self, lengths: list[int]) -> list[bool]:
        """Which of ``lengths`` this process had not run before; remembers them all."""
        cold = [length not in self._seen for length in lengths]
        self._seen.update(lengths)
        return cold


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def input_image(config: CaptureConfig, image_path: Path) -> tuple[Image.Image, RenderedPage | None]:
    """The RGB image of a capture input (an image file, or a PDF page rendered at ``config.dpi``)."""
    return load_input(image_path, dpi=config.dpi, selection=config.page_selection)


def logits_processors(config: CaptureConfig, loaded: LoadedModel, prompt_tokens: int) -> LogitsProcessorList:
    """The processors every generate of the capture runs: the library's extra ones, then the guard."""
    processors = LogitsProcessorList(config.extra_logits_processors)
    if config.no_repeat_ngram is not None:
        allowed = allowed_token_ids(loaded.processor.tokenizer, tuple(config.ngram_allow))
        processors.append(NoRepeatNGram(config.no_repeat_ngram, config.ngram_window, allowed, prompt_tokens))
    return processors


def guard_host_ms(processors: LogitsProcessorList) -> float | None:
    """Host ms the ``--no-repeat-ngram`` guard's own calls took during the image (None: guard off)."""
    guards = [processor for processor in processors if isinstance(processor, NoRepeatNGram)]
    return sum(guard.host_ns for guard in guards) / NS_PER_MS if guards else None


def _source_columns(image_path: Path) -> PredictionRow:
    """source_path and page of an input that failed, when it is a PDF or one of its pages."""
    key = parse_page_key(image_path)
    if key is not None:
        return {"source_path": str(key[0]), "page": key[1]}  # type: ignore[typeddict-item]
    return {"source_path": str(image_path)} if is_pdf(image_path) else {}  # type: ignore[typeddict-item]


def input_sha256(image_path: Path, page: RenderedPage | None) -> str | None:
    """The content hash ``dsocr compare`` pairs pages by: sha256 of an image file's bytes; for a
    PDF page, of its PDF's bytes' hash and its page number (the same page of the same PDF)."""
    if page is None:
        return content_sha256(image_path)
    pdf = content_sha256(page.pdf)
    return None if pdf is None else hashlib.sha256(f"{pdf}#page={page.page}".encode()).hexdigest()


def peak_gpu_mib(device: torch.device) -> float | None:
    """Peak memory torch's caching allocator handed out on ``device`` in this process so far
    (weights, cache, activations; not the allocator's reserve), or None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / BYTES_PER_MIB


def failed_row(config: CaptureConfig, image_index: int, image_path: Path, error: str, rank: int) -> PredictionRow:
    """The prediction row of an image that could not be processed."""
    return {
        "image_index": image_index,
        "image_path": str(image_path),
        "image_md5": path_md5(image_path),
        "image_sha256": content_sha256(image_path),
        "status": ImageStatus.failed,
        "error": error,
        "prompt": config.prompt,
        "max_new_tokens_requested": config.max_new_tokens,
        "stop_reason": StopReason.error,
        "profile_mode": config.profile.value,
        "rank": rank,
        "started_unix_ns": time.time_ns(),
        **_source_columns(image_path),
    }


def _generate(
    loaded: LoadedModel,
    inputs: dict[str, Any],
    cap: TokenCap,
    timeline: ImageTimeline,
    config: CaptureConfig,
    decode: DecodePath,
    processors: LogitsProcessorList,
) -> torch.LongTensor:
    hooks = []

    def on_text_forward(module: torch.nn.Module, args: tuple) -> None:
        timeline.on_text_forward(module, args)
        # Vision is over at the decoder's first forward: no hook of ours stays on a module for
        # decode, whose step torch.compile may trace (a hook changing per image would recompile).
        for hook in hooks:
            hook.remove()

    hooks += [
        loaded.vision_module.register_forward_pre_hook(timeline.on_vision_forward),
        loaded.text_module.register_forward_pre_hook(on_text_forward),
    ]
    try:
        with sdpa_backend(config.sdpa_backend):
            timeline.begin()
            return generate_on(
                loaded,
                decode,
                inputs,
                cap.max_new_tokens,
                stopping_criteria=StoppingCriteriaList([timeline]),
                logits_processor=processors,
            )
    except BaseException:
        timeline.abandon()
        raise
    finally:
        for hook in hooks:
            hook.remove()


def check_backend_runs(loaded: LoadedModel, image_path: Path, config: CaptureConfig) -> None:
    """One unrecorded token under ``--sdpa-backend``: refuse the run with one line when some
    attention of the model (the vision encoder's included) has no kernel in that backend."""
    inputs = encode(loaded, input_image(config, image_path)[0], config.prompt)
    try:
        with warnings.catch_warnings(), sdpa_backend(config.sdpa_backend):
            # torch explains each disabled backend in a warning before it raises.
            warnings.simplefilter("ignore")
            generate_on(loaded, DYNAMIC, inputs, 1)
    except RuntimeError as exc:
        if NO_KERNEL_MESSAGE not in str(exc):
            raise
        raise BadInputError(
            f"--sdpa-backend {config.sdpa_backend.value}: some attention of this model has no such kernel "
            f"on {loaded.device.type} ({str(exc).strip().splitlines()[0]})"
        ) from None


def warm_up(loaded: LoadedModel, image_path: Path, config: CaptureConfig, shapes: ShapeHistory) -> None:
    """One generate outside any range or profiler, so one-time costs (CUDA context, cuBLAS
    handles, allocator growth) do not land in the first image's timings. It warms only the
    decode lengths it runs (its prompt + 1 .. + tokens - 1): ``shapes`` remembers them."""
    inputs = encode(loaded, input_image(config, image_path)[0], config.prompt)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    # Never past the model's context (the CLI refused more tokens than the context up front; the
    # prompt's length is known only now): transformers would go on generating past it.
    context = loaded.context_limit.tokens
    tokens = config.warmup_tokens if context is None else max(1, min(config.warmup_tokens, context - prompt_tokens))
    with sdpa_backend(config.sdpa_backend):
        output = generate_on(
            loaded,
            DYNAMIC,
            inputs,
            tokens,
            logits_processor=logits_processors(config, loaded, prompt_tokens),
        )
    shapes.mark_cold(shapes.decode_lengths(prompt_tokens, int(output.shape[1]) - prompt_tokens - 1))


def profile_image(
    *,
    config: CaptureConfig,
    loaded: LoadedModel,
    tracer: TraceWriter,
    image_index: int,
    image_path: Path,
    rank: int,
    shapes: ShapeHistory,
    decode: DecodePath = DYNAMIC,
) -> tuple[PredictionRow, ImageTrace, TokenCap]:
    """Run one image; return its row (without trace_events), its trace futures and its cap.

    Raises ImageReadError or BadInputError for a bad image or a prompt that fills the context.
    """
    started_unix_ns = time.time_ns()
    # The image's wall time starts before its file is read or rendered (image_ms, reference clock).
    clock = clock_for(loaded.device)
    image_start = clock.mark()
    # A PDF page is rendered (render_ms) and stored for emit here, before every stage's range.
    image, page = input_image(config, image_path)
    if page is not None:
        store_page(config.out, image_path, image)
    inputs = encode(loaded, image, config.prompt)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    cap = resolve_cap(config.max_new_tokens, prompt_tokens, loaded.context_limit)
    decode.check_fits(prompt_tokens, cap.max_new_tokens)
    # Built (the allowed tokens looked up) before the profiler and the stages, like the cache reset.
    processors = logits_processors(config, loaded, prompt_tokens)
    decode.reset()  # before the profiler and the clock: emptying the cache is no stage's work
    graphs_before = compiled_graphs()
    with torch.inference_mode(), tracer.profile_image(image_index) as (profiler_step, image_trace):
        timeline = ImageTimeline(
            image_index=image_index,
            clock=clock,
            profiler_step=profiler_step,
            max_new_tokens=cap.max_new_tokens,
            eos_token_id=loaded.eos_token_id,
            decode_in_trace=tracer.decode_fits_one_cycle(cap.max_new_tokens, image_index),
        )
        output_ids = _generate(loaded, inputs, cap, timeline, config, decode, processors)
    # After the profiler stopped: what the image cost end to end, profiler included.
    image_end = clock.mark()
    times = timeline.times()  # settles the clock: every mark, image_end included, has its time
    graphs = compiled_graphs() - graphs_before
    generated = output_ids[0, prompt_tokens:].tolist()
    if len(generated) != timeline.generated_tokens:
        raise RuntimeError(f"generate returned {len(generated)} tokens, the timeline saw {timeline.generated_tokens}")
    steps = len(times.decode_step_ms)
    loop = find_loop(generated, eos_token_id=loaded.eos_token_id)
    seq_lens = shapes.decode_lengths(prompt_tokens, steps)
    # A static cache attends over its whole length at every step: one shape for the whole run.
    shape_lens = seq_lens if decode.cache_length is None else [decode.cache_length] * steps
    row: PredictionRow = {
        "image_index": image_index,
        "image_path": str(image_path),
        "image_md5": path_md5(image_path),
        "status": ImageStatus.ok,
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
        "decode_step_seq_len": seq_lens,
        "decode_step_cold": shapes.mark_cold(shape_lens),
        "decode_step_traced": [tracer.traces_step(step, image_index) for step in range(1, steps + 1)],
        "timing_clock": clock.name,
        "profile_mode": config.profile.value,
        "rank": rank,
        "started_unix_ns": started_unix_ns,
        "profiler_step_ms": times.profiler_step_ms,
        "peak_rss_mib": peak_rss_mib(),
        "compiled_graphs": graphs if decode.is_static else None,
        "loop_start_step": None if loop is None else loop.start,
        "loop_period_tokens": None if loop is None else loop.period,
        "loop_ms": None if loop is None else loop_decode_ms(times.decode_step_ms, loop.start),
        "image_ms": clock.elapsed_ms(image_start, image_end),
        "image_sha256": input_sha256(image_path, page),
        "ngram_guard_ms": guard_host_ms(processors),
    }
    if page is not None:
        row.update(source_path=str(page.pdf), page=page.page, page_count=page.page_count, render_ms=page.render_ms)
    return row, image_trace, cap
