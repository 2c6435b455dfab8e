"""emit and import run in a process where torch, transformers and nvtx cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from emit_helpers import draw_page, make_run, prediction_row, read_info, write_jsonl

# Installed as sitecustomize on PYTHONPATH, so it also runs in emit's spawned worker processes.
_BLOCKER = '''
import sys

class _NoModels:
    """Refuse torch, transformers and nvtx, as on a machine without them."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "nvtx"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _NoModels())
'''
_RUN_CLI = "import sys; from dsocr.cli import main; sys.argv = ['dsocr', *sys.argv[1:]]; main()"


def _python(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    blocker_dir = tmp_path / "blocker"
    blocker_dir.mkdir(exist_ok=True)
    (blocker_dir / "sitecustomize.py").write_text(_BLOCKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker_dir), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_blocker_blocks_torch(tmp_path: Path) -> None:
    result = _python(tmp_path, "-c", "import torch")

    assert result.returncode == 1
    assert "torch is blocked in this test" in result.stderr


def test_emit_with_workers_and_import_never_import_torch(tmp_path: Path) -> None:
    pages = [draw_page(tmp_path / f"p{index}.png", shade=index) for index in range(3)]
    text = "<|ref|>text<|/ref|><|det|>[[100, 100, 500, 400]]<|/det|>\nHello"
    run_dir = make_run(tmp_path / "captured", [prediction_row(i, page, text) for i, page in enumerate(pages)])
    outputs = write_jsonl(tmp_path / "o.jsonl", [{"image": str(page), "text": text} for page in pages])

    emitted = _python(tmp_path, "-c", _RUN_CLI, "emit", str(run_dir), "--jobs", "2", "--crops")
    imported = _python(tmp_path, "-c", _RUN_CLI, "import", str(outputs), "--out", str(tmp_path / "imported"))
    emitted_import = _python(tmp_path, "-c", _RUN_CLI, "emit", str(tmp_path / "imported"), "--jobs", "1")

    for result in (emitted, imported, emitted_import):
        assert result.returncode == 0, result.stderr
    assert "3 rendered of 3" in emitted.stdout
    assert "3 rendered of 3" in emitted_import.stdout
    assert read_info(run_dir, pages[0])["boxes"][0]["box"] == [40, 30, 200, 120]
