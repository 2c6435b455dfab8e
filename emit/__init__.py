"""Stage 3: per-image result_with_boxes.jpg and info.json from the Parquet alone (no torch)."""
