"""PDF documents as capture inputs: one row per page, each page rendered with pypdfium2.

A page is named by a page key, ``"<absolute pdf path>#page=<N>"`` (N 1-based): the key is the
row's ``image_path``, its md5 the row's ``image_md5`` and viz folder (docs/run-format.md). The
page is rendered at ``--dpi`` (the vendor's PDF script renders at 144) before any timed range,
and the rendered pixels are kept once in the run, ``pages/<image_md5>.png``, where emit draws.
A PDF that cannot be read (damaged, encrypted, empty) stays one input, the bare PDF path,
which fails with a one-line reason when capture comes to it: the other inputs go on.
No torch here; pypdfium2 (capture's extra) is imported when a PDF is opened.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsocr.capture.images import MAX_IMAGE_PIXELS, ImageReadError, discover_images, load_image
from PIL import Image

from dsocr.errors import BadInputError
from dsocr.pixels import NotRegularFileError, check_regular_file
from dsocr.rundir import PAGES_DIR, make_folder, path_md5, temp_beside, writing

if TYPE_CHECKING:
    import pypdfium2

PDF_SUFFIX = ".pdf"
PAGE_FRAGMENT = "#page="
#: PDF user space: 72 points per inch, so a page renders at scale dpi / 72.
POINTS_PER_INCH = 72
MIN_DPI, MAX_DPI = 18, 1200
#: PNG level of the stored page: lossless (emit draws on the model's pixels), fast to write.
PAGE_PNG_COMPRESS_LEVEL = 1
MS_PER_S = 1000
_PAGE_KEY = re.compile(r"^(?P<pdf>.+\.pdf)#page=(?P<page>[1-9][0-9]*)$", re.IGNORECASE)
_PAGE_RANGE = re.compile(r"^(?P<first>[0-9]+)(?:-(?P<last>[0-9]+))?$")


@dataclass(frozen=True)
class PageSelection:
    """``--pages 1-3,7``: 1-based page ranges, inclusive; None selects every page."""

    text: str
    ranges: tuple[tuple[int, int], ...]

    def pages(self, page_count: int) -> list[int]:
        """The selected pages of a document of ``page_count`` pages, in order, each once."""
        chosen = {page for first, last in self.ranges for page in range(first, min(last, page_count) + 1)}
        return sorted(chosen)


def parse_pages(text: str | None) -> PageSelection | None:
    """``--pages``: comma-separated pages and ranges (``1-3,7``); BadInputError when malformed."""
    if text is None:
        return None
    ranges = []
    for part in text.split(","):
        match = _PAGE_RANGE.match(part.strip())
        if match is None:
            raise BadInputError(f"--pages {text!r}: use pages and ranges like 1-3,7 (1-based)")
        first = int(match["first"])
        last = int(match["last"]) if match["last"] else first
        if first < 1 or last < first:
            raise BadInputError(f"--pages {text!r}: {part.strip()} is not a range of pages from 1 up")
        ranges.append((first, last))
    return PageSelection(text=text, ranges=tuple(ranges))


def check_dpi(dpi: int) -> None:
    """Refuse a ``--dpi`` outside MIN_DPI..MAX_DPI."""
    if not MIN_DPI <= dpi <= MAX_DPI:
        raise BadInputError(f"--dpi must be between {MIN_DPI} and {MAX_DPI}, got {dpi}")


def page_key(pdf: Path, page: int) -> Path:
    """The input naming page ``page`` (1-based) of ``pdf`` (absolute)."""
    return Path(f"{pdf}{PAGE_FRAGMENT}{page}")


def parse_page_key(path: Path) -> tuple[Path, int] | None:
    """(pdf, page) when ``path`` is a page key, else None (a file of that very name is an image)."""
    match = _PAGE_KEY.match(str(path))
    if match is None or path.exists():
        return None
    return Path(match["pdf"]), int(match["page"])


def is_pdf(path: Path) -> bool:
    return path.suffix.lower() == PDF_SUFFIX


def _open_error(pdf: Path, exc: Exception) -> ImageReadError:
    message = str(exc)
    if isinstance(exc, FileNotFoundError):
        return ImageReadError(f"{pdf}: no such file")
    if "password" in message.lower():
        return ImageReadError(f"{pdf}: encrypted PDF (needs a password); decrypt it first")
    if isinstance(exc, NotRegularFileError):
        return ImageReadError(f"{pdf}: {exc.strerror}")
    if isinstance(exc, OSError):
        return ImageReadError(f"{pdf}: unreadable ({exc.strerror or exc})")
    return ImageReadError(f"{pdf}: damaged PDF ({message.strip().splitlines()[0] if message.strip() else exc})")


@contextmanager
def open_pdf(pdf: Path) -> Iterator[pypdfium2.PdfDocument]:
    """The open document; ImageReadError (one line) when damaged, encrypted, empty or missing."""
    import pypdfium2

    try:
        check_regular_file(pdf)  # a FIFO named .pdf would block pdfium's open forever
        if pdf.stat().st_size == 0:
            raise ImageReadError(f"{pdf}: an empty file, not a PDF")
        document = pypdfium2.PdfDocument(pdf)
    except (pypdfium2.PdfiumError, OSError) as exc:
        raise _open_error(pdf, exc) from None
    try:
        if len(document) == 0:
            raise ImageReadError(f"{pdf}: a PDF without pages")
        yield document
    finally:
        document.close()


def expand_pdfs(paths: list[Path], selection: PageSelection | None) -> list[Path]:
    """``paths`` with each readable PDF replaced by its selected pages' keys, in page order.

    A PDF that cannot be opened, or of which ``selection`` selects no page, stays as it is:
    capture fails it with the reason (``load_input``), and the run goes on.
    """
    expanded: list[Path] = []
    for path in paths:
        if not (is_pdf(path) and path.is_file()):
            expanded.append(path)
            continue
        try:
            with open_pdf(path) as document:
                count = len(document)
        except ImageReadError:
            expanded.append(path)
            continue
        pages = selection.pages(count) if selection is not None else list(range(1, count + 1))
        if pages:
            expanded.extend(page_key(path, page) for page in pages)
        else:
            expanded.append(path)
    return expanded


def discover_inputs(arguments: tuple[str, ...], selection: PageSelection | None) -> list[Path]:
    """``discover_images`` (files, folders, list files), each PDF expanded into its selected pages."""
    return expand_pdfs(discover_images(arguments), selection)


@dataclass(frozen=True)
class RenderedPage:
    """One page as the model reads it, and what the row records about it."""

    image: Image.Image
    pdf: Path
    page: int
    page_count: int
    render_ms: float


def _render(document: Any, pdf: Path, page: int, dpi: int) -> Image.Image:
    scale = dpi / POINTS_PER_INCH
    handle = document[page - 1]
    try:
        width_pt, height_pt = handle.get_size()
        pixels = width_pt * scale * height_pt * scale
        if pixels > MAX_IMAGE_PIXELS:
            raise ImageReadError(
                f"{pdf} page {page}: {pixels / 1e6:.0f} MP at {dpi} dpi, over the "
                f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP limit (MAX_IMAGE_PIXELS); try a lower --dpi"
            )
        bitmap = handle.render(scale=scale)
        try:
            return bitmap.to_pil().convert("RGB")
        finally:
            bitmap.close()
    finally:
        handle.close()


def render_page(pdf: Path, page: int, dpi: int) -> RenderedPage:
    """Page ``page`` (1-based) of ``pdf`` rendered at ``dpi``; render_ms counts opening and rendering."""
    import pypdfium2

    started = time.perf_counter()
    with open_pdf(pdf) as document:
        count = len(document)
        if page > count:
            raise ImageReadError(f"{pdf}: no page {page} (the PDF has {count})")
        try:
            image = _render(document, pdf, page, dpi)
        except pypdfium2.PdfiumError as exc:
            raise ImageReadError(f"{pdf} page {page}: cannot render it ({exc})") from None
    return RenderedPage(image, pdf, page, count, (time.perf_counter() - started) * MS_PER_S)


def _bare_pdf_error(pdf: Path, selection: PageSelection | None) -> ImageReadError:
    """Why a PDF left unexpanded cannot be captured (opening it again gives the reason)."""
    with open_pdf(pdf) as document:
        count = len(document)
    wanted = selection.text if selection is not None else "all"
    return ImageReadError(f"{pdf}: --pages {wanted} selects none of its {count} pages")


def load_input(path: Path, *, dpi: int, selection: PageSelection | None) -> tuple[Image.Image, RenderedPage | None]:
    """The RGB image of one capture input, and the rendered page when the input is a PDF page.

    Raises ImageReadError (one line) for an image or a PDF that cannot be used.
    """
    key = parse_page_key(path)
    if key is not None:
        rendered = render_page(key[0], key[1], dpi)
        return rendered.image, rendered
    if is_pdf(path) and path.is_file():
        raise _bare_pdf_error(path, selection)
    return load_image(path), None


@functools.lru_cache(maxsize=256)
def _page_bytes(pdf: Path) -> int:
    with open_pdf(pdf) as document:
        return pdf.stat().st_size // len(document)


def page_size_bytes(key: Path) -> int | None:
    """A page key's share of its PDF's bytes (its cost estimate for sharding over ranks): 0 when
    the PDF cannot be read now; None when ``key`` is no page key."""
    parsed = parse_page_key(key)
    if parsed is None:
        return None
    try:
        return _page_bytes(parsed[0])
    except (ImageReadError, OSError):
        return 0


def stored_page_path(run_dir: Path, key: Path) -> Path:
    """Where the rendered page of ``key`` is kept in the run: ``pages/<md5 of the key>.png``."""
    return run_dir / PAGES_DIR / f"{path_md5(key)}.png"


def store_page(run_dir: Path, key: Path, image: Image.Image) -> Path:
    """Write the rendered page once (temp file, then rename) and return its path."""
    final = stored_page_path(run_dir, key)
    make_folder(final.parent)
    temp = temp_beside(final)
    try:
        with writing(final):
            image.save(temp, format="PNG", compress_level=PAGE_PNG_COMPRESS_LEVEL)
            temp.replace(final)
    finally:
        temp.unlink(missing_ok=True)
    return final
