"""PDF inputs end to end: a generated multi-page PDF captured page by page, emitted on the right page."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from capture_helpers import FAST_MODEL_PATH, run_capture
from dsocr.capture.config import CaptureConfig, Device, ProfileMode
from dsocr.capture.distributed import image_size_bytes, shard
from dsocr.capture.images import ImageReadError
from dsocr.capture.pdf import discover_inputs, load_input, page_key, parse_pages
from dsocr.capture.runner import run
from emit_helpers import run_cli
from forced_tokens import ForcedTokens
from PIL import Image, ImageChops

from dsocr.errors import BadInputError
from dsocr.rundir import path_md5, read_predictions, read_run_json

#: Page backgrounds: each page of the test PDF is told apart by its colour.
PAGE_COLOURS = [(230, 60, 60), (60, 200, 60), (60, 60, 230)]
PAGE_POINTS = (300, 400)  # the PDF's page size in points (Pillow: one pixel per point at 72 dpi)
DPI = 108  # a scale of 1.5: whole pixels (PDFium rounds a fraction up)
#: The grounding the test processor makes the model write: one box, pixel = int(v / 999 * size).
GROUNDING = "<|ref|>text<|/ref|><|det|>[[100, 200, 600, 700]]<|/det|>\nhello"
#: Pillow stores an RGB page as JPEG inside the PDF, and emit writes JPEG: colours match this closely.
COLOUR_TOLERANCE = 12
#: A pixel emit drew on differs from the rendered page by more than this (JPEG noise is below).
OUTLINE_DIFFERENCE = 40
#: Room around a box for its outline (LINE_ROOM) and for its label above it and its width.
LINE_ROOM, LABEL_ROOM = 6, 40


def _near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < COLOUR_TOLERANCE for a, b in zip(pixel, colour, strict=True))


def _write_pdf(path: Path, colours: list[tuple[int, int, int]], resolution: float = 72.0) -> Path:
    size = PAGE_POINTS if resolution == 72.0 else (70, 70)
    pages = [Image.new("RGB", size, colour) for colour in colours]
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=resolution)
    return path


#: The PDF standard security handler's password padding (PDF 1.7, 7.6.3.3).
PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def rc4(key: bytes, data: bytes) -> bytes:
    """RC4, the cipher of PDF's 40-bit standard security handler (revision 2)."""
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    i = j = 0
    out = bytearray()
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


def encrypted_pdf(path: Path, user_password: bytes = b"secret", owner_password: bytes = b"owner") -> Path:
    """A one-page PDF encrypted with a user password (revision 2): it opens only with the password."""
    permissions = -44
    file_id = b"dsocr-test-id-00"
    owner = rc4(hashlib.md5((owner_password + PAD)[:32]).digest()[:5], (user_password + PAD)[:32])
    key = hashlib.md5(
        (user_password + PAD)[:32] + owner + permissions.to_bytes(4, "little", signed=True) + file_id
    ).digest()[:5]
    user = rc4(key, PAD)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <"
        + owner.hex().encode()
        + b"> /U <"
        + user.hex().encode()
        + b"> /P -44 >>",
    ]
    data = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(data))
        data += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    data += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    hex_id = file_id.hex().encode()
    data += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [<%s> <%s>] >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        hex_id,
        hex_id,
        xref,
    )
    path.write_bytes(bytes(data))
    return path


class ForcedText(ForcedTokens):
    """Test only: makes greedy decoding write ``token_ids`` then EOS, whatever the model thinks."""

    def __init__(self, token_ids: list[int], eos_token_id: int) -> None:
        super().__init__()
        self.token_ids = [*token_ids, eos_token_id]

    def token_at(self, step: int) -> int:
        return self.token_ids[min(step, len(self.token_ids) - 1)]


