"""Importing dsocr changes nothing process-wide; capture's loggers feed run.json's warnings."""

from __future__ import annotations

import ast
import importlib
import json
import logging
import pkgutil
import subprocess
import sys
from pathlib import Path

import dsocr.capture
from dsocr.capture.runner import _logging_to

from dsocr.records import ImageCounts, ModelRecord, RunRecord
from dsocr.rundir import read_run_json, write_run_json
from dsocr.vocab import RunKind, RunStatus

ROOT = Path(__file__).resolve().parents[1]

# In a fresh interpreter: import the third-party stack first (its own import-time settings are
# not ours to judge), snapshot umask and warnings.filters, import every dsocr module, compare.
_PROBE = """
import importlib, json, os, pkgutil, sys, warnings
os.umask(0o027)
for name in ("numpy", "pyarrow", "pyarrow.compute", "pyarrow.dataset", "pyarrow.parquet", "PIL.Image",
             "rich", "typer", "torch", "torch.profiler", "transformers", "nvtx", "sympy"):
    importlib.import_module(name)
filters_before = list(warnings.filters)
# Reading the umask means setting it (os.umask returns the old one): record any call at all.
umask_calls = []
real_umask = os.umask
os.umask = lambda mask: umask_calls.append(mask) or real_umask(mask)
import dsocr
names = ["dsocr"]
names += [m.name for m in pkgutil.walk_packages(dsocr.__path__, "dsocr.")]
for package in ("dsocr.capture", "dsocr.analyze", "dsocr.emit"):
    module = importlib.import_module(package)
    names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
for name in names:
    importlib.import_module(name)
os.umask = real_umask
umask_after = os.umask(0)
print(json.dumps({
    "modules": sorted(set(names)),
    "umask": umask_after,
    "umask_calls": umask_calls,
    "filters_unchanged": list(warnings.filters) == filters_before,
    "added": [str(f) for f in warnings.filters if f not in filters_before],
}))
"""


def test_importing_every_module_leaves_umask_and_warning_filters_alone() -> None:
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The probe saw the whole package, not a part of it.
    assert {"dsocr.rundir", "dsocr.capture.tracing", "dsocr.analyze.runner", "dsocr.emit.worker"} <= set(
        report["modules"]
    )
    assert (report["umask"], report["umask_calls"]) == (0o027, [])
    assert report["filters_unchanged"], report["added"]


def _capture_modules() -> list[str]:
    return [module.name for module in pkgutil.walk_packages(dsocr.capture.__path__, "dsocr.capture.")]


def test_every_logger_is_named_after_its_package() -> None:
    """Logger names come from ``__package__``, never a typed string: the installed name
    (dsocr.capture, not capture) is what run.json's collector listens on."""
    calls = []
    for folder in ("capture", "analyze", "emit", "dsocr"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger":
                    calls.append((f"{folder}/{path.name}", ast.unparse(node.args[0]) if node.args else "(root)"))
    assert calls, "no logger found at all: the scan is broken"
    assert [call for call in calls if call[1] != "__package__"] == []


def test_a_warning_from_any_capture_module_reaches_run_json(tmp_path: Path) -> None:
    """While a capture runs, its package logger feeds run.json's warnings (capture.runner._logging_to);
    a logger any capture module gets from its ``__package__`` or ``__name__`` reaches it."""
    warnings: list[str] = []
    with _logging_to(tmp_path, warnings, 0):
        for name in _capture_modules():
            module = importlib.import_module(name)
            for logger_name in (module.__package__, module.__name__):
                logging.getLogger(logger_name).warning("from %s via %s", name, logger_name)
    record = RunRecord(
        kind=RunKind.capture,
        status=RunStatus.running,
        model=ModelRecord(id="m"),
        images=ImageCounts(total=0),
        warnings=tuple(warnings),
    )
    write_run_json(tmp_path, record)
    # A subpackage's modules (capture/families/) log under it, a child of dsocr.capture; the
    # collector keeps each distinct message once.
    modules = [importlib.import_module(name) for name in _capture_modules()]
    expected = list(
        dict.fromkeys(
            f"from {module.__name__} via {logger}"
            for module in modules
            for logger in (module.__package__, module.__name__)
        )
    )
    assert all(module.__package__.startswith("dsocr.capture") for module in modules)
    assert list(read_run_json(tmp_path).warnings) == expected
    assert len(expected) >= 2 * 15  # every capture module took part
