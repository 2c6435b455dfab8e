"""Find the images a capture should read, and open one safely."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from dsocr.errors import BadInputError, DsocrError
from dsocr.pixels import NotRegularFileError, check_regular_file, frame_count, page_rgb
from dsocr.rundir import resolved

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
LIST_SUFFIXES = frozenset({".txt", ".lst"})
#: What a folder is searched for: images, and PDF documents (capture/pdf.py expands their pages).
INPUT_SUFFIXES = IMAGE_SUFFIXES | {".pdf"}
#: Larger images are refused before decoding: a page scan at 600 dpi is about 35 MP.
MAX_IMAGE_PIXELS = 64_000_000


class ImageReadError(DsocrError):
    """One image cannot be used; the run records it as a failed row and goes on."""


def _from_list_file(list_file: Path) -> list[Path]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{list_file}: not a list of image paths (not UTF-8 text)") from None
    except OSError as exc:
        raise BadInputError(f"{list_file}: unreadable ({exc.strerror})") from None
    paths = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if entry and not entry.startswith("#"):
            if "\0" in entry:
                raise BadInputError(f"{list_file}:{number}: a path with a NUL byte (a binary file?)")
            path = Path(entry).expanduser()
            paths.append(path if path.is_absolute() else list_file.parent / path)
    return paths


def discover_images(arguments: tuple[str, ...]) -> list[Path]:
    """Absolute paths, in order, without duplicates: files, folders (recursive) and list files.

    A named path that does not exist is kept: it becomes a failed row, not a silent skip; so is a
    folder holding no image (its row says so), unless no argument holds any image (refused).
    A file name that is not UTF-8 is refused: run.json and the Parquet columns hold UTF-8 text.
    """
    found: list[Path] = []
    images_found = False
    for argument in arguments:
        if "\0" in argument:
            raise BadInputError(f"image argument {argument!r} holds a NUL byte")
        path = Path(argument).expanduser()
        if path.is_dir():
            in_folder = sorted(p for p in path.rglob("*") if p.suffix.lower() in INPUT_SUFFIXES and p.is_file())
            found.extend(in_folder or [path])
            images_found = images_found or bool(in_folder)
            continue
        images_found = True
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found.extend(_from_list_file(path))
        else:
            found.append(path)
    unique = list(dict.fromkeys(resolved(p) for p in found))
    if not unique or not images_found:
        raise BadInputError(f"no images found in {', '.join(arguments)}")
    for path in unique:
        check_utf8_name(path)
    return unique


def check_utf8_name(path: Path) -> None:
    """BadInputError naming ``path`` (undecodable bytes as ``\\xNN``) unless it is UTF-8 text."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise BadInputError(
            f"{shown}: the file name is not UTF-8 (dsocr records paths as UTF-8 text): rename it"
        ) from None


def _folder_reason(path: Path) -> str:
    suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
    return f"{path}: a folder holding no image (searched recursively for {suffixes})"


def load_image(path: Path) -> Image.Image:
    """The page as a person sees it, as RGB (dsocr.pixels: EXIF orientation applied, 16-bit and
    float samples scaled, alpha over white); DeepSeek-OCR's boxes refer to that image.

    Only a regular file is opened (a FIFO would block forever); a file of several pages is
    refused, never read as its first page alone.
    """
    try:
        if path.is_dir():
            raise ImageReadError(_folder_reason(path))
        check_regular_file(path)
        with Image.open(path) as opened:
            width, height = opened.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageReadError(
                    f"{path}: {width}x{height} is {width * height / 1e6:.0f} MP, over the "
                    f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP limit (MAX_IMAGE_PIXELS)"
                )
            pages = frame_count(opened)
            if pages > 1:
                raise ImageReadError(
                    f"{path}: a {opened.format} of {pages} pages; capture reads one page per file "
                    "(split it into one file per page)"
                )
            opened.load()
            return page_rgb(opened)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except NotRegularFileError as exc:
        raise ImageReadError(f"{path}: {exc.strerror}") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: unreadable image ({exc})") from None
