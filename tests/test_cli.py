"""The CLI edge: loading it costs nothing it does not use, --version, validation before --gpus,
and a capture library that returns its result instead of printing it."""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr import __version__
from dsocr._app import app
from dsocr.cli_capture_view import print_summary
from dsocr.rundir import read_predictions

# What `import dsocr.cli` must not load: the stages and their heavy dependencies. `import
# pyarrow` alone loads numpy, so the CLI must not load pyarrow either (bench/cli_startup.py times it).
FORBIDDEN_PREFIXES = (
    "numpy",
    "pyarrow",
    "torch",
    "transformers",
    "nvtx",
    "PIL",
    "dsocr.capture",
    "dsocr.analyze",
    "dsocr.emit",
)


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)


def test_importing_the_cli_loads_no_stage_and_no_heavy_dependency() -> None:
    code = "import json, sys\nimport dsocr.cli\nprint(json.dumps(sorted(sys.modules)))"
    completed = _python(code)
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    assert "dsocr.cli" in loaded and "typer" in loaded  # the probe really imported the CLI
    offending = [
        name for name in loaded if name.split(".")[0] in FORBIDDEN_PREFIXES or name.startswith(FORBIDDEN_PREFIXES)
    ]
    assert offending == []


def test_help_lists_every_command_without_loading_a_stage() -> None:
    stages = "('dsocr.capture', 'dsocr.analyze', 'dsocr.emit')"
    code = "import sys\nsys.argv = ['dsocr', '--help']\nfrom dsocr.cli import main\ntry:\n    main()\nfinally:\n"
    code += f"    print('STAGES', sorted(m for m in sys.modules if m.startswith({stages})))"
    completed = _python(code)
    assert completed.returncode == 0, completed.stderr
    for command in ("capture", "analyze", "export-trace", "compare", "emit", "import"):
        assert command in completed.stdout
    assert completed.stdout.rstrip().splitlines()[-1] == "STAGES []"


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"dsocr {__version__}\n")


def test_gpus_with_a_bad_option_is_one_error_line_before_any_rank_starts(tmp_path: Path) -> None:
    """The case of issue 8: it printed an Error line per rank and torchrun's traceback."""
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "dsocr.cli",
        "capture",
        "--gpus",
        "2",
        "--max-new-tokens",
        "0",
        "--out",
        str(run_dir),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert completed.returncode == 1
    assert completed.stderr == "Error: --max-new-tokens must be an integer >= 1 or 'inf', got 0\n"
    assert completed.stdout == ""
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["--window-steps", "8", "--window-every", "8"], "--window-every (8) must be larger than --window-steps (8)"),
        (["--prompt", "no placeholder"], "--prompt must contain the <image> placeholder, got 'no placeholder'"),
        (["--model", "/nonexistent/model"], "--model /nonexistent/model: no such folder"),
    ],
)
def test_gpus_validates_the_whole_configuration_first(tmp_path: Path, arguments: list[str], error: str) -> None:
    result = CliRunner().invoke(app, ["capture", "--gpus", "2", "--out", str(tmp_path / "run"), *arguments])
    assert (result.exit_code, result.output) == (1, f"Error: {error}\n")


def test_gpus_refuses_an_out_holding_a_run_before_any_rank_starts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "stray.txt").write_text("not a run")
    result = CliRunner().invoke(app, ["capture", "--gpus", "2", "--out", str(run_dir)])
    assert (result.exit_code, result.output) == (1, f"Error: --out {run_dir} is not empty and holds no dsocr run\n")


def test_capture_run_returns_its_result_and_prints_nothing(
    tmp_path: Path, sample_pages: list[Path], capfd: pytest.CaptureFixture[str]
) -> None:
    from dsocr.capture.config import CaptureConfig, ProfileMode
    from dsocr.capture.runner import run

    started: list[tuple[int, int]] = []
    finished: list[dict] = []
    config = CaptureConfig(
        images=tuple(map(str, sample_pages[:2])), out=tmp_path / "run", max_new_tokens=3, profile=ProfileMode.off
    )
    result = run(config, on_start=lambda total, done: started.append((total, done)), on_image=finished.append)
    assert capfd.readouterr() == ("", "")
    assert result.run_dir == config.out and result.is_leader
    assert started == [(2, 0)]
    assert [row["image_index"] for row in finished] == [0, 1]
    assert list(result.rows) == read_predictions(config.out).to_pylist()
    figures = result.figures
    assert (figures.images_ok, figures.images_failed) == (2, 0)
    assert figures.generated_tokens == sum(row["generated_tokens"] for row in result.rows) > 0
    assert figures.trace_events is None  # profiling was off
    # The glossary's figures: medians across images of each image's own figure.
    tpot = sorted(statistics.median(row["decode_step_ms"]) for row in result.rows)
    assert figures.tpot_p50_ms == pytest.approx(statistics.median(tpot))
    assert figures.decode_ms == pytest.approx(statistics.median(row["decode_ms"] for row in result.rows))
    assert figures.image_ms is not None and figures.image_ms > figures.decode_ms

    # The CLI edge shows it.
    buffer = io.StringIO()
    print_summary(result, Console(file=buffer, width=300))
    text = buffer.getvalue()
    assert "2 ok, 0 failed" in text and "none (profile off)" in text and str(config.out) in text
    # On a narrow terminal the run directory folds onto more lines but is never cut.
    narrow = io.StringIO()
    print_summary(result, Console(file=narrow, width=60))
    cells = "".join(line.strip("│ ").split("│")[-1].strip() for line in narrow.getvalue().splitlines())
    assert "…" not in narrow.getvalue() and str(config.out) in cells
