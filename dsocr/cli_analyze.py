"""`dsocr analyze` and `dsocr export-trace` (registered on import)."""
