"""Score a layout model on held-out synthetic pages, pages drawn by other code, and the samples.

Run from the repository root::

    python -m train.evaluate --model capture/embedded/layout-deepseek-ocr2 --out eval.json
    python -m train.evaluate --model capture/embedded/tiny-deepseek-ocr2.json   # random weights

Every page is generated greedily until EOS or the model's own limit (context length minus the
prompt: what ``--max-new-tokens inf`` does), through dsocr's loader and processor call. Pages
with the same prompt length are generated together (no padding, so batching changes nothing
but speed). Scores (label-agnostic matching at IoU >= 0.5, one predicted box per drawn block):
- ``eos_rate``: pages whose output ended with the EOS token;
- ``recall``: matched drawn blocks / drawn blocks; ``precision``: matched boxes / predicted boxes;
- ``label_accuracy``: matched boxes whose label is the drawn block's label.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after an installed dsocr: the checkout's dsocr/ is not the package

import torch  # noqa: E402
from dsocr.capture.models import LoadedModel, greedy_generate, load_checkpoint, load_random_weights  # noqa: E402
from dsocr.capture.samples import SAMPLE_PAGES, draw_sample  # noqa: E402
from dsocr.emit.grounding import parse_grounding  # noqa: E402
from PIL import Image  # noqa: E402

from dsocr.families import DEEPSEEK_OCR2  # noqa: E402
from train.other_pages import draw_other_page  # noqa: E402
from train.pages import COORDINATE_SCALE, draw_page  # noqa: E402

PROMPT = DEEPSEEK_OCR2.default_prompt
IOU_MATCH = 0.5
#: Held-out synthetic pages use seeds below this; training seeds start at or above it.
HELD_OUT_SEED_LIMIT = 1_000_000
DEFAULT_PAGES = 100
DEFAULT_BATCH = 34

Box = tuple[float, float, float, float]
Labelled = tuple[str, Box]


@dataclass
class Score:
    """Counts over a set of pages; the figures are ratios of them."""

    pages: int = 0
    eos: int = 0
    drawn: int = 0
    predicted: int = 0
    matched: int = 0
    label_correct: int = 0
    new_tokens: int = 0
    per_page: list[dict[str, Any]] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """The ratios and the counts they come from."""

        def ratio(numerator: int, denominator: int) -> float | None:
            return round(numerator / denominator, 4) if denominator else None

        return {
            "pages": self.pages,
            "eos_rate": ratio(self.eos, self.pages),
            "recall": ratio(self.matched, self.drawn),
            "precision": ratio(self.matched, self.predicted),
            "label_accuracy": ratio(self.label_correct, self.matched),
            "drawn_blocks": self.drawn,
            "predicted_boxes": self.predicted,
            "matched": self.matched,
            "mean_new_tokens": ratio(self.new_tokens, self.pages),
        }


def iou(first: Box, second: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (second[3] - second[1])
    return inter / (area - inter) if area > inter else 0.0


def match(predicted: list[Labelled], drawn: list[Labelled]) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU (highest first), pairs at IoU >= IOU_MATCH: (pred, drawn)."""
    pairs = sorted(
        ((iou(p[1], d[1]), i, j) for i, p in enumerate(predicted) for j, d in enumerate(drawn)), reverse=True
    )
    used_predicted: set[int] = set()
    used_drawn: set[int] = set()
    matched = []
    for overlap, i, j in pairs:
        if overlap < IOU_MATCH:
            break
        if i in used_predicted or j in used_drawn:
            continue
        used_predicted.add(i)
        used_drawn.add(j)
        matched.append((i, j))
    return matched


def predicted_blocks(text: str) -> list[Labelled]:
    """The labelled boxes emit would draw from ``text`` (0..999 coordinates)."""
    grounding = parse_grounding(text, scale=COORDINATE_SCALE)
    return [(block.label, tuple(float(v) for v in box.as_list())) for block in grounding.blocks for box in block.boxes]


def normalized_blocks(blocks: Iterable[tuple[str, tuple[int, int, int, int]]], size: tuple[int, int]) -> list[Labelled]:
    """Pixel boxes on the 0..999 scale the model writes (emit's pixel = v / 999 * size)."""
    width, height = size
    scale = COORDINATE_SCALE
    return [
        (label, (x1 * scale / width, y1 * scale / height, x2 * scale / width, y2 * scale / height))
        for label, (x1, y1, x2, y2) in blocks
    ]


def add_page(score: Score, name: str, text: str, ended_at_eos: bool, new_tokens: int, drawn: list[Labelled]) -> None:
    """Score one page's output against its drawn blocks."""
    predicted = predicted_blocks(text)
    pairs = match(predicted, drawn)
    correct = sum(predicted[i][0] == drawn[j][0] for i, j in pairs)
    score.pages += 1
    score.eos += int(ended_at_eos)
    score.drawn += len(drawn)
    score.predicted += len(predicted)
    score.matched += len(pairs)
    score.label_correct += correct
    score.new_tokens += new_tokens
    score.per_page.append(
        {
            "page": name,
            "eos": ended_at_eos,
            "new_tokens": new_tokens,
            "drawn": len(drawn),
            "predicted": len(predicted),
            "matched": len(pairs),
            "labels_correct": correct,
        }
    )


