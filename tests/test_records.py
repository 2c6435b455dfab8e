"""run.json and prediction rows have one typed definition each (dsocr/records.py), and readers check them."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr import rundir, schema
from dsocr._app import app
from dsocr.errors import RunDirError, SchemaMismatchError
from dsocr.records import ImageCounts, ModelRecord, PredictionRow, RunRecord
from dsocr.vocab import ImageStatus, ProfileMode, RunKind, RunStatus

GPU_RUN = Path(__file__).parent / "data" / "gpu-run"


def _import_record() -> RunRecord:
    return RunRecord(
        kind=RunKind.import_,
        status=RunStatus.complete,
        model=ModelRecord(id="deepseek-ai/DeepSeek-OCR"),
        images=ImageCounts(total=2, ok=1, failed=1),
        source="/data/outputs.jsonl",
        created_at="2026-01-01T00:00:00+00:00",
    )


def test_the_committed_gpu_capture_reads_as_a_typed_record() -> None:
    record = rundir.read_run_json(GPU_RUN)
    assert (record.kind, record.status, record.world_size) == (RunKind.capture, RunStatus.complete, 1)
    assert record.model.family == "deepseek_ocr2" and record.model.context_limit == 8192
    assert record.model.device_name == "NVIDIA H200"
    assert record.model.architecture is not None and record.model.architecture["model_type"] == "deepseek_ocr2"
    assert record.config is not None and record.config.profile is ProfileMode.full
    assert record.config.sampling.window_every == 64
    assert record.images == ImageCounts(total=2, ok=2, failed=0)
    # Round trip: what from_json typed, to_json writes back, key for key (the fixture also has
    # the top-level device_name of older writers, read into model and not written again).
    original = json.loads((GPU_RUN / "run.json").read_text())
    written = record.to_json()
    # Options added after the fixture was captured are written as null (unknown), nothing else.
    added = set(written["config"]) - set(original["config"])
    assert all(written["config"][key] is None for key in added), added
    written["config"] = {key: value for key, value in written["config"].items() if key not in added}
    # So are model keys added since (about: only an embedded trained model has one).
    added_model = set(written["model"]) - set(original["model"])
    assert all(written["model"][key] is None for key in added_model), added_model
    written["model"] = {key: value for key, value in written["model"].items() if key not in added_model}
    for rank, recorded in zip(written["ranks"], original["ranks"], strict=True):
        new_keys = set(rank) - set(recorded)  # peak_gpu_mib: recorded from a later capture on
        assert all(rank.pop(key) is None for key in new_keys), new_keys
    assert set(original) - set(written) == {"device_name"}
    assert {key: written[key] for key in original if key in written} == {
        key: value for key, value in original.items() if key != "device_name"
    }


def test_an_older_run_json_device_name_is_read_into_the_model(tmp_path: Path) -> None:
    payload = _import_record().to_json()
    payload["device_name"] = "NVIDIA H200"  # where runs before model.device_name kept it
    del payload["model"]["device_name"]
    assert RunRecord.from_json(payload).model.device_name == "NVIDIA H200"
    payload["model"]["device_name"] = "NVIDIA H100"  # the model's own wins
    assert RunRecord.from_json(payload).model.device_name == "NVIDIA H100"


def test_to_json_and_from_json_round_trip(tmp_path: Path) -> None:
    record = _import_record()
    rundir.write_run_json(tmp_path, record)
    assert rundir.read_run_json(tmp_path) == record
    payload = json.loads((tmp_path / "run.json").read_text())
    # Every key is written, in declaration order; enums are plain strings.
    assert list(payload) == [field.name for field in dataclasses.fields(RunRecord)]
    assert (payload["kind"], payload["status"]) == ("import", "complete")


def test_new_model_fields_are_declared_and_round_trip(tmp_path: Path) -> None:
    model = ModelRecord(id="m", architecture={"model_type": "deepseek_ocr2", "text_config": {"hidden_size": 1280}})
    record = dataclasses.replace(_import_record(), model=dataclasses.replace(model, device_name="NVIDIA H200"))
    rundir.write_run_json(tmp_path, record)
    read = rundir.read_run_json(tmp_path).model
    assert read.architecture == {"model_type": "deepseek_ocr2", "text_config": {"hidden_size": 1280}}
    assert read.device_name == "NVIDIA H200"


def _payload(**changes: Any) -> dict[str, Any]:
    payload = _import_record().to_json()
    for key, value in changes.items():
        if value is _DROP:
            del payload[key]
        else:
            payload[key] = value
    return payload


_DROP = object()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "run.json: must be a JSON object, found a list"),
        (None, "run.json: must be a JSON object, found null"),
        ("complete", "run.json: must be a JSON object, found a string"),
        (_payload(kind=_DROP), "run.json: lacks the key kind"),
        (_payload(status=_DROP), "run.json: lacks the key status"),
        (_payload(model=_DROP), "run.json: lacks the key model"),
        (_payload(model={}), "run.json: lacks the key model.id"),
        (_payload(model=[]), "run.json: model must be a JSON object, found a list"),
        (_payload(images={"total": 1, "ok": 1}), "run.json: lacks the key images.failed"),
        (_payload(images={"total": "2", "ok": 1, "failed": 1}), "run.json: images.total must be an integer, found '2'"),
        (_payload(kind="capturee"), "run.json: kind must be one of capture, import, found 'capturee'"),
        (_payload(status="done"), "run.json: status must be one of running, complete, interrupted, found 'done'"),
        (_payload(warnings="oops"), "run.json: warnings must be a list of strings, found 'oops'"),
        (_payload(ranks=[{"rank": 0}]), "run.json: lacks the key ranks[0].images"),
    ],
)
def test_a_malformed_run_json_is_one_clear_error(payload: Any, message: str) -> None:
    with pytest.raises(RunDirError) as raised:
        RunRecord.from_json(payload)
    assert str(raised.value) == message


def test_another_schema_version_is_a_schema_mismatch() -> None:
    with pytest.raises(SchemaMismatchError, match="schema version 999, this dsocr reads version 1"):
        RunRecord.from_json(_payload(schema_version=999))


def test_unknown_keys_of_a_newer_writer_are_ignored() -> None:
    assert RunRecord.from_json(_payload(replicated_from="/elsewhere")) == _import_record()


@pytest.mark.parametrize("text", ["[]", "null", '{"schema_version": 1, "kind": "capture"}'])
def test_analyze_and_emit_refuse_a_malformed_run_json_in_one_line(tmp_path: Path, text: str) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(GPU_RUN, run_dir)
    (run_dir / "run.json").write_text(text)
    for command in (["analyze", str(run_dir)], ["emit", str(run_dir)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {run_dir / 'run.json'}: "), result.output


def test_prediction_row_keys_are_the_predictions_columns() -> None:
    assert list(PredictionRow.__annotations__) == schema.PREDICTIONS.names
    required = {field.name for field in schema.PREDICTIONS if not field.nullable}
    assert PredictionRow.__required_keys__ == required


def test_rows_to_table_refuses_keys_that_are_not_columns() -> None:
    row: dict[str, Any] = {
        "image_index": 0,
        "image_path": "/p.png",
        "image_md5": "0" * 32,
        "status": ImageStatus.ok,
        "promt_tokens": 12,
        "decode_sms": 1.0,
    }
    with pytest.raises(SchemaMismatchError) as raised:
        rundir.rows_to_table([row], schema.PREDICTIONS)
    assert str(raised.value) == "predictions rows have keys that are not columns: decode_sms, promt_tokens"


def test_rows_to_table_fills_absent_columns_with_nulls() -> None:
    row: PredictionRow = {"image_index": 3, "image_path": "/p.png", "image_md5": "0" * 32, "status": ImageStatus.failed}
    table = rundir.rows_to_table([row], schema.PREDICTIONS)
    assert table.schema == schema.PREDICTIONS
    assert table.to_pylist()[0]["status"] == "failed" and table.to_pylist()[0]["prompt_tokens"] is None
