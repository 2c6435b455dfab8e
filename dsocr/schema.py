"""Every Parquet schema of a run directory, in one place, with its version.

Each file written by dsocr carries ``dsocr.table`` and ``dsocr.schema_version`` in its
Parquet key-value metadata; readers call :func:`check_table` and refuse anything else.
The column meanings are documented in ``docs/run-format.md``.
"""

from __future__ import annotations

import pyarrow as pa

from dsocr.errors import SchemaMismatchError

#: Bumped whenever a column is removed, renamed or changes meaning. Adding a nullable
#: column at the end does not bump it. The version of run.json and the trace; predictions,
#: analyze's outputs (tables and summary.json) and info.json have their own, below and in emit.
SCHEMA_VERSION = 1
#: predictions.parquet: 2 since PDF pages (``image_path`` may be a page key ``<pdf>#page=<N>``,
#: not a file; ``page`` set). Version 1 tables (images only) are read as they are.
PREDICTIONS_VERSION = 2

TABLE_KEY = b"dsocr.table"
VERSION_KEY = b"dsocr.schema_version"


#: The version of what ``dsocr analyze`` writes (timings, kernels, roofline, steps, summary.json):
#: 2 since stage times come from the reference clock and trace-only figures say so
#: (``*_traced``, per traced step).
ANALYSIS_SCHEMA_VERSION = 2
#: The tables ``dsocr analyze`` writes (ANALYSIS_SCHEMA_VERSION).
ANALYSIS_TABLES = ("timings", "kernels", "roofline", "steps")


def table_version(name: str) -> int:
    """The schema version dsocr writes for table ``name``."""
    if name == "predictions":
        return PREDICTIONS_VERSION
    return ANALYSIS_SCHEMA_VERSION if name in ANALYSIS_TABLES else SCHEMA_VERSION


#: Versions each reader accepts: the one written, and older ones it still reads unchanged.
READABLE_VERSIONS: dict[str, frozenset[int]] = {"predictions": frozenset({1, PREDICTIONS_VERSION})}


def _versioned(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={TABLE_KEY: name.encode(), VERSION_KEY: str(table_version(name)).encode()})


_DICT_STRING = pa.dictionary(pa.int32(), pa.string())

