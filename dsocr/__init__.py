"""dsocr: profile DeepSeek-OCR inference, then analyze and render from Parquet alone.

This package is the shared contract: run-directory layout, Parquet schemas and the CLI.
It never imports torch; only the ``capture`` package does.
"""

__version__ = "0.1.0"
