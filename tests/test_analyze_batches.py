"""analyze reads a run a batch of whole images at a time: any batching gives the same analysis."""

from __future__ import annotations

import gc
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analyze_helpers import ImageSpec, gpu_run_or_skip, write_run
from dsocr.analyze import ordered as ordered_module
from dsocr.analyze import runner
from dsocr.analyze import spool as spool_module
from dsocr.analyze.ordered import Slices
from dsocr.analyze.runner import analyze_run, image_batches
from dsocr.analyze.sketch import EXACT_VALUES
from dsocr.analyze.step_figures import StepFigures
from dsocr.analyze.summary import to_json

from dsocr import prediction_store, rundir
from dsocr.prediction_store import BULK_COLUMNS, SCALAR_COLUMNS, PredictionStore

FIXTURES = Path(__file__).parent / "data"


def _analysis(run_dir: Path, batch_bytes: int | None) -> tuple[dict, dict]:
    analysis = analyze_run(run_dir, batch_bytes=batch_bytes)
    written = {path.name: pq.read_table(path).to_pylist() for path in sorted(analysis.output_dir.glob("*.parquet"))}
    return to_json(analysis.summary), written


@pytest.mark.parametrize("fixture", ["gpu-run", "gpu-flops-run"])
def test_one_image_per_batch_gives_the_analysis_of_one_batch(tmp_path: Path, fixture: str) -> None:
    gpu_run_or_skip()
    run_dir = shutil.copytree(FIXTURES / fixture, tmp_path / "run")
    assert len(image_batches(rundir.trace_files(run_dir))) == 1  # the default holds the whole fixture
    assert len(image_batches(rundir.trace_files(run_dir), 1)) == len(
        {path.name.split("-")[0] for path in rundir.trace_files(run_dir)}
    )
    one_batch = _analysis(run_dir, None)
    per_image = _analysis(run_dir, 1)
    assert one_batch == per_image
    assert one_batch[0]["coverage"]["trace_events"] > 0


def test_batches_hold_whole_images_in_image_order(tmp_path: Path) -> None:
    files = []
    for rank, image, chunk, size in [(0, 0, 0, 10), (0, 0, 1, 10), (0, 1, 0, 5), (1, 0, 0, 5), (0, 2, 0, 30)]:
        path = tmp_path / "trace" / f"rank={rank}" / f"image{image:07d}-chunk{chunk:04d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        files.append(path)
    batches = image_batches(files, 20)
    names = [[f"{path.parent.name}/{path.name[:12]}" for path in batch] for batch in batches]
    assert names == [
        ["rank=0/image0000000", "rank=0/image0000000"],  # one image's chunks are never split
        ["rank=0/image0000001"],
        ["rank=0/image0000002"],  # larger than a batch: a batch on its own
        ["rank=1/image0000000"],
    ]
    other = tmp_path / "elsewhere.parquet"
    other.write_bytes(b"x")
    assert image_batches([*files, other], 20) == [[*files, other]]  # unknown layout: one batch


