"""``analyze_run``: read a run directory, compute every analysis, write ``analysis/``."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from dsocr.analyze.attribution import attribute_gpu_ops, lane_ids, operator_rows, place
from dsocr.analyze.cold import ColdOperatorTotals, cold_top
from dsocr.analyze.cpu_self import self_time_ns, whole_call_trees
from dsocr.analyze.flops import architecture
from dsocr.analyze.inputs import AnalysisInputs
from dsocr.analyze.insights import run_peak
from dsocr.analyze.kernels import (
    CpuOperatorTotals,
    StageGpuTotals,
    gpu_totals,
    kernels_table,
    name_codes,
    operator_part,
    top_of_totals,
)
from dsocr.analyze.keys import image_key, split_image_key
from dsocr.analyze.latency import LATENCY, latency_table
from dsocr.analyze.load import TraceTables, load_files
from dsocr.analyze.ordered import BY_RANK_AND_IMAGE, Key, Slices, ordered
from dsocr.analyze.partials import (
    NameTotals,
    TraceFigures,
    Vocabulary,
    add_copy_sums,
    add_gpu_figures,
    add_launch_sums,
    batch_figures,
    copy_figures,
    launch_figures,
)
from dsocr.analyze.peaks import DevicePeak
from dsocr.analyze.profiler_flops import StageFlops, add_stage_flops
from dsocr.analyze.ranges import Ranges, clean_ranges
from dsocr.analyze.reference import ok_predictions, timings_table
from dsocr.analyze.roofline import BY_IMAGE, DECODE_BY_IMAGE, RooflineRows, roofline_parts, stage_rows_in
from dsocr.analyze.sketch import ExactSum
from dsocr.analyze.spool import TableSpool, kept_spool, table_spool
from dsocr.analyze.stages import MEASURED, measure_stages
from dsocr.analyze.step_figures import StepFigures
from dsocr.analyze.steps import STEPS, prefer_images, reference_steps, steps_file_table, traced_steps
from dsocr.analyze.summary import Summary, summarize, to_json
from dsocr.analyze.threads import WorkerPool, ordered_map, worker_pool

from dsocr import rundir, schema
from dsocr.options import DEFAULT_TOP
from dsocr.prediction_store import SCALAR_COLUMNS, PredictionStore
from dsocr.records import RunRecord
from dsocr.vocab import NS_PER_MS, STAGES, AnalysisFile, KernelKind


@dataclass(frozen=True)
class Analysis:
    """What ``analyze_run`` computed and where it wrote it."""

    summary: Summary
    #: analysis/timings.parquet's rows, read again for each pass (they are not held).
    timings: Slices
    kernels: pa.Table
    output_dir: Path


def _stage_cpu_ns(timings: Slices) -> dict[str, float]:
    """CPU wall time per stage over every image: the correctly rounded sum, the same in any order
    and grouping, so shards merge to the same figure."""
    sums: dict[str, ExactSum] = {}
    for table in timings.columns("stage", "cpu_ms_traced"):
        stages = table["stage"].to_numpy(zero_copy_only=False)
        cpu_ms = table["cpu_ms_traced"].cast(pa.float64()).fill_null(np.nan).to_numpy()
        for stage in np.unique(stages).tolist():
            mine = cpu_ms[stages == stage]
            if (~np.isnan(mine)).any():
                sums.setdefault(stage, ExactSum()).add(mine)
    return {stage: total.value * NS_PER_MS for stage, total in sums.items()}


def _operator_codes(work: pa.Table, cpu_ops: pa.Table, codes: np.ndarray) -> np.ndarray:
    """Per GPU activity, the name code of the cpu_op that launched it (-1: none in the trace)."""
    rows = operator_rows(work, cpu_ops)
    if codes.size == 0:  # no cpu_op in the trace (e.g. CUDA activity only): nothing to name
        return np.full(rows.size, -1, dtype=np.int64)
    return np.where(rows >= 0, codes[np.maximum(rows, 0)], -1)


@dataclass(frozen=True)
class _PlacedOps:
    """One slice of cpu_ops (a flush chunk or whole call trees of one), placed in ranges, with
    its shares of the operator totals."""

    ops: pa.Table
    operators: dict[str, tuple[np.ndarray, np.ndarray]]
    cold: list[tuple[np.ndarray, list[int]]]


def _place_cpu_ops(
    piece: tuple[int, pa.RecordBatch], *, ranges: Ranges, codes: np.ndarray, names: int, cold: ColdOperatorTotals
) -> _PlacedOps:
    """Place one slice (``piece``: its first row in cpu_ops, its rows), compute its operators'
    self times and their per-stage and cold/warm sums (here, on the worker thread)."""
    offset, batch = piece
    ops = pa.Table.from_batches([batch])
    lanes = lane_ids(ops, ranges)
    ops = place(ops, ops["ts_ns"].to_numpy(), lanes, ranges)
    on_lane = lanes >= 0
    self_ns = np.zeros(lanes.size, dtype=np.int64)
    self_ns[on_lane] = self_time_ns(lanes[on_lane], ops["ts_ns"].to_numpy()[on_lane], ops["dur_ns"].to_numpy()[on_lane])
    codes = codes[offset : offset + ops.num_rows]
    return _PlacedOps(ops, operator_part(ops, codes, self_ns, names), cold.part(ops, codes, self_ns))


def _with_offsets(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    offset = 0
    for batch in batches:
        yield offset, batch
        offset += batch.num_rows


#: Trace Parquet bytes read together at most, in whole images: what bounds analyze's memory
#: (never the run's size). A sampled capture stores about 12 bytes per event (4,215 bytes per
#: token over 364 events per token on the H200, bench/results/h200-capture-overhead-512.json),
#: so a batch holds about 2 M events; an image larger than this is a batch on its own.
BATCH_BYTES = 24 * 2**20

#: capture's trace file layout (capture/tracing.trace_part_path): trace/rank=R/imageNNNNNNN-chunkCCCC.parquet.
_TRACE_FILE = re.compile(r"image(\d+)-chunk\d+\.parquet")
_RANK_DIR = re.compile(r"rank=(\d+)")


def image_batches(files: list[Path], batch_bytes: int = BATCH_BYTES) -> list[list[Path]]:
    """The trace files in batches of whole images, in image order, each about ``batch_bytes``
    (one batch of every file when the names do not follow capture's layout)."""
    images: dict[tuple[int, int], list[Path]] = {}
    for path in files:
        image, rank = _TRACE_FILE.fullmatch(path.name), _RANK_DIR.fullmatch(path.parent.name)
        if image is None or rank is None:
            return [files] if files else []
        images.setdefault((int(rank[1]), int(image[1])), []).append(path)
    batches: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for key in sorted(images):
        image_bytes = sum(path.stat().st_size for path in images[key])
        if current and size + image_bytes > batch_bytes:
            batches.append(current)
            current, size = [], 0
        current += images[key]
        size += image_bytes
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class _GpuSide:
    """One batch's GPU side (computed on a worker while its CPU operators are placed): the
    per-image tables, GPU sums per name (batch codes) and the batch's trace figures."""

    measured: pa.Table
    timings: pa.Table
    traced_steps: pa.Table
    latency: pa.Table
    kernel_names: list[str]
    gpu_totals: dict[str, StageGpuTotals]
    figures: TraceFigures


def _gpu_side(
    trace: TraceTables, ranges: Ranges, predictions: pa.Table, op_codes: np.ndarray, op_names: int
) -> _GpuSide:
    """Attribute one batch's GPU work and compute everything that needs no CPU operator's self time."""
    gpu = attribute_gpu_ops(trace.gpu_ops, trace.launches, ranges) if trace.has_device_time else None
    work = gpu.table if gpu is not None else None
    measured = measure_stages(
        ranges.table, work if work is not None else trace.gpu_ops, has_device_time=work is not None
    )
    figures = batch_figures(trace, ranges)
    kernel_names: list[str] = []
    totals: dict[str, StageGpuTotals] = {}
    if gpu is not None and work is not None:
        add_gpu_figures(figures, gpu, ranges.table)
        kernel_codes, kernel_names = name_codes(work["name"])
        if work.num_rows:
            operator_codes = _operator_codes(work, trace.cpu_ops, op_codes)
            totals = gpu_totals(work, kernel_codes, len(kernel_names), operator_codes, op_names)
        add_launch_sums(figures, work)
        add_copy_sums(figures, work, np.asarray(kernel_codes, dtype=np.int64), len(kernel_names))
    return _GpuSide(
        measured=measured,
        timings=timings_table(predictions, measured, ranges.table, has_trace=True),
        traced_steps=traced_steps(ranges.table, work),
        latency=latency_table(predictions, ranges.table),
        kernel_names=kernel_names,
        gpu_totals=totals,
        figures=figures,
    )


#: analysis/partials.json's version: readers refuse another (docs/run-format.md).
PARTIALS_VERSION = 2
#: Untraced images (and a shard's images, in a merge) are added this many at a time: their
#: decode steps (reference clock) are in memory a chunk at a time, never the run's.
IMAGE_CHUNK = 128
#: The RunSums fields that hold NameTotals per stage.
_NAME_SUMS = ("kernels", "operators", "cpu_operators")


@dataclass
class Spools:
    """Where the per-image and per-step rows go as each batch (or shard) completes: Parquet part
    files on disk (analyze/spool.py), read back at the end in order, a few parts at a time
    (analyze/ordered.py). The per-image ones live as long as the analysis that reads them."""

    timings: TableSpool
    latency: TableSpool
    traced_steps: TableSpool
    #: ROOFLINE rows per image (stage rows, decode per token).
    roofline_images: TableSpool
    #: ROOFLINE rows per decode step: from traced steps, then from the reference clock.
    roofline_traced: TableSpool
    roofline_reference: TableSpool


@contextmanager
def spools(beside: Path | None) -> Iterator[Spools]:
    """Every spool of an analysis. The per-step ones beside ``beside`` (analysis/timings.parquet),
    or in the system's temp folder (None: an analysis that writes nothing into the run, or a
    merge), removed on exit; the per-image ones in the system's temp folder, removed with the
    analysis that reads them (``spool.kept_spool``)."""
    with ExitStack() as stack:

        def spool(name: str, table_schema: pa.Schema) -> TableSpool:
            return stack.enter_context(table_spool(beside.with_name(name) if beside else None, table_schema))

        yield Spools(
            timings=kept_spool(schema.TIMINGS),
            latency=kept_spool(LATENCY),
            traced_steps=spool("steps", schema.STEPS),
            roofline_images=kept_spool(schema.ROOFLINE),
            roofline_traced=spool("roofline-traced", schema.ROOFLINE),
            roofline_reference=spool("roofline-reference", schema.ROOFLINE),
        )


@dataclass
class RunSums:
    """What analyze keeps between batches: sums per name and stage, trace figures, the run-level
    step figures (counts, exact sums, sketches: analyze/step_figures.py), never the events. The
    per-image and per-step rows go to disk as each batch (or shard) completes (``spools``)."""

    spools: Spools
    run: RunRecord
    peak: DevicePeak
    kernel_names: Vocabulary = field(default_factory=Vocabulary)
    operator_names: Vocabulary = field(default_factory=Vocabulary)
    #: Per stage: GPU time, per kernel name and per launching operator.
    stage_gpu_ns: dict[str, float] = field(default_factory=dict)
    kernels: dict[str, NameTotals] = field(default_factory=dict)
    operators: dict[str, NameTotals] = field(default_factory=dict)
    cpu_operators: dict[str, NameTotals] = field(default_factory=dict)
    cold_ns: NameTotals = field(default_factory=NameTotals)
    warm_ns: NameTotals = field(default_factory=NameTotals)
    cold_steps: int = 0
    warm_steps: int = 0
    figures: TraceFigures = field(default_factory=TraceFigures)
    profiler_flops: dict[str, StageFlops] = field(default_factory=dict)
    steps: StepFigures = field(default_factory=StepFigures)

    def add_images(self, predictions: pa.Table, timings: pa.Table, traced: pa.Table, latency: pa.Table) -> None:
        """Add whole images: their prediction rows, timings rows, traced steps and latency rows.
        Their decode steps are computed here and leave as part files and run-level figures."""
        self.spools.timings.add(timings)
        self.spools.latency.add(latency)
        ok = ok_predictions(predictions)
        reference = reference_steps(ok)
        steps = prefer_images(traced, reference)
        model = self.run.model
        image_rows, step_rows = roofline_parts(
            architecture(model.architecture), model.dtype, self.peak, ok, timings, steps
        )
        self.spools.roofline_images.add(image_rows)
        if step_rows.num_rows:  # the traced rows come first in ``steps``
            self.spools.roofline_traced.add(step_rows.slice(0, traced.num_rows))
            self.spools.roofline_reference.add(step_rows.slice(traced.num_rows))
        self.steps.add(ok, traced, reference, step_rows if step_rows.num_rows else None)
        if traced.num_rows:
            self.spools.traced_steps.add(steps_file_table(traced))

    def add_gpu(self, side: _GpuSide, operator_codes: np.ndarray, predictions: pa.Table) -> None:
        kernel_codes = self.kernel_names.codes(side.kernel_names)
        kernel_count, operator_count = len(self.kernel_names.names), len(self.operator_names.names)
        for stage, totals in side.gpu_totals.items():
            self.stage_gpu_ns[stage] = self.stage_gpu_ns.get(stage, 0.0) + totals.stage_ns
            self.kernels.setdefault(stage, NameTotals()).add(kernel_codes, *totals.kernels, kernel_count)
            self.operators.setdefault(stage, NameTotals()).add(operator_codes, *totals.operators, operator_count)
        self.figures.add_counts(side.figures)
        for stage, names in side.figures.copy_names.items():
            self.figures.copy_names[stage].merge(names, kernel_codes, kernel_count)
        self.add_images(predictions, side.timings, side.traced_steps, side.latency)

    def add_cpu(self, totals: CpuOperatorTotals, cold: ColdOperatorTotals, operator_codes: np.ndarray) -> None:
        count = len(self.operator_names.names)
        for stage, (self_ns, calls) in totals.sums().items():
            self.cpu_operators.setdefault(stage, NameTotals()).add(operator_codes, self_ns, calls, count)
        cold_ns, warm_ns = cold.sums
        no_calls = np.zeros(cold_ns.size, dtype=np.int64)
        self.cold_ns.add(operator_codes, cold_ns, no_calls, count)
        self.warm_ns.add(operator_codes, warm_ns, no_calls, count)
        cold_steps, warm_steps = cold.traced_steps
        self.cold_steps += cold_steps
        self.warm_steps += warm_steps

    def to_json(self, *, has_trace: bool) -> dict[str, Any]:
        """analysis/partials.json: the trace's sums, for ``dsocr analyze --merge`` (its size depends
        on the names in the trace, not on the images or steps: a merge recomputes the per-image
        and per-step figures from each shard's predictions and outputs)."""
        return {
            "schema_version": PARTIALS_VERSION,
            "has_trace": has_trace,
            "kernel_names": self.kernel_names.to_json(),
            "operator_names": self.operator_names.to_json(),
            "stage_gpu_ns": self.stage_gpu_ns,
            **{kind: {stage: totals.to_json() for stage, totals in getattr(self, kind).items()} for kind in _NAME_SUMS},
            "cold_ns": self.cold_ns.to_json(),
            "warm_ns": self.warm_ns.to_json(),
            "cold_steps": self.cold_steps,
            "warm_steps": self.warm_steps,
            "figures": self.figures.to_json(),
            "profiler_flops": {
                stage: {"flops": entry.flops, "operators": entry.operators, "uncounted": dict(entry.uncounted)}
                for stage, entry in self.profiler_flops.items()
            },
        }

    def add_shard(self, payload: dict[str, Any]) -> None:
        """Add one shard's trace sums: its partials.json ``payload`` (its images are added by ``add_images``)."""
        kernel_codes = self.kernel_names.codes(payload["kernel_names"])
        operator_codes = self.operator_names.codes(payload["operator_names"])
        sizes = {"kernels": len(self.kernel_names.names), "operators": len(self.operator_names.names)}
        for stage, stage_ns in payload["stage_gpu_ns"].items():
            self.stage_gpu_ns[stage] = self.stage_gpu_ns.get(stage, 0.0) + stage_ns
        for kind in _NAME_SUMS:
            codes, size = (
                (kernel_codes, sizes["kernels"]) if kind == "kernels" else (operator_codes, sizes["operators"])
            )
            mine = getattr(self, kind)
            for stage, totals in payload[kind].items():
                mine.setdefault(stage, NameTotals()).merge(NameTotals.from_json(totals), codes, size)
        self.cold_ns.merge(NameTotals.from_json(payload["cold_ns"]), operator_codes, sizes["operators"])
        self.warm_ns.merge(NameTotals.from_json(payload["warm_ns"]), operator_codes, sizes["operators"])
        self.cold_steps += payload["cold_steps"]
        self.warm_steps += payload["warm_steps"]
        figures = TraceFigures.from_json(payload["figures"])
        self.figures.add_counts(figures)
        for stage, names in figures.copy_names.items():
            self.figures.copy_names[stage].merge(names, kernel_codes, sizes["kernels"])
        for stage, entry in payload["profiler_flops"].items():
            into = self.profiler_flops.setdefault(stage, StageFlops())
            into.flops += entry["flops"]
            into.operators += entry["operators"]
            into.uncounted.update(entry["uncounted"])

    def kernels_table(self, stage_cpu_ns: dict[str, float], *, top: int) -> pa.Table:
        """KERNELS from the sums, in the order a single pass writes it."""
        kernel_names, operator_names = self.kernel_names.names, self.operator_names.names
        tables = []
        for stage in STAGES:
            if stage not in self.kernels:
                continue
            for kind, sums, names in (
                (KernelKind.kernel, self.kernels[stage], kernel_names),
                (KernelKind.operator, self.operators[stage], operator_names),
            ):
                totals, calls = sums.sized(len(names))
                tables.append(
                    top_of_totals(
                        totals, calls, names, stage=stage, kind=kind, denominator_ns=self.stage_gpu_ns[stage], top=top
                    )
                )
        for stage in STAGES:
            if stage in self.cpu_operators:
                totals, calls = self.cpu_operators[stage].sized(len(operator_names))
                tables.append(
                    top_of_totals(
                        totals,
                        calls,
                        operator_names,
                        stage=stage,
                        kind=KernelKind.cpu_operator,
                        denominator_ns=stage_cpu_ns.get(stage, 0.0),
                        top=top,
                    )
                )
        return kernels_table(tables)

    def cold_operators(self) -> list[dict[str, Any]]:
        size = len(self.operator_names.names)
        return cold_top(
            self.operator_names.names,
            self.cold_ns.sized(size)[0],
            self.warm_ns.sized(size)[0],
            (self.cold_steps, self.warm_steps),
        )


def _analyze_batch(
    files: list[Path],
    pool: WorkerPool,
    sums: RunSums,
    store: PredictionStore,
    traced_rows: np.ndarray,
) -> None:
    """Read one batch of whole images, compute its share of every figure, add it to ``sums``.

    The GPU side and the placing of cpu_ops (a chunk at a time) run on ``pool`` side by side;
    the totals fold the placed chunks here, in order.
    """
    trace = load_files(files, pool)
    ranges = clean_ranges(trace.ranges, trace.chunks)
    images = np.unique(image_key(trace.chunks))
    in_batch = np.isin(store.image_index, split_image_key(images)[1])  # an image_index is the run's
    traced_rows |= in_batch  # one flag per prediction row: which images a batch has read
    # The batch's whole prediction rows (per-step lists included): read for its images only.
    mine = store.rows(store.image_index[in_batch])
    # Name codes once for all cpu_ops (the chunks share one dictionary), sliced per chunk below.
    op_codes, op_names = name_codes(trace.cpu_ops["name"])
    operator_codes = sums.operator_names.codes(op_names)
    gpu_side = pool.submit(_gpu_side, trace, ranges, mine, op_codes, len(op_names))
    # Only --with-flops traces carry counts; the others skip the per-chunk FLOP bookkeeping.
    carries_flops = trace.cpu_ops["flops"].null_count < trace.cpu_ops.num_rows
    totals = CpuOperatorTotals(op_names)
    cold_totals = ColdOperatorTotals(ok_predictions(mine), op_names)
    # A flush chunk (or a slice of one that holds whole call trees) at a time: memory stays bounded.
    pieces = _with_offsets(whole_call_trees(trace.cpu_ops, pool.workers))
    place_piece = partial(_place_cpu_ops, ranges=ranges, codes=op_codes, names=len(op_names), cold=cold_totals)
    for placed in ordered_map(pool, place_piece, pieces):
        totals.merge(placed.operators)
        cold_totals.merge(placed.cold)
        if carries_flops:
            add_stage_flops(sums.profiler_flops, placed.ops)
    sums.add_gpu(gpu_side.result(), operator_codes, mine)
    sums.add_cpu(totals, cold_totals, operator_codes)


def _prediction_order(predictions: Slices) -> Key:
    """Per row of a per-image table (keyed by rank and image_index): its image's position among
    the ok prediction rows, the order of one pass over every image (an index of 16 bytes per image)."""
    ok_keys = np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [image_key(ok_predictions(table)) for table in predictions.columns("rank", "image_index", "status")]
    )
    order = np.argsort(ok_keys, kind="stable")
    sorted_keys = ok_keys[order]
    last = max(order.size - 1, 0)

    def position(table: pa.Table) -> np.ndarray:
        if order.size == 0:
            return np.zeros(table.num_rows, dtype=np.int64)
        return order[np.clip(np.searchsorted(sorted_keys, image_key(table)), 0, last)]

    return position


