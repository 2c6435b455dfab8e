"""A page's pixels as a person sees them, whatever the file stores: what capture feeds the model
and what emit draws boxes on, so both see the same page.

Pillow's own ``convert("RGB")`` clips 16-bit samples (a 16-bit scan becomes white), truncates
floats (a 0..1 float TIFF becomes black) and drops alpha (transparent pixels keep whatever colour
they store, often black). Here: integer samples are scaled from their bit depth, floats from
their range, alpha is laid over a white page, EXIF orientation is applied.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from PIL import Image, ImageOps

RGB = "RGB"
#: Pillow's modes of one integer sample wider than 8 bits (16-bit PNG and TIFF grayscale, 32-bit TIFF).
_WIDE_INTEGER_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
FLOAT_MODE = "F"
#: Full scale of a 16-bit sample, and of an 8-bit one.
MAX_16_BIT = 65535
MAX_8_BIT = 255
#: A float sample's nominal full scale: 1.0 (the convention of float images), else the widest
#: integer range its values fit (8-bit, 16-bit), else its own maximum.
FLOAT_FULL_SCALES = (1.0, float(MAX_8_BIT), float(MAX_16_BIT))
WHITE = (255, 255, 255, 255)


class NotRegularFileError(OSError):
    """A path that is a FIFO, a device, a socket or a folder where an image file should be."""


def check_regular_file(path: Path) -> None:
    """OSError unless ``path`` (links followed) is a regular file, found without opening it: opening
    a FIFO blocks until something writes to it, a device may never end."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind}): refused without opening it", str(path))


def frame_count(image: Image.Image) -> int:
    """How many pages (frames) the opened file holds: a multi-page TIFF, an animated GIF."""
    return int(getattr(image, "n_frames", 1))


def _integer_full_scale(image: Image.Image) -> int:
    if image.mode != "I":
        return MAX_16_BIT  # the I;16 modes
    _low, high = image.getextrema()
    return max(MAX_16_BIT, int(high))  # a 32-bit TIFF of 16-bit data; else its own maximum


def _float_full_scale(image: Image.Image) -> float:
    _low, high = image.getextrema()
    return next((scale for scale in FLOAT_FULL_SCALES if high <= scale), float(high))


def _scaled_to_8_bit(image: Image.Image, full_scale: float) -> Image.Image:
    """Grayscale ``image`` (mode I or F) with ``full_scale`` mapped to 255; below 0 is black."""
    factor = MAX_8_BIT / full_scale
    return image.point(lambda value: value * factor).convert("L")


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info


def page_rgb(image: Image.Image) -> Image.Image:
    """``image`` (loaded) as the RGB page a viewer shows: EXIF orientation applied, wide samples
    scaled, alpha over white, CMYK and palettes converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_INTEGER_MODES:
        wide = image if image.mode == "I" else image.convert("I")
        image = _scaled_to_8_bit(wide, _integer_full_scale(image))
    elif image.mode == FLOAT_MODE:
        image = _scaled_to_8_bit(image, _float_full_scale(image))
    elif _has_alpha(image):
        page = Image.new("RGBA", image.size, WHITE)
        image = Image.alpha_composite(page, image.convert("RGBA"))
    return image if image.mode == RGB else image.convert(RGB)
