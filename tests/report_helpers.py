"""Helpers for the report tests: load a page in real headless Chromium and see what it drew."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Debian's package; CI installs it (.ci/run).
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: Virtual time the page gets to run its scripts before the DOM is dumped (plotly draws synchronously).
SCRIPT_BUDGET_MS = 20_000
BROWSER_TIMEOUT_S = 180
WINDOW = "1280,2400"


@dataclass(frozen=True)
class Loaded:
    """What the browser saw: the DOM after scripts ran and every console message."""

    dom: str
    console: list[str]

    def plot_ids(self) -> list[str]:
        return re.findall(r'<div id="(plot-\d+)"', self.dom)

    def drawn_ids(self) -> list[str]:
        """Plot containers plotly drew into: it adds js-plotly-plot and an svg.main-svg inside."""
        drawn = []
        for plot_id in self.plot_ids():
            start = self.dom.index(f'<div id="{plot_id}"')
            head = self.dom[start : start + 4000]
            if "js-plotly-plot" in head[:300] and 'class="main-svg"' in head:
                drawn.append(plot_id)
        return drawn


def browser_or_skip() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium: `apt-get install -y chromium` (Debian) to run the browser tests")


def _run(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               "--enable-logging=stderr", "--v=0", f"--window-size={WINDOW}", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=True)


def load(page: Path) -> Loaded:
    """The page's DOM after its scripts ran, and the console lines Chromium logged for it."""
    done = _run(browser_or_skip(), f"--virtual-time-budget={SCRIPT_BUDGET_MS}", "--dump-dom", page.resolve().as_uri())
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return Loaded(dom=done.stdout, console=console)


def screenshot(page: Path, png: Path) -> Path:
    _run(browser_or_skip(), f"--virtual-time-budget={SCRIPT_BUDGET_MS}", f"--screenshot={png}", page.resolve().as_uri())
    return png
