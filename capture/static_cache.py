"""The decode path of a run: transformers' dynamic cache, or one static cache (compiled or not).

With ``--cache static`` every image decodes into one ``StaticCache`` built once for the run, at
one length (the model's context, or the run's largest prompt plus ``--max-new-tokens``): its
tensors keep their shape and their addresses from image to image, so a compiled decode (and its
CUDA graphs, which replay fixed addresses) never recompiles for a new image. transformers
compiles the decode step itself when the cache is static and the device is one it compiles on
(``--compile auto``); ``--compile off`` passes ``disable_compile``. Compilation and CUDA-graph
capture happen in :func:`warm_up_static`, before the first image, outside every range and
profiler session; torch.compile's graph counter is read around each image so that a
recompilation inside the measured run is counted and flagged, never silently timed.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from dsocr.capture.attention import NO_KERNEL_MESSAGE, sdpa_backend
from dsocr.capture.config import CacheKind, CaptureConfig, CompileMode
from dsocr.capture.limits import FALLBACK_DECODE_CEILING
from dsocr.capture.models import LoadedModel, encode, greedy_generate
from dsocr.capture.pdf import load_input
from PIL import Image
from torch._dynamo.exc import TorchDynamoException
from torch._dynamo.utils import compilation_time_metrics, counters
from transformers import CompileConfig, StaticCache

from dsocr.errors import BadInputError
from dsocr.records import StaticCacheRecord

#: Devices on which transformers compiles a static cache's decode by itself (its
#: ``_valid_auto_compile_criteria``): ``--compile auto`` elsewhere runs uncompiled, with a WARNING.
AUTO_COMPILE_DEVICES = frozenset({"cuda", "xpu"})
#: transformers' own default for an auto-compiled decode (CompileConfig's defaults).
DEFAULT_COMPILE_BACKEND = "inductor"
#: Decode steps of the warm-up: torch.compile traces on the first decode call, and inductor's
#: CUDA-graph trees run a compiled function eagerly once, record it on the second call and replay
#: from the third; a few more steps leave every one of them behind before the first image.
STATIC_WARMUP_TOKENS = 8
#: transformers >= 5.2x renamed generate's ``past_key_values`` to ``cache`` and warns on the old
#: name; the old name is the one every version this project supports (>= 5.17, < 6) accepts.
CACHE_KWARG = "past_key_values"
_RENAMED_KWARG_WARNING = ".*past_key_values.*is deprecated.*"
#: torch.compile's own figures: distinct graphs compiled so far, and seconds spent compiling.
_GRAPHS = ("stats", "unique_graphs")
_COMPILE_TIME = "_compile.compile_inner"
LENGTH_FROM_CONTEXT = "context_limit"
LENGTH_FROM_PROMPTS = "largest_prompt_plus_max_new_tokens"
LENGTH_FROM_FALLBACK = "largest_prompt_plus_fallback_ceiling"


def compiled_graphs() -> int:
    """Distinct graphs torch.compile has compiled in this process so far (a recompile adds one)."""
    group, key = _GRAPHS
    return int(counters[group][key])


def compile_seconds() -> float:
    """Seconds torch.compile has spent compiling in this process so far (Dynamo and its backend)."""
    return float(sum(compilation_time_metrics.get(_COMPILE_TIME, ())))


@dataclass(frozen=True)
class DecodePath:
    """How every image of the run decodes: what generate is called with, fixed before image 0."""

    cache: CacheKind
    #: The run's static cache (None on the dynamic path); reset before each image.
    static_cache: StaticCache | None = None
    #: Its positions (None on the dynamic path).
    length: int | None = None
    #: None: transformers' own choice (compiled on cuda, see AUTO_COMPILE_DEVICES).
    compile_config: CompileConfig | None = None
    disable_compile: bool = False
    #: What run.json records about it, once warmed up (None on the dynamic path).
    record: StaticCacheRecord | None = None

    @property
    def is_static(self) -> bool:
        return self.static_cache is not None

    @property
    def cache_length(self) -> int | None:
        return self.length

    def reset(self) -> None:
        """Empty the static cache for the next image (in place: the addresses stay)."""
        if self.static_cache is not None:
            with torch.inference_mode():
                self.static_cache.reset()

    def check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Refuse an image whose prompt and cap do not fit the run's static cache."""
        length = self.cache_length
        if length is not None and prompt_tokens + max_new_tokens - 1 > length:
            raise BadInputError(
                f"the prompt ({prompt_tokens} tokens) plus {max_new_tokens} new tokens does not fit "
                f"the run's static cache ({length} positions)"
            )

    def generate_kwargs(self) -> dict[str, Any]:
        """The extra keyword arguments of every generate call on this path."""
        if self.static_cache is None:
            return {}
        extra: dict[str, Any] = {CACHE_KWARG: self.static_cache, "disable_compile": self.disable_compile}
        if self.compile_config is not None:
            extra["compile_config"] = self.compile_config
        return extra


