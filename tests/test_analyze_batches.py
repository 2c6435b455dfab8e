"""analyze reads a run a batch of whole images at a time: any batching gives the same analysis."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analyze_helpers import ImageSpec, gpu_run_or_skip, write_run
from dsocr.analyze import runner
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


def _spooled_images(analysis_dir: Path) -> list[tuple[int, int]]:
    """The (rank, image) of every timings row in the spool's part files on disk now."""
    parts = sorted(analysis_dir.glob(".timings.parquet.*.tmp/part-*.parquet"))
    rows = pq.read_table(parts).to_pylist() if parts else []
    return [(row["rank"], row["image_index"]) for row in rows]


def test_timings_rows_are_on_disk_as_each_batch_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_run_or_skip()
    run_dir = shutil.copytree(FIXTURES / "gpu-run", tmp_path / "run")
    batches = image_batches(rundir.trace_files(run_dir), 1)
    assert len(batches) >= 2  # one image per batch
    seen_at_batch: list[list[tuple[int, int]]] = []
    load_files = runner.load_files

    def load_and_look(files: list[Path], pool: runner.WorkerPool) -> runner.TraceTables:
        if files:  # each batch's read: what earlier batches left on disk
            seen_at_batch.append(_spooled_images(run_dir / rundir.ANALYSIS_DIR))
        return load_files(files, pool)

    monkeypatch.setattr(runner, "load_files", load_and_look)
    analysis = analyze_run(run_dir, batch_bytes=1)
    # Before batch k is read, the timings rows of batches 0..k-1 (and only those) are on disk.
    image_of = [(int(b[0].parent.name.split("=")[1]), int(b[0].name[5:12])) for b in batches]
    stages = len({row["stage"] for row in analysis.timings.to_pylist()})
    for index, seen in enumerate(seen_at_batch):
        assert sorted(set(seen)) == sorted(image_of[:index])
        assert len(seen) == index * stages
    written = pq.read_table(run_dir / rundir.ANALYSIS_DIR / "timings.parquet")
    assert written.equals(analysis.timings)
    assert not list((run_dir / rundir.ANALYSIS_DIR).glob(".*.tmp"))  # the spool is gone


def test_a_failed_analysis_leaves_no_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    # The first batch's rows had been spooled: the spool is removed, and no timings.parquet written.
    assert not list((run_dir / rundir.ANALYSIS_DIR).iterdir())


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


def _held_between_batches(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """Analyze ``run_dir`` one image per batch, two untraced images per chunk; after each batch
    and each add of images: the Arrow rows RunSums holds, and the most values a sketch holds."""
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
        analyze_run(run_dir, batch_bytes=1)
    return held, sketched


def test_what_analyze_holds_between_batches_does_not_grow_with_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every batch no per-image or per-step row is held in memory (they are on disk), the
    step sketches hold at most their exact limit, partials.json does not grow with the run, and
    the figures are those of one batch."""
    partials_bytes = {}
    for images in (6, 24):
        run_dir = _synthetic_run(tmp_path / f"run{images}", images)
        one_batch = _analysis(run_dir, None)
        partials_bytes[images] = (run_dir / rundir.ANALYSIS_DIR / "partials.json").stat().st_size
        held, sketched = _held_between_batches(run_dir, monkeypatch)
        traced = images - images // 3
        # Each traced batch (its images added, then the batch done), and each chunk of untraced images.
        assert len(held) == 2 * traced + math.ceil(images // 3 / 2)
        assert set(held) == {0}
        assert 0 < max(sketched) <= EXACT_VALUES
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
    analyze_run(run_dir, batch_bytes=1)
    parts = len({path.name.split("-")[0] for path in rundir.trace_files(run_dir)})
    # roofline: the rows per image (read back whole before), then one traced part per batch.
    roofline = taken["roofline.parquet"]
    assert len(roofline) == 1 + parts
    first_read = roofline[0][1]
    assert [count - first_read for _, count in roofline[1:]] == list(range(1, parts + 1))
    assert len(taken["steps.parquet"]) == parts


def test_per_step_lists_are_read_a_group_of_images_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """analyze reads every image's scalar prediction columns at once, and whole rows (per-step
    lists, output text) only for one batch's or one chunk's images: the analysis is the same."""
    run_dir = _synthetic_run(tmp_path / "run", 24)
    expected = _analysis(run_dir, None)
    monkeypatch.setattr(prediction_store, "ROW_GROUP_ROWS", 4)  # six row groups
    rundir.write_predictions(rundir.read_predictions(run_dir), run_dir)
    asked: list[int] = []
    read_columns: list[tuple[str, ...] | None] = []
    rows, read = PredictionStore.rows, PredictionStore.read

    def rows_spy(store: PredictionStore, image_indexes: object) -> pa.Table:
        table = rows(store, image_indexes)
        asked.append(table.num_rows)
        return table

    def read_spy(store: PredictionStore, columns: tuple[str, ...] | None = None) -> pa.Table:
        read_columns.append(None if columns is None else tuple(columns))
        return read(store, columns)

    monkeypatch.setattr(PredictionStore, "rows", rows_spy)
    monkeypatch.setattr(PredictionStore, "read", read_spy)
    monkeypatch.setattr(runner, "IMAGE_CHUNK", 2)
    assert _analysis(run_dir, 1) == expected
    assert read_columns == [SCALAR_COLUMNS]
    assert not set(BULK_COLUMNS) & set(SCALAR_COLUMNS)
    # One traced image per batch, two untraced images per chunk; each image once.
    assert max(asked) <= 2
    assert sum(asked) == 24
