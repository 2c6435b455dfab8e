"""One self-contained HTML page per run (or per pair of runs), from the files analyze wrote.

Needs the ``[report]`` extra (plotly); never imports torch or another stage.
"""

from __future__ import annotations

from dsocr.report.build import ReportResult, build_report, default_output

__all__ = ["ReportResult", "build_report", "default_output"]
