"""dsocr's Parquet-only commands never import pandas, even where it is installed (pyarrow would)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import typer.main
from emit_helpers import draw_page, make_run, prediction_row

from dsocr.cli import app
from dsocr.no_pandas import PANDAS_FREE_COMMANDS

GPU_RUN = Path(__file__).parent / "data" / "gpu-run"

# An importable "pandas" that leaves a mark and then reports itself missing, so pyarrow goes on
# as if pandas were absent whether or not the import was attempted.
_FAKE_PANDAS = """
import os
with open(os.environ["PANDAS_IMPORT_MARK"], "a", encoding="utf-8") as mark:
    mark.write("imported\\n")
raise ImportError("fake pandas")
"""
_RUN_CLI = "import sys; from dsocr.cli import main; sys.argv = ['dsocr', *sys.argv[1:]]; main()"


def _python(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "fake-site"
    (site / "pandas").mkdir(parents=True, exist_ok=True)
    (site / "pandas" / "__init__.py").write_text(_FAKE_PANDAS, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "PANDAS_IMPORT_MARK": str(tmp_path / "pandas-imported"),
    }
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_pyarrow_imports_the_fake_pandas_on_its_own(tmp_path: Path) -> None:
    result = _python(tmp_path, "-c", "import numpy, pyarrow as pa; pa.array(numpy.arange(3))")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pandas-imported").exists()


def test_parquet_only_commands_never_import_pandas(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(GPU_RUN, run_dir)
    page = draw_page(tmp_path / "page.png", shade=0)
    text = "<|ref|>text<|/ref|><|det|>[[100, 100, 500, 400]]<|/det|>\nHello"
    emit_run = make_run(tmp_path / "emit-run", [prediction_row(0, page, text)])

    commands = [
        ["analyze", str(run_dir), "--json"],
        ["compare", str(run_dir), str(run_dir), "--json"],
        ["export-trace", str(run_dir), "--out", str(tmp_path / "trace.json")],
        ["emit", str(emit_run)],
        ["report", str(run_dir)],
    ]
    for command in commands:
        result = _python(tmp_path, "-c", _RUN_CLI, *command)
        assert result.returncode == 0, (command, result.stderr)

    assert not (tmp_path / "pandas-imported").exists()
    assert (tmp_path / "trace.json").stat().st_size > 0
    assert (run_dir / "analysis" / "report.html").stat().st_size > 0


def test_every_command_but_capture_hides_pandas() -> None:
    commands = set(typer.main.get_command(app).commands)

    assert commands - {"capture"} == PANDAS_FREE_COMMANDS


def test_hidden_pandas_fails_to_import_with_a_reason(tmp_path: Path) -> None:
    code = "from dsocr.no_pandas import hide_pandas; hide_pandas(); import pandas"
    result = _python(tmp_path, "-c", code)

    assert result.returncode == 1
    assert "dsocr hides pandas" in result.stderr
    assert not (tmp_path / "pandas-imported").exists()


def test_an_imported_pandas_is_left_alone(tmp_path: Path) -> None:
    code = (
        "import sys, types; sys.modules['pandas'] = types.ModuleType('pandas'); "
        "from dsocr.no_pandas import hide_pandas; hide_pandas(); import pandas; print('kept')"
    )
    result = _python(tmp_path, "-c", code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "kept"
