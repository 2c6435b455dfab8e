"""Stage 2: per-image, per-stage timings from the Parquet trace alone (pyarrow, no torch)."""
