"""Bad input gives one `Error:` line and exit 1; export-trace writes Chrome JSON that round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analyze_helpers import BASE_NS, ODD_NAME, ImageSpec, invoke, write_run

from dsocr import rundir, schema


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    rows = write_run(run_dir, [ImageSpec(0, generated_tokens=4), ImageSpec(1, generated_tokens=5, chunk_every=2)])
    return run_dir, rows


def _single_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_not_a_run_directory(tmp_path: Path) -> None:
    for command in ("analyze", "export-trace"):
        result = invoke(command, tmp_path)
        assert result.exit_code == 1
        assert _single_error_line(result.output) == f"Error: {tmp_path}: not a dsocr run directory (no run.json)"


def test_wrong_schema_version_in_run_json(tmp_path: Path) -> None:
    write_run(tmp_path, [ImageSpec(0)])
    rundir.write_json_atomic(tmp_path / "run.json", {"schema_version": 999})
    result = invoke("analyze", tmp_path)
    assert result.exit_code == 1
    assert "schema version 999" in _single_error_line(result.output)


def test_trace_file_of_another_schema_version(tmp_path: Path) -> None:
    write_run(tmp_path, [ImageSpec(0)])
    path = next((tmp_path / "trace").rglob("*.parquet"))
    table = pq.read_table(path)
    metadata = {**table.schema.metadata, schema.VERSION_KEY: b"0"}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    for command in ("analyze", "export-trace"):
        result = invoke(command, tmp_path)
        assert result.exit_code == 1
        assert "trace schema version 0, this dsocr reads version" in _single_error_line(result.output)


def test_unreadable_trace_file(tmp_path: Path) -> None:
    write_run(tmp_path, [ImageSpec(0)])
    path = next((tmp_path / "trace").rglob("*.parquet"))
    path.write_bytes(b"not parquet")
    for command in ("analyze", "export-trace"):
        result = invoke(command, tmp_path)
        assert result.exit_code == 1
        assert _single_error_line(result.output).startswith(f"Error: {path}: unreadable Parquet")


def test_bad_options(small_run: tuple[Path, list[dict]]) -> None:
    run_dir, _ = small_run
    cases = {
        ("export-trace", "--image", "9"): "Error: --image 9: no trace for that image in",
        ("export-trace", "--image", "-1"): "Error: --image -1: must be an image index 0..2147483647",
        ("export-trace", "--image", "99999999999999999999"): "Error: --image 99999999999999999999: must be an image",
        ("analyze", "--peak-tflops", "1e400"): "Error: --peak-tflops inf: must be a positive number",
        ("analyze", "--peak-gbps", "nan"): "Error: --peak-gbps nan: must be a positive number",
        ("analyze", "--top", "0"): "Error: --top 0: must be at least 1",
        ("analyze", "--jobs", "0"): "Error: --jobs 0: must be at least 1",
    }
    for (command, *options), expected in cases.items():
        result = invoke(command, run_dir, *options)
        assert result.exit_code == 1
        assert _single_error_line(result.output).startswith(expected)


def test_export_trace_of_a_run_without_trace(tmp_path: Path) -> None:
    write_run(tmp_path, [ImageSpec(0)])
    for path in (tmp_path / "trace").rglob("*.parquet"):
        path.unlink()
    result = invoke("export-trace", tmp_path)
    assert result.exit_code == 1
    assert "the run has no trace to export" in _single_error_line(result.output)


def test_export_trace_round_trips_every_event(small_run: tuple[Path, list[dict]], tmp_path: Path) -> None:
    run_dir, rows = small_run
    out = tmp_path / "all.json"
    result = invoke("export-trace", run_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {len(rows)} events to {out}"
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["distributedInfo"]["rank"] == 0
    base = payload["baseTimeNanoseconds"]
    assert base == min(row["ts_ns"] for row in rows) >= BASE_NS
    events = [event for event in payload["traceEvents"] if event["ph"] == "X"]
    assert len(events) == len(rows)
    by_key = {(e["name"], round(e["ts"] * 1000) + base, e["tid"]): e for e in events}
    for row in rows:
        event = by_key[(row["name"], row["ts_ns"], row["tid"])]
        assert event["cat"] == row["cat"]
        assert round(event["dur"] * 1000) == row["dur_ns"]
        assert event["pid"] == row["pid"]
        assert event["args"].get("correlation") == row.get("correlation")
        assert event["args"].get("External id") == row.get("external_id")
        assert event["args"].get("stream") == row.get("stream")
    assert any(event["name"] == ODD_NAME for event in events)
    names = {event["args"]["name"] for event in payload["traceEvents"] if event["ph"] == "M"}
    assert {"GPU 0", "host 4242"} <= names


def test_export_trace_of_one_image(small_run: tuple[Path, list[dict]]) -> None:
    run_dir, rows = small_run
    result = invoke("export-trace", run_dir, "--image", "1")
    assert result.exit_code == 0, result.output
    path = run_dir / "analysis" / "export" / "trace-image1.json"
    events = [event for event in json.loads(path.read_text())["traceEvents"] if event["ph"] == "X"]
    assert len(events) == sum(1 for row in rows if row["image_index"] == 1)
    assert min(event["ts"] for event in events) == 0


def test_microsecond_strings_keep_nanoseconds() -> None:
    from dsocr.analyze.chrome import _microseconds

    values = pa.chunked_array([[0, 7, 1_000, 1_234_567_890_123]])
    assert _microseconds(values).to_pylist() == ["0.000", "0.007", "1.000", "1234567890.123"]