DYNAMIC = DecodePath(cache=CacheKind.dynamic)


def generate_on(
    loaded: LoadedModel, path: DecodePath, inputs: Mapping[str, Any], max_new_tokens: int, **extra: Any
) -> torch.Tensor:
    """``greedy_generate`` with ``path``'s keyword arguments. The static cache must be empty
    (``path.reset()``): the caller resets it, outside whatever it times."""
    if not path.is_static:  # the eager path exactly as before: no warning filter around it
        return greedy_generate(loaded, dict(inputs), max_new_tokens, **extra)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_RENAMED_KWARG_WARNING, category=FutureWarning)
        return greedy_generate(loaded, dict(inputs), max_new_tokens, **path.generate_kwargs(), **extra)


def check_static_support(loaded: LoadedModel) -> None:
    """Refuse ``--cache static`` with one line when transformers would not give this model one."""
    model_class = type(loaded.model)
    supports = getattr(model_class, "_supports_default_dynamic_cache", None)
    if supports is None or not supports():
        raise BadInputError(
            f"--cache static: {model_class.__name__} builds its own cache in generate "
            "(transformers ignores cache_implementation for it)"
        )


def _build_cache(loaded: LoadedModel, length: int) -> StaticCache:
    text_config = loaded.model.config.get_text_config(decoder=True)
    try:
        cache = StaticCache(config=text_config, max_cache_len=length)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise BadInputError(
            f"--cache static: transformers has no static cache for {type(loaded.model).__name__} "
            f"({str(exc).strip().splitlines()[0]})"
        ) from None
    if not cache.is_compileable:
        raise BadInputError(f"--cache static: the static cache of {type(loaded.model).__name__} is not compileable")
    return cache


def _image(path: Path, config: CaptureConfig) -> Image.Image:
    """The input's image (a PDF page rendered at ``--dpi``), as profile_image reads it."""
    return load_input(path, dpi=config.dpi, selection=config.page_selection)[0]


def _prompt_lengths(loaded: LoadedModel, images: Iterable[Path], config: CaptureConfig) -> list[int]:
    """Prompt tokens of each readable image (an unreadable one fails later, in its own row)."""
    assert config.prompt is not None, "the runner resolves the prompt first"
    lengths = []
    for path in images:
        try:
            lengths.append(int(encode(loaded, _image(path, config), config.prompt)["input_ids"].shape[1]))
        except Exception:  # any failure of one image (the processor's too): its own row says it
            continue
    return lengths


def static_cache_length(loaded: LoadedModel, images: Iterable[Path], config: CaptureConfig) -> tuple[int, str]:
    """One cache length for every image of the run, and where it came from.

    ``inf`` with a known context: the context (no image is encoded twice). A finite
    ``--max-new-tokens``: the run's largest prompt plus it, never past the context, so that
    attention does not run over more empty positions than the run can fill.
    """
    context = loaded.context_limit.tokens
    if config.max_new_tokens is None and context is not None:
        return context, LENGTH_FROM_CONTEXT
    assert config.prompt is not None, "the runner resolves the prompt first"
    largest = max(_prompt_lengths(loaded, images, config), default=0)
    if config.max_new_tokens is None:
        return largest + FALLBACK_DECODE_CEILING, LENGTH_FROM_FALLBACK
    wanted = largest + config.max_new_tokens
    if context is not None and wanted >= context:
        return context, LENGTH_FROM_CONTEXT
    return wanted, LENGTH_FROM_PROMPTS


def compile_note(config: CaptureConfig, device: torch.device, compiled: bool) -> str | None:
    """Why decode did or did not run compiled, when that is not simply what was asked."""
    if config.compile is CompileMode.off:
        return None
    if compiled:
        return None
    if device.type not in AUTO_COMPILE_DEVICES and config.compile_backend is None:
        return (
            f"--compile auto on {device.type}: transformers compiles a static cache's decode only on "
            f"{', '.join(sorted(AUTO_COMPILE_DEVICES))}; decode ran uncompiled (as with --compile off)"
        )
    return "--compile auto: transformers did not compile decode (no graph was compiled in the warm-up)"