def _spooled_images(temp_dir: Path) -> list[tuple[int, int]]:
    """The (rank, image) of every timings row in the spools' part files on disk now."""
    rows = []
    for part in sorted(temp_dir.glob(".dsocr-rows-*.tmp/part-*.parquet")):
        table = pq.read_table(part)
        if "cpu_ms_traced" in table.column_names:  # the timings spool's parts
            rows += table.select(["rank", "image_index"]).to_pylist()
    return [(row["rank"], row["image_index"]) for row in rows]


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temp folder, for this test alone (where the per-image spools go)."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_timings_rows_are_on_disk_as_each_batch_completes(
    tmp_path: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_run_or_skip()
    run_dir = shutil.copytree(FIXTURES / "gpu-run", tmp_path / "run")
    batches = image_batches(rundir.trace_files(run_dir), 1)
    assert len(batches) >= 2  # one image per batch
    seen_at_batch: list[list[tuple[int, int]]] = []
    load_files = runner.load_files

    def load_and_look(files: list[Path], pool: runner.WorkerPool) -> runner.TraceTables:
        if files:  # each batch's read: what earlier batches left on disk
            seen_at_batch.append(_spooled_images(temp_dir))
        return load_files(files, pool)

    monkeypatch.setattr(runner, "load_files", load_and_look)
    monkeypatch.setattr(spool_module, "PART_ROWS", 1)  # every batch's rows written at once
    analysis = analyze_run(run_dir, batch_bytes=1)
    # Before batch k is read, the timings rows of batches 0..k-1 (and only those) are on disk.
    image_of = [(int(b[0].parent.name.split("=")[1]), int(b[0].name[5:12])) for b in batches]
    timings = analysis.timings.read()
    stages = len({row["stage"] for row in timings.to_pylist()})
    for index, seen in enumerate(seen_at_batch):
        assert sorted(set(seen)) == sorted(image_of[:index])
        assert len(seen) == index * stages
    written = pq.read_table(run_dir / rundir.ANALYSIS_DIR / "timings.parquet")
    assert written.equals(timings)
    assert not list((run_dir / rundir.ANALYSIS_DIR).glob(".*.tmp"))  # the per-step spools are gone
    # The per-image spools live as long as the analysis that reads them again, no longer.
    assert list(temp_dir.glob(".dsocr-rows-*.tmp"))
    del analysis
    gc.collect()
    assert not list(temp_dir.glob(".dsocr-rows-*.tmp"))


