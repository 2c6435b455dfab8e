"""Where each image token of DeepSeek-OCR-2 looks on the page, and what the page has there.

The auxiliary cell loss of train/train_layout.py (``--cell-loss-weight``) asks the decoder's
last hidden state at every image token to say which block covers that token's cell (its label,
or none) and that block's box (each coordinate in ``BOX_BINS`` bins of the 0..999 scale). The
answer tokens then only have to find the right image token and copy what it says, instead of
learning detection through the answer alone. The head is discarded: the checkpoint is the
model's own weights.

Geometry (transformers' DeepseekOcr2ImageProcessorPil): the local crops come first, tile by
tile, row-major, ``tile // 64`` tokens a side, each tile a ``1/columns`` x ``1/rows`` part of the
page (the page is resized to the tile grid without keeping its aspect ratio); then the global
view, ``view // 64`` tokens a side, the page scaled so its long side fills the view and centred
on a square; then one view-separator token (no target).
"""

from __future__ import annotations

from collections.abc import Sequence

try:  # the processor's own choice of the crop grid, whatever transformers' version
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import get_optimal_tiled_canvas
except ImportError:  # pragma: no cover - another transformers layout: the same rule, copied (5.25)
    get_optimal_tiled_canvas = None  # type: ignore[assignment]

from train.pages import COORDINATE_SCALE, LABELS

TOKEN_PIXELS = 64  # SAM patch 16 x the 4x downsampling before the vision encoder
TILE = 768
MIN_CROPS, MAX_CROPS = 2, 6
BOX_BINS = 20
NO_BLOCK = 0  # label class of a cell no block covers (labels are 1 + LABELS.index)
IGNORE = -100
CLASSES = 1 + len(LABELS)

Box = tuple[float, float, float, float]


def crop_grid(width: int, height: int) -> tuple[int, int]:
    """(columns, rows) of the local crops the processor cuts from a page of this size."""
    if get_optimal_tiled_canvas is not None:
        return get_optimal_tiled_canvas((height, width), (TILE, TILE), MIN_CROPS, MAX_CROPS)
    grids = sorted(
        [(c, r) for c in range(1, MAX_CROPS + 1) for r in range(1, MAX_CROPS + 1) if MIN_CROPS <= c * r <= MAX_CROPS],
        key=lambda grid: grid[0] * grid[1],
    )
    best, best_difference = (1, 1), float("inf")
    for grid in grids:
        difference = abs(width / height - grid[0] / grid[1])
        if difference < best_difference:
            best, best_difference = grid, difference
        elif difference == best_difference and width * height > 0.5 * TILE * TILE * grid[0] * grid[1]:
            best = grid
    return best


def token_centres(width: int, height: int, view: int, crops: bool) -> list[tuple[float, float] | None]:
    """Each image token's cell centre as a page fraction (x, y), in the model's feature order;
    None for a global-view token on the padding and for the separator."""
    centres: list[tuple[float, float] | None] = []
    if crops and max(width, height) > TILE:
        columns, rows = crop_grid(width, height)
        side = TILE // TOKEN_PIXELS
        for tile in range(columns * rows):
            column, row = tile % columns, tile // columns
            for index in range(side * side):
                y, x = divmod(index, side)
                centres.append(((column + (x + 0.5) / side) / columns, (row + (y + 0.5) / side) / rows))
    scale = view / max(width, height)
    scaled_width, scaled_height = round(width * scale), round(height * scale)
    left = (view - scaled_width) // 2 if height > width else 0
    top = (view - scaled_height) // 2 if width > height else 0
    side = view // TOKEN_PIXELS
    for index in range(side * side):
        y, x = divmod(index, side)
        fx = ((x + 0.5) * TOKEN_PIXELS - left) / scaled_width
        fy = ((y + 0.5) * TOKEN_PIXELS - top) / scaled_height
        centres.append((fx, fy) if 0 <= fx < 1 and 0 <= fy < 1 else None)
    centres.append(None)  # the view separator
    return centres


def cell_targets(
    centres: Sequence[tuple[float, float] | None], blocks: Sequence[tuple[str, Box]]
) -> list[tuple[int, int, int, int, int]]:
    """Per token: (label class, x1, y1, x2, y2 bins) of the smallest block (0..999 boxes) covering its
    centre; (NO_BLOCK, IGNORE x 4) on the page outside every block; all IGNORE where there is no page."""
    targets = []
    for centre in centres:
        if centre is None:
            targets.append((IGNORE,) * 5)
            continue
        x, y = centre[0] * COORDINATE_SCALE, centre[1] * COORDINATE_SCALE
        covering = [(label, box) for label, box in blocks if box[0] <= x <= box[2] and box[1] <= y <= box[3]]
        if not covering:
            targets.append((NO_BLOCK,) + (IGNORE,) * 4)
            continue
        label, box = min(covering, key=lambda item: (item[1][2] - item[1][0]) * (item[1][3] - item[1][1]))
        bins = tuple(min(BOX_BINS - 1, int(value * BOX_BINS / (COORDINATE_SCALE + 1))) for value in box)
        targets.append((1 + LABELS.index(label), *bins))
    return targets