#: One row per image of a capture (or an import).
PREDICTIONS = _versioned(
    "predictions",
    [
        pa.field("image_index", pa.int32(), nullable=False),
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("image_md5", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("prompt", pa.string()),
        pa.field("text_raw", pa.string()),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("image_tokens", pa.int32()),
        pa.field("generated_tokens", pa.int32()),
        pa.field("max_new_tokens_requested", pa.int32()),
        pa.field("max_new_tokens_resolved", pa.int32()),
        pa.field("stop_reason", pa.string()),
        pa.field("vision_ms", pa.float64()),
        pa.field("prefill_ms", pa.float64()),
        pa.field("decode_ms", pa.float64()),
        pa.field("decode_step_ms", pa.list_(pa.float64())),
        pa.field("timing_clock", pa.string()),
        pa.field("profile_mode", pa.string()),
        pa.field("trace_events", pa.int64()),
        pa.field("rank", pa.int32()),
        pa.field("started_unix_ns", pa.int64()),
        pa.field("profiler_step_ms", pa.float64()),
        pa.field("trace_json_bytes", pa.int64()),
        pa.field("peak_rss_mib", pa.float64()),
        # Per decode step (aligned with decode_step_ms): key/value length, whether that length was
        # new to the capturing process (cold), whether the profiler recorded the step.
        pa.field("decode_step_seq_len", pa.list_(pa.int32())),
        pa.field("decode_step_cold", pa.list_(pa.bool_())),
        pa.field("decode_step_traced", pa.list_(pa.bool_())),
        # Host ms of the image's profiler sessions (window sessions): start, stop (Kineto collects
        # the events), export of chrome JSON. Outside every step timing; inside profiler_step_ms.
        pa.field("profiler_start_ms", pa.float64()),
        pa.field("profiler_stop_ms", pa.float64()),
        pa.field("profiler_export_ms", pa.float64()),
        # --cache static: graphs torch.compile compiled while this image ran (0 expected; more is a
        # recompilation inside its timings). Null on the dynamic path.
        pa.field("compiled_graphs", pa.int32()),
        # PDF pages (version 2): the PDF (absolute), the page (1-based), the PDF's page count, and
        # the host ms rendering the page took, before and outside every timed range. Null for images.
        pa.field("source_path", pa.string()),
        pa.field("page", pa.int32()),
        pa.field("page_count", pa.int32()),
        pa.field("render_ms", pa.float64()),
        # A repetition loop at the end of the output (dsocr.loops.find_loop), null when none: the
        # decode step producing its first token, its unit in tokens, and the decode ms (reference
        # clock) from that step to the end.
        pa.field("loop_start_step", pa.int32()),
        pa.field("loop_period_tokens", pa.int32()),
        pa.field("loop_ms", pa.float64()),
        # The image's wall time on the reference clock, from reading its file to the profiler
        # stopped after its last token: vision + prefill_text + decode + other (docs/run-format.md).
        pa.field("image_ms", pa.float64()),
        # sha256 of the image file's bytes: the same page at another path pairs in `dsocr compare`.
        pa.field("image_sha256", pa.string()),
        # Host ms the --no-repeat-ngram guard's own calls took during the image's generate (inside
        # its decode steps, so already part of decode_step_ms); null when the guard was off.
        pa.field("ngram_guard_ms", pa.float64()),
    ],
)

#: One row per complete ('X') event of a torch.profiler (Kineto) trace.
TRACE = _versioned(
    "trace",
    [
        pa.field("image_index", pa.int32(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("chunk", pa.int32(), nullable=False),
        pa.field("cat", _DICT_STRING, nullable=False),
        pa.field("name", _DICT_STRING, nullable=False),
        pa.field("ts_ns", pa.int64(), nullable=False),
        pa.field("dur_ns", pa.int64(), nullable=False),
        pa.field("pid", pa.int64()),
        pa.field("tid", pa.int64()),
        pa.field("device", pa.int32()),
        pa.field("stream", pa.int32()),
        pa.field("correlation", pa.int64()),
        pa.field("external_id", pa.int64()),
        pa.field("range_stage", _DICT_STRING),
        pa.field("range_step", pa.int32()),
        # The profiler's FLOP estimate of a cpu_op (with_flops, --profile full only); null otherwise.
        pa.field("flops", pa.int64()),
    ],
)

#: One row per image and stage, written by ``dsocr analyze``. ``clock_ms`` is the whole stage on
#: the reference clock (every decode step); every ``*_traced`` column covers only what the trace
#: holds: the whole stage for vision/prefill_text/prefill, the ``steps_traced`` traced decode steps
#: of ``steps_total`` for decode.
TIMINGS = _versioned(
    "timings",
    [
        pa.field("image_index", pa.int32(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("clock_ms", pa.float64()),
        pa.field("cpu_ms_traced", pa.float64()),
        pa.field("gpu_busy_ms_traced", pa.float64()),
        pa.field("gpu_span_ms_traced", pa.float64()),
        pa.field("kernel_count_traced", pa.int64()),
        # The reference clock over the traced part only (what the check compares against).
        pa.field("reference_traced_ms", pa.float64()),
        pa.field("reference_rel_diff", pa.float64()),
        pa.field("steps_traced", pa.int32()),
        pa.field("steps_total", pa.int32()),
        # Which traced column reference_rel_diff compares: "gpu_range_ms_traced" or "cpu_ms_traced".
        pa.field("check_measure", pa.string()),
        # The stage's ranges projected onto the GPU stream (what CUDA events around them measure).
        pa.field("gpu_range_ms_traced", pa.float64()),
        # gpu_busy_ms_traced is the union of kernels, memcpys and memsets: each kind is counted.
        pa.field("memcpy_count_traced", pa.int64()),
        pa.field("memset_count_traced", pa.int64()),
    ],
)

#: Top kernels and operators per stage, written by ``dsocr analyze``.
KERNELS = _versioned(
    "kernels",
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("calls", pa.int64(), nullable=False),
        pa.field("total_ms_traced", pa.float64(), nullable=False),
        pa.field("mean_us", pa.float64(), nullable=False),
        pa.field("share", pa.float64(), nullable=False),
    ],
)

#: Roofline per image and stage, and per decode step, written by ``dsocr analyze``.
ROOFLINE = _versioned(
    "roofline",
    [
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("image_index", pa.int32(), nullable=False),
        # vision, prefill_text, prefill, decode (step null) or decode_step (step set).
        pa.field("stage", pa.string(), nullable=False),
        pa.field("step", pa.int32()),
        # vision: local tiles; prefill_text and prefill: prompt tokens; decode_step: attended positions.
        pa.field("tokens", pa.int64()),
        pa.field("flops", pa.float64()),
        pa.field("bytes", pa.float64()),
        # The part of flops in attention's products (the profiler's estimates leave attention out).
        pa.field("attention_flops", pa.float64()),
        pa.field("wall_ms", pa.float64()),
        pa.field("gpu_busy_ms", pa.float64()),
        pa.field("kernel_count", pa.int64()),
        pa.field("achieved_tflops", pa.float64()),
        pa.field("achieved_tflops_wall", pa.float64()),
        pa.field("achieved_gbps", pa.float64()),
        pa.field("achieved_gbps_wall", pa.float64()),
        pa.field("mfu", pa.float64()),
        pa.field("mfu_wall", pa.float64()),
        pa.field("mbu", pa.float64()),
        pa.field("mbu_wall", pa.float64()),
        pa.field("roofline_ms", pa.float64()),
        # host, launch, compute or memory (null: not enough to say).
        pa.field("bound", pa.string()),
    ],
)

#: One row per traced decode step, written by ``dsocr analyze`` (the report plots it).
STEPS = _versioned(
    "steps",
    [
        pa.field("image_index", pa.int32(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("wall_ms", pa.float64()),
        pa.field("gpu_busy_ms", pa.float64()),
        pa.field("gpu_span_ms", pa.float64()),
        pa.field("kernel_count", pa.int64()),
    ],
)

SCHEMAS: dict[str, pa.Schema] = {
    "predictions": PREDICTIONS,
    "trace": TRACE,
    "timings": TIMINGS,
    "kernels": KERNELS,
    "roofline": ROOFLINE,
    "steps": STEPS,
}


def check_table(schema: pa.Schema, expected: str, *, source: str) -> None:
    """Raise SchemaMismatchError unless ``schema`` is dsocr's ``expected`` table at this version."""
    metadata = schema.metadata or {}
    table = metadata.get(TABLE_KEY, b"").decode()
    version = metadata.get(VERSION_KEY, b"").decode()
    if table != expected:
        raise SchemaMismatchError(f"{source}: not a dsocr {expected} table (found {table or 'no dsocr metadata'})")
    readable = READABLE_VERSIONS.get(expected, frozenset({table_version(expected)}))
    if version not in {str(number) for number in readable}:
        versions = " and ".join(str(number) for number in sorted(readable))
        rerun = " (run `dsocr analyze` again)" if expected in ANALYSIS_TABLES else ""
        raise SchemaMismatchError(
            f"{source}: {expected} schema version {version or '?'}, this dsocr reads version {versions}{rerun}"
        )
    # Nullable columns may be missing: they were added later within this version (readers fill nulls).
    missing = [field.name for field in SCHEMAS[expected] if not field.nullable and field.name not in schema.names]
    if missing:
        raise SchemaMismatchError(f"{source}: {expected} table lacks columns {', '.join(missing)}")