def test_a_failed_analysis_leaves_no_spool(tmp_path: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_run_or_skip()
    run_dir = shutil.copytree(FIXTURES / "gpu-run", tmp_path / "run")
    load_files = runner.load_files
    loads: list[int] = []

    def fail_on_second(files: list[Path], pool: runner.WorkerPool) -> runner.TraceTables:
        loads.append(len(files))
        if len(loads) == 2:
            raise pa.ArrowInvalid("damaged trace file")
        return load_files(files, pool)

    monkeypatch.setattr(runner, "load_files", fail_on_second)
    with pytest.raises(pa.ArrowInvalid):
        analyze_run(run_dir, batch_bytes=1)
    # The first batch's rows had been spooled: the spools are removed, and no timings.parquet written.
    assert not list((run_dir / rundir.ANALYSIS_DIR).iterdir())
    gc.collect()
    assert not list(temp_dir.iterdir())


def _held_rows(value: object, seen: set[int] | None = None) -> int:
    """Arrow rows reachable from ``value`` (tables and arrays, in attributes, dicts and lists)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, pa.Table | pa.RecordBatch | pa.Array | pa.ChunkedArray):
        return len(value)
    if isinstance(value, dict):
        return sum(_held_rows(item, seen) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_held_rows(item, seen) for item in value)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return sum(_held_rows(item, seen) for item in vars(value).values())
    return 0


def _sketched_values(steps: StepFigures) -> list[int]:
    """Values each quantile sketch of the run-level step figures holds (exact mode)."""
    sketches = [
        *steps.roofline.quantiles.values(),
        steps.outliers.image_medians,
        steps.overhead.traced,
        steps.overhead.untraced,
        steps.cold.warm_ms,
    ]
    return [sum(part.size for part in sketch._values or []) for sketch in sketches]


def _synthetic_run(run_dir: Path, images: int) -> Path:
    """``images`` sampled images of 40 tokens (5 traced steps each); every third has no trace
    (as under --trace-images), so its steps come from the reference clock alone."""
    specs = [ImageSpec(index, generated_tokens=40, traced_steps=[1, 2, 3, 20, 21]) for index in range(images)]
    write_run(run_dir, specs, seed=images)
    rundir.finalize_predictions(run_dir)
    for path in rundir.trace_files(run_dir):
        if int(path.name[5:12]) % 3 == 2:
            path.unlink()
    return run_dir


def _held_between_batches(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, part_rows: int
) -> tuple[list[int], list[int]]:
    """Analyze ``run_dir`` one image per batch, two untraced images per chunk, spools writing a
    part every ``part_rows`` rows; after each batch and each add of images: the Arrow rows
    RunSums holds, and the most values a sketch holds."""
    held: list[int] = []
    sketched: list[int] = []
    analyze_batch, add_images = runner._analyze_batch, runner.RunSums.add_images

    def look(sums: runner.RunSums) -> None:
        held.append(_held_rows(sums))
        sketched.append(max(_sketched_values(sums.steps)))

    def batch_and_look(*args: object) -> None:
        analyze_batch(*args)
        look(args[2])

    def images_and_look(sums: runner.RunSums, *args: object) -> None:
        add_images(sums, *args)
        look(sums)

    with monkeypatch.context() as patch:
        patch.setattr(runner, "_analyze_batch", batch_and_look)
        patch.setattr(runner.RunSums, "add_images", images_and_look)
        patch.setattr(runner, "IMAGE_CHUNK", 2)
        patch.setattr(spool_module, "PART_ROWS", part_rows)
        analyze_run(run_dir, batch_bytes=1)
    return held, sketched


def test_what_analyze_holds_between_batches_does_not_grow_with_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every batch a spool holds fewer than PART_ROWS per-image or per-step rows (none when
    every add is written at once; the rest are on disk), the step sketches hold at most their
    exact limit, partials.json does not grow with the run, and the figures are those of one batch."""
    partials_bytes = {}
    for images in (6, 24):
        run_dir = _synthetic_run(tmp_path / f"run{images}", images)
        one_batch = _analysis(run_dir, None)
        partials_bytes[images] = (run_dir / rundir.ANALYSIS_DIR / "partials.json").stat().st_size
        held, sketched = _held_between_batches(run_dir, monkeypatch, part_rows=1)
        traced = images - images // 3
        # Each traced batch (its images added, then the batch done), and each chunk of untraced images.
        assert len(held) == 2 * traced + math.ceil(images // 3 / 2)
        assert set(held) == {0}
        assert 0 < max(sketched) <= EXACT_VALUES
        part_rows = 50
        held, _ = _held_between_batches(run_dir, monkeypatch, part_rows=part_rows)
        # Six spools, each below PART_ROWS rows pending (an add of one batch is far smaller here).
        assert 0 < max(held) < 6 * part_rows
        with monkeypatch.context() as patch:
            patch.setattr(runner, "IMAGE_CHUNK", 2)
            assert _analysis(run_dir, 1) == one_batch
        assert one_batch[0]["coverage"]["images_with_trace"] == traced
        assert one_batch[0]["roofline"]["decode_step"] is None  # the synthetic model has no architecture
    # The trace's sums only (names, totals): not one entry per image or step.
    assert partials_bytes[24] <= partials_bytes[6] * 1.05


def test_per_step_parts_are_written_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """steps.parquet and roofline.parquet are written from the spooled parts as they are read:
    when the writer takes a part, no later part has been read yet."""
    gpu_run_or_skip()
    run_dir = shutil.copytree(FIXTURES / "gpu-run", tmp_path / "run")
    read: list[int] = []
    spool_tables = runner.TableSpool.tables

    def counted(spool: runner.TableSpool) -> Iterator[pa.Table]:
        for table in spool_tables(spool):
            read.append(table.num_rows)
            yield table

    taken: dict[str, list[tuple[int, int]]] = {}
    write_tables = rundir.write_tables_atomic

    def check_as_written(tables: Iterable[pa.Table], table_schema: pa.Schema, path: Path) -> None:
        def pulled() -> Iterator[pa.Table]:
            for index, table in enumerate(tables):
                taken.setdefault(path.name, []).append((index, len(read)))
                yield table

        write_tables(pulled(), table_schema, path)

    monkeypatch.setattr(runner.TableSpool, "tables", counted)
    monkeypatch.setattr(runner.rundir, "write_tables_atomic", check_as_written)
    monkeypatch.setattr(spool_module, "PART_ROWS", 1)  # a part per batch
    analyze_run(run_dir, batch_bytes=1)
    parts = len({path.name.split("-")[0] for path in rundir.trace_files(run_dir)})
    # roofline: the rows per image (stage rows, then decode rows: a merged slice of parts at a
    # time, analyze/ordered.py), then one traced part per batch.
    roofline = taken["roofline.parquet"]
    image_tables = len(roofline) - parts
    assert image_tables == 2 * parts  # one image per batch: a slice per image, stage rows then decode
    first_read = roofline[image_tables - 1][1]
    assert [count - first_read for _, count in roofline[image_tables:]] == list(range(1, parts + 1))
    assert len(taken["steps.parquet"]) == parts


def test_per_step_lists_are_read_a_group_of_images_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """analyze reads the scalar prediction columns a slice of rows at a time, never the per-step
    lists that way, and whole rows (per-step lists, output text) only for one batch's or one
    chunk's images: the analysis is the same."""
    run_dir = _synthetic_run(tmp_path / "run", 24)
    expected = _analysis(run_dir, None)
    monkeypatch.setattr(prediction_store, "ROW_GROUP_ROWS", 4)  # six row groups
    rundir.write_predictions(rundir.read_predictions(run_dir), run_dir)
    asked: list[int] = []
    read_columns: list[tuple[str, ...]] = []
    rows, slices = PredictionStore.rows, PredictionStore.slices

    def rows_spy(store: PredictionStore, image_indexes: object) -> pa.Table:
        table = rows(store, image_indexes)
        asked.append(table.num_rows)
        return table

    def slices_spy(store: PredictionStore, columns: tuple[str, ...]) -> Iterator[pa.Table]:
        read_columns.append(tuple(columns))
        return slices(store, columns)

    def no_read(store: PredictionStore, columns: object = None) -> pa.Table:
        raise AssertionError("analyze read a predictions column whole")

    monkeypatch.setattr(PredictionStore, "rows", rows_spy)
    monkeypatch.setattr(PredictionStore, "slices", slices_spy)
    monkeypatch.setattr(PredictionStore, "read", no_read)
    monkeypatch.setattr(runner, "IMAGE_CHUNK", 2)
    assert _analysis(run_dir, 1) == expected
    assert read_columns and all(set(columns) <= set(SCALAR_COLUMNS) for columns in read_columns)
    assert not set(BULK_COLUMNS) & set(SCALAR_COLUMNS)
    # One traced image per batch, two untraced images per chunk; each image once.
    assert max(asked) <= 2
    assert sum(asked) == 24


def test_the_figures_across_images_fold_over_slices_of_a_few_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the end, every per-image table (timings, latency, roofline rows, prediction scalars) is
    read a slice of a few images at a time for each figure across images and each output: no
    table of the run's images is made, and the analysis is that of one batch."""
    run_dir = _synthetic_run(tmp_path / "run", 24)
    expected = _analysis(run_dir, None)
    largest: dict[str, int] = {}
    spooled, slices = Slices.spooled, PredictionStore.slices

    def spooled_spy(cls: type[Slices], spool: runner.TableSpool, order: ordered_module.Order) -> Slices:
        inner = spooled(spool, order)

        def counted(columns: object) -> Iterator[pa.Table]:
            for table in inner._read(columns):
                largest[spool.folder.name] = max(largest.get(spool.folder.name, 0), table.num_rows)
                yield table

        return Slices(counted, spool.schema)

    def slices_spy(store: PredictionStore, columns: tuple[str, ...]) -> Iterator[pa.Table]:
        for table in slices(store, columns):
            largest["predictions"] = max(largest.get("predictions", 0), table.num_rows)
            yield table

    monkeypatch.setattr(Slices, "spooled", classmethod(spooled_spy))
    monkeypatch.setattr(PredictionStore, "slices", slices_spy)
    monkeypatch.setattr(prediction_store, "SLICE_ROWS", 3)
    monkeypatch.setattr(runner, "IMAGE_CHUNK", 2)
    monkeypatch.setattr(spool_module, "PART_ROWS", 1)  # a part per batch or chunk
    assert _analysis(run_dir, 1) == expected
    assert largest["predictions"] <= 3
    # One traced image per part, two untraced per part, two runs (traced, untraced): at most a
    # part of each, 3 images; at most 4 rows per image (timings: a row per stage).
    assert len(largest) == 1 + 2  # predictions; timings, latency (the synthetic model has no roofline rows)
    assert all(rows <= 3 * 4 for rows in largest.values()), largest