@pytest.fixture(scope="module")
def pdf_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A 3-page PDF (pages 1 and 3 selected), a damaged PDF between, forced grounding output."""
    folder = tmp_path_factory.mktemp("pdf")
    document = _write_pdf(folder / "doc.pdf", PAGE_COLOURS)
    damaged = folder / "damaged.pdf"
    damaged.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    run_dir = folder / "run"
    from dsocr.capture.models import load_model

    base = CaptureConfig(images=(), out=run_dir, model=FAST_MODEL_PATH)
    loaded = load_model(base)
    forced = ForcedText(loaded.processor.tokenizer.encode(GROUNDING, add_special_tokens=False), loaded.eos_token_id)
    config = CaptureConfig(
        images=(str(document), str(damaged)),
        out=run_dir,
        model=FAST_MODEL_PATH,
        device=Device.cpu,
        max_new_tokens=64,
        profile=ProfileMode.off,
        dpi=DPI,
        pages="1,3",
        extra_logits_processors=(forced,),
    )
    run(config, loaded=loaded)
    return run_dir, document.resolve(), damaged.resolve()


def test_each_selected_page_is_a_row_keyed_by_pdf_and_page(pdf_run: tuple[Path, Path, Path]) -> None:
    run_dir, document, damaged = pdf_run
    rows = read_predictions(run_dir).to_pylist()
    assert [row["image_path"] for row in rows] == [f"{document}#page=1", f"{document}#page=3", str(damaged)]
    for row, page in zip(rows[:2], (1, 3), strict=True):
        assert row["status"] == "ok", row["error"]
        assert (row["source_path"], row["page"], row["page_count"]) == (str(document), page, 3)
        assert row["image_md5"] == path_md5(f"{document}#page={page}")
        # Rendered at --dpi: the page's points times dpi / 72.
        assert (row["width"], row["height"]) == tuple(points * DPI // 72 for points in PAGE_POINTS)
        assert row["render_ms"] > 0
        stored = run_dir / "pages" / f"{row['image_md5']}.png"
        with Image.open(stored) as image:
            assert _near(image.getpixel((5, 5)), PAGE_COLOURS[page - 1])
    record = read_run_json(run_dir)
    assert record.image_paths == (f"{document}#page=1", f"{document}#page=3", str(damaged))
    assert record.config is not None and (record.config.dpi, record.config.pages) == (DPI, "1,3")


def test_a_damaged_pdf_is_a_failed_row_with_one_line_and_the_run_goes_on(pdf_run: tuple[Path, Path, Path]) -> None:
    run_dir, _document, damaged = pdf_run
    row = read_predictions(run_dir).to_pylist()[2]
    assert row["status"] == "failed" and row["stop_reason"] == "error"
    assert row["error"].startswith(f"{damaged}: damaged PDF (") and "\n" not in row["error"]
    assert row["source_path"] == str(damaged) and row["page"] is None
    record = read_run_json(run_dir)
    assert (record.images.ok, record.images.failed) == (2, 1)


def test_emit_draws_the_boxes_on_the_right_page_and_info_names_pdf_and_page(pdf_run: tuple[Path, Path, Path]) -> None:
    run_dir, document, _damaged = pdf_run
    result = run_cli("emit", run_dir)
    assert result.exit_code == 0, result.output
    width, height = (points * DPI // 72 for points in PAGE_POINTS)
    for page in (1, 3):
        md5 = path_md5(f"{document}#page={page}")
        info = json.loads((run_dir / "viz" / md5 / "info.json").read_text())
        assert info["pdf"] == {
            "path": str(document),
            "page": page,
            "page_count": 3,
            "render_ms": pytest.approx(info["pdf"]["render_ms"]),
        }
        assert info["source_image"] == str(run_dir / "pages" / f"{md5}.png")
        assert [box["box"] for box in info["boxes"]] == [
            [int(100 / 999 * width), int(200 / 999 * height), int(600 / 999 * width), int(700 / 999 * height)]
        ]
        with Image.open(run_dir / "viz" / md5 / "result_with_boxes.jpg") as drawn:
            assert drawn.size == (width, height)
            corner = drawn.convert("RGB").getpixel((3, height - 3))  # far from the box: the page itself
            assert _near(corner, PAGE_COLOURS[page - 1])
            x1, y1, x2, y2 = info["boxes"][0]["box"]
            with Image.open(run_dir / "pages" / f"{md5}.png") as rendered:
                changed = ImageChops.difference(drawn.convert("RGB"), rendered.convert("RGB")).convert("L")
            # What emit drew (outline, label above it) lies on the box: the rest is the page untouched.
            drawn_box = changed.point(lambda value: 255 if value > OUTLINE_DIFFERENCE else 0).getbbox()
            assert drawn_box is not None
            assert x1 - LABEL_ROOM <= drawn_box[0] and drawn_box[2] <= x2 + LABEL_ROOM
            assert y1 - LABEL_ROOM <= drawn_box[1] and drawn_box[3] <= y2 + LINE_ROOM


def test_folders_and_list_files_expand_pdfs_into_pages(tmp_path: Path, sample_pages: list[Path]) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    document = _write_pdf(folder / "a.pdf", PAGE_COLOURS[:2]).resolve()
    listing = tmp_path / "list.txt"
    listing.write_text(f"{sample_pages[0]}\n{document}\n")
    assert discover_inputs((str(folder),), None) == [page_key(document, 1), page_key(document, 2)]
    assert discover_inputs((str(listing),), parse_pages("2-9")) == [sample_pages[0].resolve(), page_key(document, 2)]
    # A selection with none of the document's pages keeps the PDF: its row fails with the reason.
    assert discover_inputs((str(document),), parse_pages("5")) == [document]


@pytest.mark.parametrize("text", ["0", "3-1", "a", "1,,2", "-2"])
def test_malformed_pages_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(BadInputError, match="--pages"):
        parse_pages(text)


def test_resume_skips_finished_pages_and_retries_a_failed_one(tmp_path: Path) -> None:
    small = _write_pdf(tmp_path / "small.pdf", PAGE_COLOURS[:1])
    # 5040 points square (a 70 px image at 1 dpi): over MAX_IMAGE_PIXELS at the default 144 dpi.
    huge = _write_pdf(tmp_path / "huge.pdf", PAGE_COLOURS[1:2], resolution=1.0)
    run_dir = tmp_path / "run"
    first = run_capture(small, huge, "--out", run_dir, "--max-new-tokens", "2", "--profile", "off")
    assert first.exit_code == 0, first.output
    before = read_predictions(run_dir).to_pylist()
    assert [row["status"] for row in before] == ["ok", "failed"]
    assert "MAX_IMAGE_PIXELS" in before[1]["error"] and before[1]["page"] == 1
    again = run_capture("--resume", "--out", run_dir)
    assert again.exit_code == 0, again.output
    after = read_predictions(run_dir).to_pylist()
    assert after[0]["started_unix_ns"] == before[0]["started_unix_ns"]  # the finished page is skipped
    assert after[1]["started_unix_ns"] > before[1]["started_unix_ns"]  # the failed page is retried


def test_encrypted_and_empty_pdfs_fail_with_their_reason(tmp_path: Path) -> None:
    encrypted = encrypted_pdf(tmp_path / "locked.pdf").resolve()
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    empty = empty.resolve()
    # Neither expands into pages: each stays one input, whose row fails with the reason.
    assert discover_inputs((str(encrypted), str(empty)), None) == [encrypted, empty]
    with pytest.raises(ImageReadError, match=r"locked.pdf: encrypted PDF \(needs a password\); decrypt it first$"):
        load_input(encrypted, dpi=DPI, selection=None)
    with pytest.raises(ImageReadError, match=r"empty.pdf: an empty file, not a PDF$"):
        load_input(empty, dpi=DPI, selection=None)


def test_a_documents_pages_spread_over_ranks(tmp_path: Path) -> None:
    document = _write_pdf(tmp_path / "doc.pdf", PAGE_COLOURS).resolve()
    keys = discover_inputs((str(document),), None)
    sizes = {index: image_size_bytes(key) for index, key in enumerate(keys)}
    assert set(sizes.values()) == {document.stat().st_size // 3}
    assert shard(sizes, 2) == [[0, 2], [1]]


def test_capture_gpus_passes_pdf_and_guard_options_to_every_rank() -> None:
    import typer

    from dsocr._app import app
    from dsocr.cli_capture import _argv_from

    command = typer.main.get_command(app).commands["capture"]  # type: ignore[attr-defined]
    given = ["doc.pdf", "--gpus", "2", "--pages", "1-2", "--no-repeat-ngram", "30"]
    context = command.make_context("capture", [*given, "--ngram-allow", "<td>", "--ngram-allow", "x"])
    assert _argv_from(context, Path("out")) == [
        "capture", "doc.pdf", "--out", "out", "--pages", "1-2", "--no-repeat-ngram", "30",
        "--ngram-allow", "<td>", "--ngram-allow", "x",
    ]  # fmt: skip


def test_emit_only_picks_a_page_by_its_key_or_every_page_by_the_pdf(tmp_path: Path) -> None:
    from dsocr.emit.plan import select_md5s

    document = _write_pdf(tmp_path / "doc.pdf", PAGE_COLOURS).resolve()
    image = tmp_path / "image.png"
    rows = [(path_md5(key), str(key)) for key in discover_inputs((str(document),), None)]
    rows.append((path_md5(image), str(image)))
    assert select_md5s((f"{document}#page=2",), rows) == {rows[1][0]}
    assert select_md5s((str(document),), rows) == {md5 for md5, _path in rows[:3]}
    with pytest.raises(BadInputError, match="--only"):
        select_md5s((str(tmp_path / "other.pdf"),), rows)
