"""The import layers, read from the source (AST) of every .py file of the repository.

    CLI (dsocr.cli*, dsocr._app)         may import anything below
    stages (dsocr.capture|analyze|emit)  import the contract, never each other, never the CLI
    contract (every other dsocr.*)       imports no stage and no CLI

No bare ``import capture|analyze|emit`` anywhere (they install inside dsocr), and only
dsocr.capture imports torch, transformers or nvtx. ``train/`` (the layout model's training and
evaluation scripts) is scanned too: it may import torch and dsocr, and nothing in dsocr imports
it. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("capture", "analyze", "emit")
#: Where each repository folder installs.
PACKAGE_OF_FOLDER = {"dsocr": "dsocr", **{stage: f"dsocr.{stage}" for stage in STAGES}}
#: Scripts outside the package: they may use dsocr, dsocr never imports them.
SCRIPT_FOLDERS = ("train",)
SCANNED_FOLDERS = (*PACKAGE_OF_FOLDER, "tests", "bench", *SCRIPT_FOLDERS)
MODEL_STACK = ("torch", "transformers", "nvtx")
CLI_MODULES = ("dsocr.cli", "dsocr._app")


@dataclass(frozen=True)
class Import:
    module: str  # importing module, dotted (tests/bench: the file path)
    target: str  # imported module, absolute and dotted
    line: int


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT)
    folder, *rest = relative.with_suffix("").parts
    package = PACKAGE_OF_FOLDER.get(folder)
    if package is None:
        return str(relative)
    parts = [part for part in rest if part != "__init__"]
    return ".".join([package, *parts])


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level == 0:
            base = node.module or ""
        else:
            # Relative: resolve against the importing module's package.
            package = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{node.module}" if node.module else package
        # `from dsocr import capture` imports the module dsocr.capture: count each name too.
        return [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
    return []


def _python_files() -> list[Path]:
    files: list[Path] = []
    for folder in SCANNED_FOLDERS:
        files.extend(sorted((ROOT / folder).rglob("*.py")))
    return [path for path in files if ".venv" not in path.parts]


def _imports() -> list[Import]:
    found = []
    for path in _python_files():
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for target in _targets(node, module, path.name == "__init__.py"):
                found.append(Import(module, target, node.lineno))
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def _layer(name: str) -> str | None:
    """cli, a stage name, contract, or None (not dsocr: a third-party module, a test)."""
    if not name.startswith("dsocr"):
        return None
    if name == "dsocr":
        return "contract"
    if any(name == cli or name.startswith(f"{cli}_") or name.startswith(f"{cli}.") for cli in CLI_MODULES):
        return "cli"
    second = name.split(".")[1]
    return second if second in STAGES else "contract"


def _violations(imports: list[Import]) -> list[str]:
    problems = []
    for item in imports:
        where = f"{item.module}:{item.line} imports {item.target}"
        if _top(item.target) in STAGES:
            problems.append(f"{where}: a bare stage import (use dsocr.{item.target})")
        source, target = _layer(item.module), _layer(item.target)
        if _top(item.target) in SCRIPT_FOLDERS and source is not None:
            problems.append(f"{where}: the runtime never imports {_top(item.target)}/ (scripts, not the package)")
        if _top(item.target) in MODEL_STACK and source not in (None, "capture"):
            problems.append(f"{where}: only dsocr.capture may import {_top(item.target)}")
        if source is None or target is None or source == target:
            continue
        if source in STAGES and target in (*STAGES, "cli"):
            problems.append(f"{where}: a stage imports another stage or the CLI")
        if source == "contract" and target != "contract":
            problems.append(f"{where}: the contract imports a stage or the CLI")
    return problems


def test_the_scan_sees_every_layer() -> None:
    # Guards the test itself: a scan that found nothing would pass everything.
    layers = {_layer(item.module) for item in _imports()}
    assert {"cli", "contract", *STAGES} <= layers
    assert len(_python_files()) > 50
    assert any(item.module.startswith("train/") for item in _imports())


def test_no_bare_stage_imports_and_the_layers_hold() -> None:
    assert _violations(_imports()) == []


@pytest.mark.parametrize(
    ("module", "source", "problem"),
    [
        ("capture/x.py", "import capture.runner", "a bare stage import"),
        ("tests/x.py", "from analyze import runner", "a bare stage import"),
        ("bench/x.py", "import emit", "a bare stage import"),
        ("analyze/x.py", "from dsocr.emit.worker import render_image", "a stage imports another stage"),
        ("emit/x.py", "def f():\n    from dsocr.capture import models", "a stage imports another stage"),
        ("emit/x.py", "from dsocr import capture", "a stage imports another stage"),
        ("analyze/x.py", "from dsocr import cli_analyze", "a stage imports another stage or the CLI"),
        ("dsocr/rundir.py", "from dsocr.analyze.keys import image_key", "the contract imports"),
        ("dsocr/vocab.py", "from ._app import app", "the contract imports"),
        ("analyze/x.py", "import torch", "only dsocr.capture may import torch"),
        ("dsocr/cli_emit.py", "from transformers import AutoModel", "only dsocr.capture may import transformers"),
        ("emit/sub/x.py", "from ...capture.models import load_model", "a stage imports another stage"),
        ("capture/x.py", "from train.pages import draw_page", "the runtime never imports train/"),
        ("dsocr/cli.py", "import train", "the runtime never imports train/"),
    ],
)
def test_each_rule_catches_its_violation(module: str, source: str, problem: str) -> None:
    path = ROOT / module
    name = _module_name(path)
    imports = [
        Import(name, target, node.lineno)
        for node in ast.walk(ast.parse(source))
        for target in _targets(node, name, is_package=False)
    ]
    problems = _violations(imports)
    assert any(problem in line for line in problems), problems


@pytest.mark.parametrize(
    "source",
    [
        "from dsocr.vocab import Stage",  # a stage may use the contract
        "import numpy",
        "from . import keys",
    ],
)
def test_allowed_imports_pass(source: str) -> None:
    name = _module_name(ROOT / "analyze" / "x.py")
    imports = [Import(name, t, n.lineno) for n in ast.walk(ast.parse(source)) for t in _targets(n, name, False)]
    assert _violations(imports) == []


def test_the_cli_may_import_every_stage() -> None:
    name = _module_name(ROOT / "dsocr" / "cli_capture.py")
    source = "from dsocr.capture.runner import run\nfrom dsocr.emit import render_run\nimport dsocr.analyze"
    imports = [Import(name, t, n.lineno) for n in ast.walk(ast.parse(source)) for t in _targets(n, name, False)]
    assert _violations(imports) == []
