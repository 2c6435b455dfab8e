"""What a newcomer sees first (issue 25): the README's set-up and commands, capture's resolved
``inf`` cap, table titles on one line at 120 columns, the report's options as they ran."""

from __future__ import annotations

import dataclasses
import io
import re
from collections import Counter
from pathlib import Path

import pytest
from analyze_helpers import gpu_run_or_skip
from dsocr.analyze.report import renderables
from dsocr.analyze.runner import analyze_run
from dsocr.analyze.table_fit import NamedTable, Whole
from dsocr.report.glance import config_options
from rich.console import Console

from dsocr.cli_capture_view import print_summary, token_cap
from dsocr.rundir import read_predictions, read_run_json

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "quickstart.md"
WIDE_TERMINAL = 120
_BASH_BLOCK = re.compile(r"```(?:bash|sh)\n(.*?)```", flags=re.S)
_COMMAND = re.compile(r"(?:^|&&\s*|\|\s*)(\S*dsocr) ([a-z-]+)", flags=re.M)


def _blocks(path: Path) -> list[str]:
    return _BASH_BLOCK.findall(path.read_text())


def test_the_first_command_installs_every_extra_the_readme_uses_and_runs_in_a_fresh_shell() -> None:
    first = _blocks(README)[0]
    extras = set(re.search(r"-e '\.\[([a-z,]+)\]'", first).group(1).split(","))
    assert {"capture", "report", "dev"} <= extras
    commands = [command for _call, command in _COMMAND.findall(first)]
    assert commands == ["capture", "analyze", "emit", "report"]
    # A fresh shell has neither an activated .venv nor just on PATH.
    assert {call for call, _command in _COMMAND.findall(first)} == {".venv/bin/dsocr"}
    assert not re.search(r"(?m)^\s*just ", first)


@pytest.mark.parametrize("path", [README, QUICKSTART], ids=["README", "quickstart"])
def test_every_command_line_calls_dsocr_one_way(path: Path) -> None:
    calls = {call for block in _blocks(path) for call, _command in _COMMAND.findall(block)}
    assert calls == {".venv/bin/dsocr"}, calls


def test_the_test_command_names_the_fast_loop_and_the_full_suite_with_a_time() -> None:
    readme = README.read_text()
    tests = _blocks(README)[1]
    assert '-m "not slow"' in tests and "fast loop" in tests and "full suite" in tests
    assert re.search(r"[\d.]+ minutes on 2 cores", readme)


def test_no_doc_is_listed_twice() -> None:
    links = re.findall(r"(?m)^- \[(docs/[^\]]+)\]", README.read_text())
    assert links and [link for link, count in Counter(links).items() if count > 1] == []


def test_capture_prints_the_cap_that_inf_resolved_to(tmp_path: Path) -> None:
    from dsocr.capture.result import CaptureResult

    rows = read_predictions(gpu_run_or_skip()).to_pylist()
    inf = [{**row, "max_new_tokens_requested": None, "max_new_tokens_resolved": 1003} for row in rows]
    assert token_cap(inf) == "inf -> 1003"
    varied = [{**row, "max_new_tokens_resolved": 1000 + index} for index, row in enumerate(inf)]
    assert token_cap(varied) == f"inf -> 1000-{1000 + len(rows) - 1} (per image)"
    assert token_cap(rows) == "16"  # an integer that ran as asked
    result = CaptureResult(run_dir=tmp_path, model_id="m", device="cpu", is_leader=True, rows=tuple(inf),
                           capture_seconds=1.0)  # fmt: skip
    buffer = io.StringIO()
    print_summary(result, Console(file=buffer, width=WIDE_TERMINAL))
    assert re.search(r"max new tokens\s+│ inf -> 1003", buffer.getvalue())


def test_every_table_title_stays_on_one_line_at_120_columns() -> None:
    summary = analyze_run(gpu_run_or_skip(), write=False).summary
    tables = [item for item in renderables(summary) if isinstance(item, Whole | NamedTable)]
    assert tables
    for item in tables:
        table = item.table if isinstance(item, Whole) else item.build(str)
        buffer = io.StringIO()
        Console(file=buffer, width=WIDE_TERMINAL, color_system=None).print(item, crop=False)
        lines = [line.strip() for line in buffer.getvalue().splitlines()]
        for text in (table.title, table.caption):
            if isinstance(text, str) and len(text) <= WIDE_TERMINAL:
                assert text in lines, (text, lines[:3])


def test_the_reports_options_show_what_ran_not_false_or_a_dash() -> None:
    record = read_run_json(gpu_run_or_skip())
    defaults = dataclasses.replace(
        record.config, max_new_tokens=None, dtype=None, images=(), with_flops=False, keep_kineto=True
    )
    shown = config_options(dataclasses.replace(record, config=defaults))
    assert shown["max_new_tokens"] == "inf (until EOS, within the model's context)"
    assert shown["dtype"] == f"{record.model.dtype} (the device's default)"
    assert shown["images"] == "the sample pages"
    assert (shown["with_flops"], shown["keep_kineto"]) == ("off", "on")
    assert not [name for name, value in shown.items() if value is None or isinstance(value, bool | list)]
    assert "–" not in shown.values()