def analyze_run(
    run_dir: Path,
    *,
    top: int = DEFAULT_TOP,
    write: bool = True,
    peak_tflops: float | None = None,
    peak_gbps: float | None = None,
    jobs: int | None = None,
    batch_bytes: int | None = None,
) -> Analysis:
    """Analyze ``run_dir`` from its Parquet files alone and (by default) write ``analysis/``.

    ``peak_tflops`` / ``peak_gbps`` replace the device's peaks from the table (roofline).
    ``jobs``: threads reading and splitting the trace (default: ``threads.worker_count()``).
    ``batch_bytes``: trace Parquet bytes read together, in whole images (default: BATCH_BYTES).

    Raises RunDirError / SchemaMismatchError for a directory that is not a readable dsocr run.
    """
    run = rundir.read_run_json(run_dir)
    if write:  # Before any work: analysis/ linking out of the run is refused, not followed.
        rundir.analysis_dir(run_dir)
    # First: a bad --peak-tflops/--peak-gbps is an error before any trace is read.
    peak = run_peak(run, peak_tflops=peak_tflops, peak_gbps=peak_gbps)
    # Where each image's prediction row is: whole rows (per-step lists, text) are read a group of
    # images at a time, the scalar columns a slice of rows at a time (``scalar_slices``).
    store = rundir.open_predictions(run_dir, run)
    files = rundir.trace_files(run_dir)
    # Each batch's per-image and per-step rows go to disk as it completes (temp part files).
    with spools(timings_path(run_dir) if write else None) as spooled:
        sums = RunSums(spools=spooled, run=run, peak=peak)
        traced_rows = np.zeros(store.num_rows, dtype=bool)
        with worker_pool(jobs) as pool:
            # A batch of whole images at a time: the events of one batch are in memory, never the run's.
            for batch in image_batches(files, BATCH_BYTES if batch_bytes is None else batch_bytes):
                _analyze_batch(batch, pool, sums, store, traced_rows)
            no_ranges = clean_ranges(*_empty_trace(pool))
        # Images without trace files (--trace-images, failed conversions, imports): reference clock
        # only, a chunk of images at a time (their decode steps are read from predictions).
        untraced = store.image_index[~traced_rows]
        for start in range(0, max(untraced.size, 1), IMAGE_CHUNK):
            chunk = store.rows(untraced[start : start + IMAGE_CHUNK])
            sums.add_images(
                chunk,
                timings_table(chunk, MEASURED.empty_table(), no_ranges.table, has_trace=bool(files)),
                STEPS.empty_table(),
                latency_table(chunk, no_ranges.table),
            )
        # What `dsocr analyze --merge` combines this run by, as a shard of a larger job.
        partials = sums.to_json(has_trace=bool(files)) if write else None
        return finish(
            run_dir,
            run,
            scalar_slices(store),
            sums,
            has_trace=bool(files),
            peak=peak,
            top=top,
            write=write,
            partials=partials,
        )


