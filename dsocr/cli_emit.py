"""`dsocr emit` and `dsocr import` (registered on import)."""
