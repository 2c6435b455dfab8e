"""The typed records of a run directory: run.json (``RunRecord``) and a prediction row (``PredictionRow``).

run.json is built in one place per writer (capture, import) from these frozen dataclasses and
read back through ``RunRecord.from_json``, which validates: a run.json that is not an object,
lacks a required key or holds a wrong type is a one-line RunDirError, never a KeyError later.
Keys are documented in docs/run-format.md; a test keeps that table in sync with this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypedDict

from dsocr import __version__
from dsocr._json_reader import JsonReader, to_json
from dsocr.errors import SchemaMismatchError
from dsocr.schema import SCHEMA_VERSION
from dsocr.vocab import ImageStatus, ProfileMode, RunKind, RunStatus, StopReason, TimingClock

# -- run.json ----------------------------------------------------------------------------------

#: Where older run.json files kept the device's name (now ``model.device_name``); read, never written.
_LEGACY_DEVICE_NAME = "device_name"


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    """run.json ``model``: the model a run used. Only ``id`` is known for every run."""

    id: str
    #: The model family (the HF config's ``model_type``); emit dispatches on it.
    family: str | None = None
    #: ``checkpoint`` or ``random-weights``.
    source: str | None = None
    config_sha256: str | None = None
    dtype: str | None = None
    device: str | None = None
    parameters: int | None = None
    context_limit: int | None = None
    context_limit_source: str | None = None
    eos_token_id: int | None = None
    #: The attention implementation in effect (transformers' ``_attn_implementation``, e.g. sdpa).
    attn_implementation: str | None = None
    #: The loaded HF config's ``to_dict()`` (JSON-able): layer counts and sizes for roofline models.
    architecture: dict[str, Any] | None = None
    #: What ran it: ``torch.cuda.get_device_name`` (e.g. "NVIDIA H200") on CUDA, the CPU's name otherwise.
    device_name: str | None = None
    #: What an embedded trained model says about itself: what it is, its training and evaluation figures.
    about: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, reader: JsonReader) -> ModelRecord:
        return cls(
            id=reader.text("id", required=True),
            family=reader.text("family"),
            source=reader.text("source"),
            config_sha256=reader.text("config_sha256"),
            dtype=reader.text("dtype"),
            device=reader.text("device"),
            parameters=reader.integer("parameters"),
            context_limit=reader.integer("context_limit"),
            context_limit_source=reader.text("context_limit_source"),
            eos_token_id=reader.integer("eos_token_id"),
            attn_implementation=reader.text("attn_implementation"),
            architecture=reader.mapping("architecture"),
            device_name=reader.text("device_name"),
            about=reader.mapping("about"),
        )

    @classmethod
    def from_describe(cls, facts: dict[str, Any]) -> ModelRecord:
        """From a loaded model's ``describe()`` dict; a key this record does not know is a bug there."""
        return cls(**facts)


@dataclass(frozen=True, kw_only=True)
class ImageCounts:
    """run.json ``images``: how many images the run has, and how many were processed or failed."""

    total: int
    ok: int = 0
    failed: int = 0

    @classmethod
    def from_json(cls, reader: JsonReader) -> ImageCounts:
        counts = cls(
            total=reader.integer("total", required=True, minimum=0),
            ok=reader.integer("ok", required=True, minimum=0),
            failed=reader.integer("failed", required=True, minimum=0),
        )
        if counts.ok + counts.failed > counts.total:
            raise reader.fail_whole(
                f"ok ({counts.ok}) + failed ({counts.failed}) must be at most total ({counts.total})"
            )
        return counts


@dataclass(frozen=True, kw_only=True)
class SamplingRecord:
    """run.json ``config.sampling``: which decode steps sampled profiling traces."""

    first_steps: int
    window_steps: int
    window_every: int

    @classmethod
    def from_json(cls, reader: JsonReader) -> SamplingRecord:
        return cls(
            first_steps=reader.integer("first_steps", required=True),
            window_steps=reader.integer("window_steps", required=True),
            window_every=reader.integer("window_every", required=True),
        )


