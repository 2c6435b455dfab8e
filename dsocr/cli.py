"""The ``dsocr`` command line: each command parses options and calls one library function."""

from __future__ import annotations

from dsocr import cli_analyze, cli_capture, cli_compare, cli_emit, cli_report, cli_sweep  # noqa: F401  (each registers its commands)
from dsocr._app import app


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