PageSource = Callable[[int], tuple[Image.Image, list[Labelled]]]


def held_out_page(seed: int) -> tuple[Image.Image, list[Labelled]]:
    """A synthetic page of a seed never used in training."""
    if seed >= HELD_OUT_SEED_LIMIT:
        raise ValueError(f"held-out seeds are below {HELD_OUT_SEED_LIMIT}")
    page = draw_page(seed)
    return page.image, normalized_blocks(((b.label, b.box) for b in page.blocks), page.image.size)


def other_code_page(seed: int) -> tuple[Image.Image, list[Labelled]]:
    """A page of train/other_pages.py (other fonts, page sizes and drawing)."""
    page = draw_other_page(seed)
    return page.image, normalized_blocks(((b.label, b.box) for b in page.blocks), page.image.size)


def sample_page(index: int) -> tuple[Image.Image, list[Labelled]]:
    """The sample page number ``index`` of capture/samples.py, as capture's demo draws it."""
    image, blocks = draw_sample(list(SAMPLE_PAGES)[index])
    return image, normalized_blocks(blocks, image.size)


SOURCES: dict[str, PageSource] = {"held-out": held_out_page, "other-code": other_code_page, "sample": sample_page}
#: What forked encoders read: (processor, family, pixel dtype), set before the pool forks.
_ENCODER: list[Any] = []


#: Below this much free space in /dev/shm, workers send tensors through the pipe instead of
#: shared memory (containers often mount a 64 MB /dev/shm; a batch of pages is hundreds of MB).
SHARED_MEMORY_NEEDED = 16 * 2**30
SHARED_MEMORY = Path("/dev/shm")


def shared_memory_ok() -> bool:
    """Whether tensors may travel between processes through /dev/shm."""
    try:
        return shutil.disk_usage(SHARED_MEMORY).free >= SHARED_MEMORY_NEEDED
    except OSError:
        return False


def portable(item: dict[str, Any], through_pipe: bool) -> dict[str, Any]:
    """``item`` ready for a process queue: tensors as (dtype, numpy bytes) when they go through the pipe."""
    if not through_pipe:
        return item
    packed: dict[str, Any] = {}
    for name, value in item.items():
        if isinstance(value, torch.Tensor):
            raw = value.view(torch.int16) if value.dtype == torch.bfloat16 else value
            packed[name] = ("tensor", str(value.dtype), raw.numpy())
        else:
            packed[name] = value
    return packed


def unpacked(item: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`portable`."""
    result: dict[str, Any] = {}
    for name, value in item.items():
        if isinstance(value, tuple) and len(value) == 3 and value[0] == "tensor":
            tensor = torch.from_numpy(value[2])
            result[name] = tensor.view(torch.bfloat16) if value[1] == "torch.bfloat16" else tensor
        else:
            result[name] = value
    return result


def _encode_one(job: tuple[str, int]) -> tuple[dict[str, Any], list[Labelled]]:
    """One page drawn and put through capture's processor call (in a worker process)."""
    processor, family, pixel_dtype, through_pipe = _ENCODER
    torch.set_num_threads(1)
    image, blocks = SOURCES[job[0]](job[1])
    inputs = dict(family.build_inputs(processor, image, PROMPT))
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            inputs[name] = value.to(pixel_dtype)
    return portable(inputs, through_pipe), blocks


def encode_pages(
    loaded: LoadedModel, jobs: list[tuple[str, int]], processes: int
) -> list[tuple[dict[str, Any], list[Labelled]]]:
    """Every job's encoded inputs (on the CPU) and drawn blocks, on ``processes`` forked workers."""
    _ENCODER[:] = [loaded.processor, loaded.family, loaded.dtype, processes > 1 and not shared_memory_ok()]
    if processes <= 1:
        return [_encode_one(job) for job in jobs]
    # Fork: the workers only run Pillow and the processor, never CUDA.
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return [(unpacked(inputs), blocks) for inputs, blocks in pool.map(_encode_one, jobs, chunksize=1)]


def _stacked(loaded: LoadedModel, encoded: list[dict[str, Any]]) -> dict[str, Any]:
    """Pages of the same prompt length as one batch on the model's device (no padding needed)."""
    batch: dict[str, Any] = {}
    for name in encoded[0]:
        values = [item[name] for item in encoded]
        if isinstance(values[0], torch.Tensor):
            value = torch.cat(values, dim=0).to(loaded.device)
            batch[name] = value.to(loaded.dtype) if value.is_floating_point() else value
        else:
            batch[name] = values
    return batch


def generate_texts(
    loaded: LoadedModel, encoded: list[dict[str, Any]], batch_size: int, max_new_tokens: int | None = None
) -> list[tuple[str, bool, int]]:
    """Each page's output (special tokens kept), whether it ended at EOS, and its new-token count.

    ``max_new_tokens`` None is ``inf``: up to the context limit minus the prompt.
    """
    results: list[tuple[str, bool, int] | None] = [None] * len(encoded)
    by_length: dict[int, list[int]] = {}
    for index, inputs in enumerate(encoded):
        by_length.setdefault(int(inputs["input_ids"].shape[1]), []).append(index)
    tokenizer = loaded.processor.tokenizer
    for length, indices in sorted(by_length.items()):
        limit = loaded.context_limit.tokens - length  # what --max-new-tokens inf allows
        if max_new_tokens is not None:
            limit = min(limit, max_new_tokens)
        chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
        while chunks:
            chunk = chunks.pop(0)
            try:
                output = greedy_generate(loaded, _stacked(loaded, [encoded[i] for i in chunk]), limit)
            except torch.OutOfMemoryError:
                if len(chunk) == 1:
                    raise
                torch.cuda.empty_cache()  # the same pages in two halves: greedy results do not depend on it
                chunks[:0] = [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]]
                continue
            for row, index in enumerate(chunk):
                ids = output[row, length:].tolist()
                ended = loaded.eos_token_id in ids
                if ended:
                    ids = ids[: ids.index(loaded.eos_token_id) + 1]
                results[index] = (tokenizer.decode(ids, skip_special_tokens=False), ended, len(ids))
    return [result for result in results if result is not None]