@dataclass(frozen=True, kw_only=True)
class ConfigRecord:
    """run.json ``config``: every resolved capture option (``max_new_tokens`` None means inf)."""

    images: tuple[str, ...]
    out: str
    model: str | None
    device: str
    dtype: str | None
    prompt: str
    max_new_tokens: int | None
    profile: ProfileMode
    sampling: SamplingRecord
    full_chunk_steps: int
    seed: int
    warmup_tokens: int
    #: ``window`` (one profiler session per traced window) or ``image``; null in runs before it.
    profiler_sessions: str | None = None
    #: The torch SDPA backend allowed (``auto``: torch chooses); null in runs before it.
    sdpa_backend: str | None = None
    #: transformers' attn_implementation (null: the model's default).
    attn_implementation: str | None = None
    #: Whether the profiler recorded shapes and FLOP counts; null in runs before the option.
    with_flops: bool | None = None
    #: Whether torch's chrome-trace JSON was kept under trace/kineto/; null in runs before the option.
    keep_kineto: bool | None = None
    #: ``dynamic`` or ``static`` (``--cache``); null in runs before it (dynamic).
    cache: str | None = None
    #: ``auto`` or ``off`` (``--compile``); null in runs before it.
    compile: str | None = None
    #: Every Nth image traced (``--trace-images``); null in runs before it (every image: 1).
    trace_images: int | None = None
    #: PDF pages' render resolution (``--dpi``) and the pages selected (``--pages``, null: all);
    #: dpi null in runs before it.
    dpi: int | None = None
    pages: str | None = None
    #: The no-repeat n-gram guard (``--no-repeat-ngram``; null: off), its window and the tokens
    #: it lets repeat; window and allow null in runs before the option.
    no_repeat_ngram: int | None = None
    ngram_window: int | None = None
    ngram_allow: tuple[str, ...] | None = None

    #: Options that change what is measured: a resumed run must match them.
    FINGERPRINT = (
        "model",
        "device",
        "dtype",
        "prompt",
        "max_new_tokens",
        "profile",
        "sampling",
        "full_chunk_steps",
        "seed",
        "warmup_tokens",
        "profiler_sessions",
        "sdpa_backend",
        "attn_implementation",
        "with_flops",
        "cache",
        "compile",
        "trace_images",
        "dpi",
        "pages",
        "no_repeat_ngram",
        "ngram_window",
        "ngram_allow",
    )

    def differing(self, other: ConfigRecord | None) -> list[str]:
        """The fingerprint options in which ``other`` differs from this config (all, for None)."""
        if other is None:
            return list(self.FINGERPRINT)
        return [key for key in self.FINGERPRINT if self._compared(key) != other._compared(key)]

    def _compared(self, key: str) -> Any:
        # A run recorded before --trace-images traced every image: null and 1 are the same run.
        value = getattr(self, key)
        return (value or 1) if key == "trace_images" else value

    @property
    def traced_every(self) -> int:
        """N of ``--trace-images N`` (1 for runs recorded before the option)."""
        return self.trace_images or 1

    @classmethod
    def from_json(cls, reader: JsonReader) -> ConfigRecord:
        return cls(
            images=reader.strings("images") or (),
            out=reader.text("out", required=True),
            model=reader.text("model"),
            device=reader.text("device", required=True),
            dtype=reader.text("dtype"),
            prompt=reader.text("prompt", required=True),
            max_new_tokens=reader.integer("max_new_tokens"),
            profile=reader.choice("profile", ProfileMode),
            sampling=SamplingRecord.from_json(reader.child("sampling", required=True)),
            full_chunk_steps=reader.integer("full_chunk_steps", required=True),
            seed=reader.integer("seed", required=True),
            warmup_tokens=reader.integer("warmup_tokens", required=True),
            profiler_sessions=reader.text("profiler_sessions"),
            sdpa_backend=reader.text("sdpa_backend"),
            attn_implementation=reader.text("attn_implementation"),
            with_flops=reader.boolean("with_flops"),
            keep_kineto=reader.boolean("keep_kineto"),
            cache=reader.text("cache"),
            compile=reader.text("compile"),
            trace_images=reader.integer("trace_images"),
            dpi=reader.integer("dpi"),
            pages=reader.text("pages"),
            no_repeat_ngram=reader.integer("no_repeat_ngram"),
            ngram_window=reader.integer("ngram_window"),
            ngram_allow=reader.strings("ngram_allow"),
        )


