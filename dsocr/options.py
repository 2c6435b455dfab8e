"""Closed choices and defaults of the command-line options, named once for the CLI and the stages.

The CLI declares its options from these names without importing a stage, so that
``dsocr --help`` (and every process that re-imports the CLI) loads no numpy, pyarrow or torch.
The stages import the same names, so a default cannot differ between the CLI and the library.
This module imports nothing but the standard library and ``dsocr.vocab`` (the closed sets that
also appear in run files, e.g. ``ProfileMode``, live there and are re-exported here).
"""

from __future__ import annotations

import enum

# Re-exported: the CLI declares --profile from it; the set itself is run-file vocabulary.
from dsocr.vocab import ProfileMode as ProfileMode

# ---- capture ----
INF_TOKEN = "inf"
#: The model family of `dsocr import` outputs unless --family says otherwise (dsocr/families.py).
DEFAULT_FAMILY = "deepseek_ocr2"
DEFAULT_PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
DEFAULT_MAX_NEW_TOKENS = INF_TOKEN
DEFAULT_FIRST_STEPS = 8
DEFAULT_WINDOW_STEPS = 4
DEFAULT_WINDOW_EVERY = 64
DEFAULT_FULL_CHUNK_STEPS = 64
#: Trace every image (``--trace-images N`` traces image 0, N, 2N, ...; every image is still timed).
DEFAULT_TRACE_IMAGES = 1
DEFAULT_SEED = 0
DEFAULT_GPUS = 1
DEFAULT_WARMUP_TOKENS = 0
#: PDF pages are rendered at this many dots per inch: the vendor's PDF script renders at 144.
DEFAULT_DPI = 144
#: ``--no-repeat-ngram``: the n-gram size of the vendor's vLLM recipe (off unless given).
VENDOR_NO_REPEAT_NGRAM = 30
#: ``--ngram-window``: how many of the latest generated tokens the guard searches (the vendor's 90).
DEFAULT_NGRAM_WINDOW = 90
#: ``--ngram-allow``: tokens the guard lets repeat (the vendor's: table cells).
DEFAULT_NGRAM_ALLOW = ("<td>", "</td>")


class ProfilerSessions(enum.StrEnum):
    """How profiler sessions map onto an image: one per traced window (default) or one per image."""

    window = "window"
    image = "image"


class SdpaBackend(enum.StrEnum):
    """Which torch scaled_dot_product_attention backend may run (auto: torch chooses)."""

    auto = "auto"
    cudnn = "cudnn"
    flash = "flash"
    efficient = "efficient"
    math = "math"


class CacheKind(enum.StrEnum):
    """The key/value cache generate decodes with: transformers' DynamicCache (grows per token) or a
    StaticCache (one fixed length for the whole run, what compilation and CUDA graphs need)."""

    dynamic = "dynamic"
    static = "static"


class CompileMode(enum.StrEnum):
    """Whether a static cache's decode is compiled: ``auto`` does what transformers does (it
    compiles with CUDA graphs on cuda, never on cpu), ``off`` keeps the static cache uncompiled."""

    auto = "auto"
    off = "off"


class Device(enum.StrEnum):
    cpu = "cpu"
    cuda = "cuda"


class DType(enum.StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


# ---- sweep ----
#: The capture options `dsocr sweep --vary` may name: those that change how the model runs. The
#: CLI offers only those this `dsocr capture` has (an option a version lacks is left out).
VARY_CANDIDATES = (
    "cache",
    "compile",
    "sdpa-backend",
    "attn-implementation",
    "dtype",
    "no-repeat-ngram",
    "max-new-tokens",
)
#: Options every capture of a sweep gets from the sweep itself: none may be passed or varied.
SWEEP_OWNED = ("out", "profile", "resume")

# ---- analyze ----
#: Kernels and operators kept per stage and kind (``--top``).
DEFAULT_TOP = 10
#: Kernels and operators with the largest changes kept per kind (``dsocr compare --top``).
DEFAULT_TOP_DELTAS = 10

# ---- emit and import ----
#: Root of the per-image folders, relative to the run (``--viz-dir``; also rundir.VIZ_DIR).
VIZ_DIR = "viz"
DEFAULT_QUALITY = 90  # JPEG quality; above the vendor's 75 so small print stays legible
#: run.json model.id of an import when ``--model-id`` is not given.
DEFAULT_MODEL_ID = "unknown"