def score_set(
    loaded: LoadedModel, name: str, pages: int, batch_size: int, max_new_tokens: int | None, processes: int
) -> Score:
    """Generate and score ``pages`` pages of source ``name`` (seeds 0..pages-1)."""
    score = Score()
    encoded = encode_pages(loaded, [(name, seed) for seed in range(pages)], processes)
    outputs = generate_texts(loaded, [inputs for inputs, _ in encoded], batch_size, max_new_tokens)
    for seed, ((_, blocks), (text, ended, tokens)) in enumerate(zip(encoded, outputs, strict=True)):
        add_page(score, f"{name}-{seed}", text, ended, tokens, blocks)
    return score


def score_samples(loaded: LoadedModel, max_new_tokens: int | None = None) -> dict[str, Any]:
    """The three sample pages (as capture's demo draws them), with their correct boxes.

    They are generated together: the pages share one size, so one prompt length and no padding.
    """
    encoded = encode_pages(loaded, [("sample", index) for index in range(len(SAMPLE_PAGES))], 1)
    outputs = generate_texts(loaded, [inputs for inputs, _ in encoded], len(encoded), max_new_tokens)
    per_page = {}
    for file_name, (_, drawn), (text, ended, tokens) in zip(SAMPLE_PAGES, encoded, outputs, strict=True):
        predicted = predicted_blocks(text)
        pairs = match(predicted, drawn)
        per_page[file_name] = {
            "eos": ended,
            "new_tokens": tokens,
            "drawn": len(drawn),
            "predicted": len(predicted),
            "correct_boxes": len(pairs),
            "correct_boxes_and_labels": sum(predicted[i][0] == drawn[j][0] for i, j in pairs),
            "text": text,
        }
    return per_page


def evaluate(
    loaded: LoadedModel,
    *,
    pages: int,
    batch_size: int,
    samples: bool = True,
    max_new_tokens: int | None = None,
    processes: int = 1,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every figure of the layout targets for ``loaded`` (``max_new_tokens`` None: until EOS or the limit).

    ``on_progress`` gets the result so far after each set (samples, held-out, other code), so a
    run cut short keeps what it measured.
    """
    started = time.perf_counter()
    result: dict[str, Any] = {
        "model": loaded.model_id,
        "source": loaded.source,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "iou_match": IOU_MATCH,
        "max_new_tokens": "inf" if max_new_tokens is None else max_new_tokens,
    }

    def progress() -> None:
        result["seconds"] = round(time.perf_counter() - started, 1)
        if on_progress is not None:
            on_progress(result)

    if samples:
        result["samples"] = score_samples(loaded, max_new_tokens)
        progress()
    for name in ("held-out", "other-code"):
        score = score_set(loaded, name, pages, batch_size, max_new_tokens, processes)
        key = name.replace("-", "_")
        result[key] = score.figures()
        result[f"{key}_pages"] = score.per_page
        progress()
    return result


def load(model: Path, device: str) -> LoadedModel:
    """A checkpoint folder through dsocr's loader, or an architecture .json with seed-0 random weights."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if model.suffix == ".json":
        return load_random_weights(model, device=device, dtype=dtype, seed=0)
    return load_checkpoint(model, device=device, dtype=dtype)


def main() -> None:
    """Command line: evaluate one model and write (and print) its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint folder or architecture .json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES, help="pages per set (held-out, other code)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--no-samples", action="store_true")
    parser.add_argument("--max-new-tokens", type=int, help="cap per page (default: inf, as capture's 'inf')")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="page encoders")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    loaded = load(args.model, args.device)
    result = evaluate(
        loaded,
        pages=args.pages,
        batch_size=args.batch,
        samples=not args.no_samples,
        max_new_tokens=args.max_new_tokens,
        processes=args.processes,
    )
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    summary = {key: result[key] for key in ("held_out", "other_code")}
    summary["samples"] = {
        name: {k: v for k, v in page.items() if k != "text"} for name, page in result.get("samples", {}).items()
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