@dataclass(frozen=True, kw_only=True)
class StaticCacheRecord:
    """run.json ``static_cache``: the one static cache of a ``--cache static`` run and its warm-up."""

    #: Positions of the cache (every image of the run decodes into it).
    length: int
    #: ``context_limit``, ``largest_prompt_plus_max_new_tokens`` or ``largest_prompt_plus_fallback_ceiling``.
    length_source: str
    #: Whether decode ran compiled (torch.compile compiled graphs during the warm-up).
    compiled: bool
    #: The torch.compile backend that compiled it (``inductor``: transformers' default); null when not compiled.
    compile_backend: str | None = None
    #: Why decode did not run compiled under ``--compile auto`` (e.g. on cpu); null otherwise.
    compile_note: str | None = None
    #: Tokens the warm-up generated, and its wall seconds (compilation and CUDA-graph capture included).
    warmup_tokens: int = 0
    warmup_seconds: float = 0.0
    #: Seconds torch.compile spent compiling during the warm-up (part of warmup_seconds).
    compile_seconds: float = 0.0
    #: Graphs torch.compile compiled during the warm-up.
    warmup_graphs: int = 0

    @classmethod
    def from_json(cls, reader: JsonReader) -> StaticCacheRecord:
        return cls(
            length=reader.integer("length", required=True),
            length_source=reader.text("length_source", required=True),
            compiled=bool(reader.boolean("compiled")),
            compile_backend=reader.text("compile_backend"),
            compile_note=reader.text("compile_note"),
            warmup_tokens=reader.integer("warmup_tokens") or 0,
            warmup_seconds=reader.number("warmup_seconds") or 0.0,
            compile_seconds=reader.number("compile_seconds") or 0.0,
            warmup_graphs=reader.integer("warmup_graphs") or 0,
        )