def _compile_config(config: CaptureConfig) -> CompileConfig | None:
    """transformers' default, or a library caller's backend (e.g. ``eager`` to trace on a CPU)."""
    if config.compile is CompileMode.off or config.compile_backend is None:
        return None
    # CUDA graphs (reduce-overhead) are inductor's: another backend takes no mode.
    mode = "reduce-overhead" if config.compile_backend == DEFAULT_COMPILE_BACKEND else None
    compile_config = CompileConfig(backend=config.compile_backend, mode=mode)
    # transformers compiles only on the devices it trusts unless told so; a backend named by the
    # caller is that instruction.
    compile_config._compile_all_devices = True
    return compile_config


def warmup_tokens(path: DecodePath, inputs: Mapping[str, Any], config: CaptureConfig) -> int:
    """Tokens of the warm-up: enough to compile and capture, never more than the cache holds
    (generate writes prompt + tokens - 1 positions)."""
    wanted = max(config.warmup_tokens, STATIC_WARMUP_TOKENS)
    if path.length is None:
        return wanted
    room = path.length - int(inputs["input_ids"].shape[1]) + 1
    return max(1, min(wanted, room))


def _first_inputs(loaded: LoadedModel, images: Iterable[Path], config: CaptureConfig) -> dict[str, Any] | None:
    for image_path in images:
        try:
            return encode(loaded, _image(image_path, config), config.prompt or "")
        except Exception:  # any failure of one image (the processor's too): its own row says it
            continue
    return None


@dataclass(frozen=True)
class WarmUp:
    """What the static warm-up did: its tokens, wall seconds, graphs compiled, compile seconds."""

    tokens: int = 0
    seconds: float = 0.0
    graphs: int = 0
    compile_seconds: float = 0.0


def warm_up_static(loaded: LoadedModel, path: DecodePath, images: Iterable[Path], config: CaptureConfig) -> WarmUp:
    """One unrecorded generate on ``path`` (the first readable image of ``images``): compilation
    and CUDA-graph capture happen here, before the first image, with no range open and no
    profiler session."""
    inputs = _first_inputs(loaded, images, config)
    if inputs is None:
        return WarmUp()
    tokens = warmup_tokens(path, inputs, config)
    graphs, compiling = compiled_graphs(), compile_seconds()
    started = time.perf_counter()
    path.reset()
    try:
        with sdpa_backend(config.sdpa_backend):
            generate_on(loaded, path, inputs, tokens)
    except TorchDynamoException as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise BadInputError(
            f"--compile {config.compile.value}: torch.compile failed on this model "
            f"({type(exc).__name__}: {first_line}); --compile off runs the static cache uncompiled"
        ) from None
    except RuntimeError as exc:
        if NO_KERNEL_MESSAGE not in str(exc):
            raise
        raise BadInputError(
            f"--cache static with --sdpa-backend {config.sdpa_backend.value}: attention over a static cache "
            f"(masked) has no such kernel on {loaded.device.type}"
        ) from None
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    return WarmUp(
        tokens=tokens,
        seconds=time.perf_counter() - started,
        graphs=compiled_graphs() - graphs,
        compile_seconds=compile_seconds() - compiling,
    )


def prepare_decode(config: CaptureConfig, loaded: LoadedModel, images: list[Path], todo: list[Path]) -> DecodePath:
    """The run's decode path; for a static cache: checked, sized (over every image of the run,
    so all ranks agree), built, and warmed up (compiled) on the first image this process runs."""
    if config.cache is CacheKind.dynamic:
        return DYNAMIC
    check_static_support(loaded)
    length, source = static_cache_length(loaded, images, config)
    path = DecodePath(
        cache=CacheKind.static,
        static_cache=_build_cache(loaded, length),
        length=length,
        compile_config=_compile_config(config),
        disable_compile=config.compile is CompileMode.off,
    )
    warm = warm_up_static(loaded, path, todo, config)
    compiled = warm.graphs > 0
    record = StaticCacheRecord(
        length=length,
        length_source=source,
        compiled=compiled,
        compile_backend=(config.compile_backend or DEFAULT_COMPILE_BACKEND) if compiled else None,
        compile_note=compile_note(config, loaded.device, compiled),
        warmup_tokens=warm.tokens,
        warmup_seconds=warm.seconds,
        compile_seconds=warm.compile_seconds,
        warmup_graphs=warm.graphs,
    )
    return dataclasses.replace(path, record=record)
