"""Integer keys for numpy grouping: one int64 per image, per image and step."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_IMAGE_BITS = 32
_IMAGE_MASK = (1 << _IMAGE_BITS) - 1


def image_key(table: pa.Table) -> np.ndarray:
    """``rank << 32 | image_index`` per row (both are non-negative int32 in every dsocr table)."""
    rank = table["rank"].fill_null(0).to_numpy().astype(np.int64)
    image = table["image_index"].to_numpy().astype(np.int64)
    return (rank << _IMAGE_BITS) | image


def split_image_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank, image_index) arrays of image keys."""
    keys = np.asarray(keys, dtype=np.int64)
    return (keys >> _IMAGE_BITS).astype(np.int32), (keys & _IMAGE_MASK).astype(np.int32)


def step_key(image_keys: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """One int64 per (image, step): the image's dense index in the high bits, the step below."""
    _, dense = np.unique(image_keys, return_inverse=True)
    return (dense.astype(np.int64) << _IMAGE_BITS) | np.asarray(steps, dtype=np.int64)
