"""analyze's terminal tables at 80 columns (and narrower): no number or header is ever cut;
long names are shortened in the middle, C++ names demangled; --wide prints them whole."""

from __future__ import annotations

import io
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from analyze_helpers import gpu_run_or_skip
from dsocr.analyze.names import _QUALIFIERS, ELLIPSIS, demangle_all, function_name, short_name
from dsocr.analyze.report import renderables
from dsocr.analyze.runner import analyze_run
from dsocr.analyze.summary import Summary
from dsocr.analyze.table_fit import NamedTable, Whole
from rich.console import Console
from typer.testing import CliRunner

import dsocr.cli  # noqa: F401  (registers every command)
from dsocr._app import app

TERMINAL = 80
#: Rich separates cells by their padding: two spaces or more.
_CELL_GAP = re.compile(r"\s{2,}")
#: A figure cell: 1,234.56 / -0.29% / 1284.5/2171.8 / 11.8%/0.45% / 2,864.
_NUMBER = re.compile(r"[-+]?[\d,]+(?:\.\d+)?%?(?:/[-+]?[\d,]+(?:\.\d+)?%?)?")


@pytest.fixture(scope="module")
def summary() -> Summary:
    return analyze_run(gpu_run_or_skip(), write=False).summary


def _render(item: object, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(item, crop=False)
    return buffer.getvalue()


def _cells(text: str) -> list[str]:
    return [cell for line in text.splitlines() for cell in _CELL_GAP.split(line.strip()) if cell]


def _numbers(text: str) -> Counter[str]:
    return Counter(cell for cell in _cells(text) if _NUMBER.fullmatch(cell))


def _tables(summary: Summary) -> list[Whole | NamedTable]:
    return [item for item in renderables(summary) if isinstance(item, Whole | NamedTable)]


def _headers(item: Whole | NamedTable) -> list[str]:
    table = item.table if isinstance(item, Whole) else item.build(str)
    return [str(column.header) for column in table.columns if column.header]


def test_every_table_fits_80_columns_with_every_number_and_header_whole(summary: Summary) -> None:
    tables = _tables(summary)
    assert len(tables) >= 4  # stages, latency, top kernels, roofline
    for item in tables:
        narrow, unconstrained = _render(item, TERMINAL), _render(item, 10_000)
        assert max(len(line) for line in narrow.splitlines()) <= TERMINAL, narrow
        # Every figure cell of the unconstrained table is in the 80-column one, unchanged.
        assert _numbers(narrow) == _numbers(unconstrained) and _numbers(narrow), narrow
        rows = [[cell for cell in _CELL_GAP.split(line.strip()) if cell] for line in narrow.splitlines()]
        assert _headers(item) in rows, narrow


def test_names_are_shortened_in_the_middle_and_keep_the_function_name(summary: Summary) -> None:
    top = next(item for item in _tables(summary) if isinstance(item, NamedTable))
    narrow = _render(top, TERMINAL)
    for name in top.names:
        assert name not in narrow or len(name) < 30
    assert " device_kernel<…> " in narrow  # the mangled _ZN7cutlass13device_kernelI... name
    assert "elementwise_kernel<" in narrow
    assert "_ZN" not in narrow and "void " not in narrow


def test_a_terminal_narrower_than_a_table_wraps_it_instead_of_cutting(summary: Summary) -> None:
    for item in _tables(summary):
        assert _numbers(_render(item, 40)) == _numbers(_render(item, 10_000))


def test_wide_prints_every_name_whole(summary: Summary) -> None:
    top = next(item for item in renderables(summary, wide=True) if isinstance(item, NamedTable))
    text = _render(top, TERMINAL)
    full = demangle_all(top.names)
    for name in top.names:
        assert full.get(name, name) in text


def test_the_cli_prints_at_80_columns_and_wide(tmp_path: Path) -> None:
    run_dir = tmp_path / "gpu-run"
    shutil.copytree(gpu_run_or_skip(), run_dir)
    runner = CliRunner(env={"COLUMNS": str(TERMINAL)})
    default = runner.invoke(app, ["analyze", str(run_dir)])
    wide = runner.invoke(app, ["analyze", str(run_dir), "--wide"])
    assert default.exit_code == 0 and wide.exit_code == 0, default.output + wide.output
    table_lines = [line for line in default.output.splitlines() if line.startswith("  ")]
    assert max(len(line) for line in table_lines) <= TERMINAL
    assert "calls   total ms   mean µs   share" in default.output
    assert ELLIPSIS in default.output and max(len(line) for line in wide.output.splitlines()) > 500


@pytest.mark.parametrize(
    ("mangled", "expected"),
    [
        ("_ZN7cutlass13device_kernelIN2at4cuda6detailEEEvT_", "cutlass::device_kernel<…>"),
        ("_Z17gemv2T_kernel_valIiiffLi128EEvT_", "gemv2T_kernel_val<…>"),
        ("_ZN2at6native12_GLOBAL__N_18mykernelEPf", "at::native::(anonymous namespace)::mykernel"),
        ("_ZNSt6vectorIiE9push_backEv", "std::vector<…>"),
        ("_ZL11static_kernv", "static_kern"),
        ("_Z", None),
        ("_ZN99tooshortE", None),
        ("aten::mm", None),
    ],
)
def test_function_name_of_a_mangled_name(mangled: str, expected: str | None) -> None:
    assert function_name(mangled) == expected


@pytest.mark.parametrize("width", [16, 24, 30, 44, 60])
def test_short_names_fit_and_keep_what_they_can(summary: Summary, width: int) -> None:
    for row in summary.top:
        short = short_name(row.name, width)
        original = function_name(row.name) or row.name
        assert len(short) <= width
        # Every piece shown is a piece of the name (qualifiers inside template arguments dropped).
        for piece in re.split(f"{ELLIPSIS}|<", short):
            assert piece in original or piece in _QUALIFIERS.sub("", original), (short, original)
    assert short_name("aten::mm", width) == "aten::mm"
    signature = "void at::native::vectorized_gather_kernel<16, long>(char*, char*, long*, int)"
    assert short_name(signature, 60) == "at::native::vectorized_gather_kernel<16, long>"
    assert short_name(signature, 44) == "at::native::vectorized_gather_kernel<…>"
    assert short_name(signature, 30) == "vectorized_gather_kernel<…>"