def scalar_slices(*stores: PredictionStore) -> Slices:
    """The stores' scalar prediction columns (``SCALAR_COLUMNS``), store after store, a slice at a time."""
    table_schema = pa.schema([schema.PREDICTIONS.field(name) for name in SCALAR_COLUMNS])

    def read(columns: Sequence[str] | None) -> Iterator[pa.Table]:
        for store in stores:
            yield from store.slices(SCALAR_COLUMNS if columns is None else columns)

    return Slices(read, table_schema)


def timings_path(run_dir: Path) -> Path:
    """Where analyze writes ``run_dir``'s timings (the per-step spools' parts go beside it)."""
    return rundir.analysis_path(run_dir, AnalysisFile.timings)


def finish(
    run_dir: Path,
    run: RunRecord,
    predictions: Slices,
    sums: RunSums,
    *,
    has_trace: bool,
    peak: DevicePeak,
    top: int,
    write: bool,
    partials: dict[str, Any] | None = None,
) -> Analysis:
    """Every run-level figure from ``sums`` (of one run's batches, or of several shards' analyses)
    and the predictions; write ``run_dir/analysis/`` when ``write`` (``partials`` too, when
    given; summary.json last: its age stands for the whole analysis, dsocr/staleness.py)."""
    # The per-image rows, read back in order a few parts at a time, once per figure that folds
    # over them and once per file that lists them (analyze/ordered.py): never the run's at once.
    spooled = sums.spools
    position = _prediction_order(predictions)
    in_prediction_order = replace(BY_RANK_AND_IMAGE, key=position)
    timings = Slices.spooled(spooled.timings, in_prediction_order)
    kernels = sums.kernels_table(_stage_cpu_ns(timings), top=top) if has_trace else kernels_table([])
    roofline = RooflineRows(
        stages=Slices.spooled(spooled.roofline_images, stage_rows_in(position)),
        decode=Slices.spooled(spooled.roofline_images, DECODE_BY_IMAGE),
        by_image=Slices.spooled(spooled.roofline_images, BY_IMAGE),
    )
    device = sums.figures.gpu_ops > 0
    inputs = AnalysisInputs(
        run_dir=run_dir,
        run=run,
        predictions=predictions,
        trace=sums.figures,
        has_trace=has_trace,
        launch=launch_figures(sums.figures) if device else None,
        copies=copy_figures(sums.figures, sums.kernel_names.names) if device else None,
        timings=timings,
        latency=Slices.spooled(spooled.latency, in_prediction_order),
        kernels=kernels,
        cold_operators=sums.cold_operators() if has_trace else [],
        steps=sums.steps,
        peak=peak,
        roofline=roofline,
        profiler_flops=sums.profiler_flops,
    )
    summary = summarize(inputs)
    output_dir = run_dir / rundir.ANALYSIS_DIR
    if write:
        rundir.write_tables_atomic(timings, schema.TIMINGS, timings_path(run_dir))
        rundir.write_table_atomic(kernels, rundir.analysis_path(run_dir, AnalysisFile.kernels))
        # The rows per image (stage rows in prediction order, then decode per token by rank and
        # image), then every step row, a part at a time.
        roofline_parts_in_order = itertools.chain(
            roofline.stages, roofline.decode, spooled.roofline_traced.tables(), spooled.roofline_reference.tables()
        )
        roofline_path = rundir.analysis_path(run_dir, AnalysisFile.roofline)
        rundir.write_tables_atomic(roofline_parts_in_order, schema.ROOFLINE, roofline_path)
        rundir.write_tables_atomic(
            _steps_in_order(sums), schema.STEPS, rundir.analysis_path(run_dir, AnalysisFile.steps)
        )
        if partials is not None:
            rundir.write_json_atomic(rundir.analysis_path(run_dir, AnalysisFile.partials), partials)
        rundir.write_json_atomic(rundir.analysis_path(run_dir, AnalysisFile.summary), to_json(summary, streamed=True))
    return Analysis(summary=summary, timings=timings, kernels=kernels, output_dir=output_dir)


def _step_number(table: pa.Table) -> np.ndarray:
    return table["step"].to_numpy(zero_copy_only=False)


#: analysis/steps.parquet's order: by rank, image and step. A run's batches add them in that order
#: (one run of parts); a merge of shards whose images interleave adds a run per shard.
_STEPS_ORDER = replace(BY_RANK_AND_IMAGE, columns=("rank", "image_index", "step"), then=_step_number)


def _steps_in_order(sums: RunSums) -> Iterator[pa.Table]:
    """analysis/steps.parquet's rows in its order, a few parts at a time (analyze/ordered.py)."""
    return ordered(sums.spools.traced_steps, _STEPS_ORDER)


def _empty_trace(pool: WorkerPool) -> tuple[pa.Table, pa.Table]:
    """The raw ranges and chunk windows of a trace with no file (the schema of clean ranges)."""
    empty = load_files([], pool)
    return empty.ranges, empty.chunks
