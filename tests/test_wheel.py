"""The wheel installs one top-level package, dsocr, and a user's own analyze.py cannot shadow a stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU_RUN = ROOT / "tests" / "data" / "gpu-run"
# What a build needs is the package source and pyproject; leave out everything heavy or generated.
_NOT_BUILT = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "runs", "tests", "bench"
)
# A user's working folder with modules named like the stages: importing one would be a bug.
_USER_MODULES = ("analyze", "capture", "emit")


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_BUILT)
    wheels = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    built = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("dsocr-*.whl")
    return wheel


def _python(cwd: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_the_wheel_installs_only_dsocr_and_runs_beside_a_users_own_stage_modules(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [name for name in names if name.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["dsocr"]
        archive.extractall(tmp_path / "site")
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"dsocr"}
    for module in ("dsocr/capture/runner.py", "dsocr/analyze/runner.py", "dsocr/emit/runner.py", "dsocr/vocab.py"):
        assert module in names
    assert any(name.startswith("dsocr/capture/embedded/") and name.endswith(".json") for name in names)

    user = tmp_path / "user"
    user.mkdir()
    for module in _USER_MODULES:
        (user / f"{module}.py").write_text(f"raise ImportError('the user\\'s own {module}.py was imported')\n")
    site = tmp_path / "site"

    where = _python(user, site, "-c", "import dsocr.cli, dsocr.analyze.runner, dsocr.emit; print(dsocr.__file__)")
    assert where.returncode == 0, where.stderr[-3000:]
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's code, not the editable checkout

    help_text = _python(user, site, "-m", "dsocr.cli", "--help")
    assert help_text.returncode == 0, help_text.stderr[-3000:]
    assert all(command in help_text.stdout for command in ("capture", "analyze", "emit", "import"))

    run_dir = tmp_path / "run"
    shutil.copytree(GPU_RUN, run_dir)
    analyzed = _python(user, site, "-m", "dsocr.cli", "analyze", str(run_dir), "--json")
    assert analyzed.returncode == 0, analyzed.stderr[-3000:]
    assert json.loads(analyzed.stdout)["trace"]["present"] is True