@dataclass(frozen=True, kw_only=True)
class RankRecord:
    """One entry of run.json ``ranks``: what one process captured in the last session."""

    rank: int
    images: int
    capture_seconds: float | None = None
    #: Peak memory torch's allocator handed out on the rank's GPU (MiB, whole process: warm-up and
    #: compilation included); null off CUDA.
    peak_gpu_mib: float | None = None

    @classmethod
    def from_json(cls, reader: JsonReader) -> RankRecord:
        return cls(
            rank=reader.integer("rank", required=True),
            images=reader.integer("images", required=True),
            capture_seconds=reader.number("capture_seconds"),
            peak_gpu_mib=reader.number("peak_gpu_mib"),
        )


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """run.json. Every key is always written; keys that do not apply to a run's kind are null.

    Required when read: schema_version, kind, dsocr_version, status, model.id and images.
    """

    schema_version: int = SCHEMA_VERSION
    kind: RunKind
    dsocr_version: str = __version__
    status: RunStatus
    model: ModelRecord
    images: ImageCounts
    # Captures only.
    argv: tuple[str, ...] | None = None
    config: ConfigRecord | None = None
    packages: dict[str, str | None] | None = None
    image_paths: tuple[str, ...] | None = None
    world_size: int = 1
    ranks: tuple[RankRecord, ...] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    resumed_at: tuple[str, ...] = ()
    capture_seconds: float | None = None
    warnings: tuple[str, ...] = ()
    #: Profiled captures: profiler environment settings in force (TEARDOWN_CUPTI).
    profiler_env: dict[str, str | None] | None = None
    #: ``--cache static`` captures: the run's static cache and its warm-up (else null).
    static_cache: StaticCacheRecord | None = None
    #: ``--no-repeat-ngram`` captures: host µs per decode step the guard's own calls took, over
    #: every decode step of the run's ok images (predictions' ngram_guard_ms); else null.
    ngram_guard_us_per_step: float | None = None
    # Imports only.
    source: str | None = None
    created_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object written as run.json."""
        return to_json(self)

    @classmethod
    def from_json(cls, payload: Any, *, source: str = "run.json") -> RunRecord:
        """Validate and type a parsed run.json; RunDirError (or SchemaMismatchError) names what is wrong."""
        reader = JsonReader(payload, source)
        version = payload.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaMismatchError(
                f"{source}: schema version {version!r}, this dsocr reads version {SCHEMA_VERSION}"
            )
        config = reader.child("config")
        ranks = reader.children("ranks")
        packages = reader.mapping("packages")
        static_cache = reader.child("static_cache")
        model = ModelRecord.from_json(reader.child("model", required=True))
        if model.device_name is None:
            # Runs written before model.device_name kept it at the top level of run.json.
            model = dataclasses.replace(model, device_name=reader.text(_LEGACY_DEVICE_NAME))
        return cls(
            kind=reader.choice("kind", RunKind),
            dsocr_version=reader.text("dsocr_version", required=True),
            status=reader.choice("status", RunStatus),
            model=model,
            images=ImageCounts.from_json(reader.child("images", required=True)),
            argv=reader.strings("argv"),
            config=None if config is None else ConfigRecord.from_json(config),
            packages=packages,
            image_paths=reader.strings("image_paths"),
            world_size=reader.integer("world_size", minimum=1) or 1,
            ranks=None if ranks is None else tuple(RankRecord.from_json(rank) for rank in ranks),
            started_at=reader.text("started_at"),
            finished_at=reader.text("finished_at"),
            resumed_at=reader.strings("resumed_at") or (),
            capture_seconds=reader.number("capture_seconds"),
            warnings=reader.strings("warnings") or (),
            profiler_env=reader.mapping("profiler_env"),
            static_cache=None if static_cache is None else StaticCacheRecord.from_json(static_cache),
            ngram_guard_us_per_step=reader.number("ngram_guard_us_per_step"),
            source=reader.text("source"),
            created_at=reader.text("created_at"),
        )


# -- prediction rows ---------------------------------------------------------------------------


class _RequiredPredictionKeys(TypedDict):
    """The non-nullable columns of predictions.parquet: every row has them."""

    image_index: int
    image_path: str
    image_md5: str
    status: ImageStatus


class PredictionRow(_RequiredPredictionKeys, total=False):
    """One row of predictions.parquet (schema.PREDICTIONS), as capture and import build it.

    The keys are the schema's columns, in order; a test keeps the two equal. Absent keys are
    written as nulls; ``rundir.rows_to_table`` refuses a key that is not a column.
    """

    error: str | None
    width: int | None
    height: int | None
    prompt: str | None
    text_raw: str | None
    prompt_tokens: int | None
    image_tokens: int | None
    generated_tokens: int | None
    max_new_tokens_requested: int | None
    max_new_tokens_resolved: int | None
    stop_reason: StopReason | None
    vision_ms: float | None
    prefill_ms: float | None
    decode_ms: float | None
    decode_step_ms: list[float] | None
    timing_clock: TimingClock | None
    profile_mode: ProfileMode | None
    trace_events: int | None
    rank: int | None
    started_unix_ns: int | None
    profiler_step_ms: float | None
    trace_json_bytes: int | None
    peak_rss_mib: float | None
    decode_step_seq_len: list[int] | None
    decode_step_cold: list[bool] | None
    decode_step_traced: list[bool] | None
    profiler_start_ms: float | None
    profiler_stop_ms: float | None
    profiler_export_ms: float | None
    compiled_graphs: int | None
    source_path: str | None
    page: int | None
    page_count: int | None
    render_ms: float | None
    loop_start_step: int | None
    loop_period_tokens: int | None
    loop_ms: float | None
    image_ms: float | None
    image_sha256: str | None
    ngram_guard_ms: float | None
