"""Train the demo layout model: DeepSeek-OCR-2 at small widths, on synthetic pages, in one timed call.

Run from the repository root::

    python -m train.train_layout --out OUT --budget-s 480           # the device run
    python -m train.train_layout --out /tmp/x --smoke               # a few CPU steps

What it does, in order:
1. Builds the model with dsocr's own loader (``load_random_weights`` on ``train/layout-config.json``):
   the real transformers classes, dsocr's byte-level tokenizer and its processor.
2. Starts worker processes that draw pages (train/pages.py, seeds >= 1,000,000, never the
   held-out ones) and encode them with capture's exact processor call and prompt; each batch
   is padded on the right; the loss is on the answer tokens only (the grounding lines and EOS).
3. Trains with AdamW, linear warm-up then cosine decay over the time budget (bf16 autocast on
   CUDA). Fresh batches are kept on the GPU in a ring; when no fresh batch is ready the step
   replays one from the ring, so the GPU never waits for the page renderers.
4. Saves the checkpoint in bf16 (``save_pretrained``, shards of at most 16 MB) with the tokenizer
   and processor, reloads it through dsocr's checkpoint loader and checks the reloaded processor
   gives the training processor's input ids; writes ``training.json`` (seed, widths, parameters,
   batch, schedule, steps, pages seen, loss curve) next to the weights.
5. Evaluates the reloaded checkpoint (train/evaluate.py) and writes ``eval.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after an installed dsocr: the checkout's dsocr/ is not the package

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the page workers fork after the tokenizer is built

import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as functional  # noqa: E402
from dsocr.capture.models import LoadedModel, load_checkpoint, load_random_weights  # noqa: E402
from dsocr.capture.tokenizer import IMAGE_TOKEN  # noqa: E402

from dsocr.families import DEEPSEEK_OCR2  # noqa: E402
from train import cells, evaluate  # noqa: E402
from train.pages import draw_page, normalized, target_text  # noqa: E402

CONFIG = ROOT / "train" / "layout-config.json"
PROMPT = DEEPSEEK_OCR2.default_prompt
IGNORE = -100  # cross-entropy's ignore index: prompt and padding positions carry no loss
TRAIN_SEED_BASE = evaluate.HELD_OUT_SEED_LIMIT
MAX_SHARD = "16MB"
LOSS_CURVE_EVERY = 10
PRINT_EVERY_S = 10.0
WARMUP_FRACTION = 0.04
FINAL_LR_FRACTION = 0.05
SMOKE_STEPS = 2
SMOKE_BATCH = 2
PAGES_COMPARED = 2
#: Held-out pages whose matched vs shuffled loss is printed with each progress line.
IMAGE_USE_PAGES = 8
SMOKE_EVAL_TOKENS = 4
#: Seconds kept after training for saving, reloading and evaluating (the device call is limited).
DEFAULT_EVAL_RESERVE_S = 150.0
#: The vision tower (SAM and the vision encoder) stays frozen for this fraction of the training
#: time: all of it. On CPU (train/cpu_probe.py, docs/layout-model.md) AdamW at the decoder's
#: learning rate collapses the tower within 4 steps (two pages' projected features: 0.63 of their
#: norm apart at init, 0.04 after 4 steps; 0.19 after 8 with SAM frozen and the encoder trained);
#: frozen, they stay page-dependent and the decoder learns to read them.
DEFAULT_FREEZE_VISION_FRACTION = 1.0
#: Once unfrozen (``--freeze-vision-fraction`` < 1), the tower trains at this fraction of the
#: learning rate: at 0.01 the features stayed 0.48 of their norm apart after 12 CPU steps.
DEFAULT_VISION_LR_SCALE = 0.01
#: Weight of the auxiliary cell loss (train/cells.py) beside the answer loss. On CPU (frozen tower,
#: pages of at most 5 blocks, 2 decoder layers, 800 steps of 8 pages) the held-out gap between
#: shuffled and matched images opened to 0.012-0.026 nats per token with it and stayed at
#: 0.001-0.003 without; held-out answer loss 0.684 against 0.751 (docs/layout-model.md).
DEFAULT_CELL_LOSS_WEIGHT = 1.0


#: The rotary offsets the first vision-encoder layer's heads read at initialisation: a learned query
#: sits num_patches positions after its own SAM patch (256 patches for the 1024 global view, 144 for a
#: 768 crop), so half the heads read offset 256 and half offset 144.
READOUT_OFFSETS = (256, 144)
#: Peak sharpness of that positional attention (the logit gap to the neighbouring patch is ~0.1 x this).
READOUT_GAIN = 100.0


def positional_readout_init(model: torch.nn.Module) -> dict[str, Any]:
    """Initialise the vision encoder's first attention so each learned query reads its own SAM patch.

    DeepSeek-OCR-2's vision encoder appends learned queries (16x16 for the global view, 12x12 per
    crop) after the SAM patches; only the queries reach the decoder. At a random init the queries'
    attention is uniform, so every query sees the mean of a mostly white page: the first attempt
    and the first run of this one learned an average layout (identical output for every page; the
    features of two pages differed by 0.002 in norm 80). Here the first layer's query and key
    projections start at zero weights with biases chosen so the rotary phase peaks at offset
    ``num_patches``: query i attends to SAM patch i, and the decoder sees a 16x16 (12x12) grid of
    page content from the first step. Weights stay trainable; nothing else changes.
    """
    encoder = model.model.vision_tower.vision_encoder
    attention = encoder.layers[0].self_attn
    inv_freq = encoder.rotary_emb.inv_freq.float()
    head_dim, half = attention.head_dim, attention.head_dim // 2
    query_heads = attention.q_proj.out_features // head_dim
    key_heads = attention.k_proj.out_features // head_dim
    group = query_heads // key_heads
    with torch.no_grad():
        attention.q_proj.weight.zero_()
        attention.k_proj.weight.zero_()
        key_bias = torch.zeros(key_heads, head_dim)
        key_bias[:, :half] = 1.0  # key = 1 + 0i in every rotary pair: the score depends on position only
        attention.k_proj.bias.copy_(key_bias.flatten())
        query_bias = torch.zeros(query_heads, head_dim)
        offsets = []
        for head in range(query_heads):
            offset = READOUT_OFFSETS[(head // group) % len(READOUT_OFFSETS)]
            offsets.append(offset)
            angle = offset * inv_freq
            query_bias[head, :half] = READOUT_GAIN * torch.cos(angle)
            query_bias[head, half:] = -READOUT_GAIN * torch.sin(angle)
        attention.q_proj.bias.copy_(query_bias.flatten())
    return {"layer": 0, "head_offsets": offsets, "gain": READOUT_GAIN}


def feature_spread(model: torch.nn.Module, pixel_values: torch.Tensor) -> dict[str, float] | None:
    """How page-dependent the decoder's image features are: the projected global-view features of
    two pages, their mean norm per token and the mean norm of their difference (the two runs of
    docs/layout-model.md ended at 4e-5 and 4e-4 of the norm: one layout for every page)."""
    if pixel_values.shape[0] < PAGES_COMPARED:
        return None
    was_training = model.training
    model.eval()
    with torch.no_grad():
        inner = model.model
        features = inner.multi_modal_projector(inner.vision_tower(pixel_values[:2]).last_hidden_state).float()
    model.train(was_training)
    return {
        "norm": round(float(features.norm(dim=-1).mean()), 4),
        "page_difference": round(float((features[0] - features[1]).norm(dim=-1).mean()), 4),
    }


def image_use_batch(processor: Any, family: Any, pages: int, pad_id: int, dtype: torch.dtype) -> dict[str, Any]:
    """``pages`` held-out pages (never trained on) with the same number of crops, as one batch.

    The same crop count gives every page the same number of image placeholders, so the pages'
    images can be exchanged (:func:`image_use`) without changing any token.
    """
    by_crops: dict[int, list[dict[str, Any]]] = {}
    seed = 0
    while True:
        example = _encode_page(processor, family, seed, held_out=True)
        group = by_crops.setdefault(example["num_local_patches"], [])
        group.append(example)
        if len(group) == pages:
            return collate(group, pad_id, dtype)
        seed += 1


def image_use(model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, float]:
    """Does the model read the page? Held-out answer loss per token with each page's own image
    (``matched``) and with the images rolled by one page (``shuffled``: another page's image, the
    same answer). An average-layout model (runs 1 and 2 of docs/layout-model.md) has a gap
    (shuffled - matched) of ~0; a model that reads the page, a clearly positive one."""
    rolled = dict(batch)
    rolled["pixel_values"] = batch["pixel_values"].roll(1, dims=0)
    if batch["pixel_values_local"] is not None:
        crops = batch["num_local_patches"][0]  # the same for every page of the batch
        rolled["pixel_values_local"] = batch["pixel_values_local"].roll(crops, dims=0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        matched = float(answer_loss(model, batch))
        shuffled = float(answer_loss(model, rolled))
    model.train(was_training)
    return {"matched": round(matched, 4), "shuffled": round(shuffled, 4), "gap": round(shuffled - matched, 4)}


def _encode_page(processor: Any, family: Any, seed: int, held_out: bool = False) -> dict[str, Any]:
    """One training example through capture's processor call: prompt ids, answer ids, pixels."""
    if held_out != (seed < evaluate.HELD_OUT_SEED_LIMIT):
        raise ValueError(f"seed {seed} is on the wrong side of {evaluate.HELD_OUT_SEED_LIMIT}")
    page = draw_page(seed)
    image = page.image
    inputs = family.build_inputs(processor, image, PROMPT)
    tokenizer = processor.tokenizer
    answer = tokenizer(target_text(page.blocks, image.size), add_special_tokens=False)["input_ids"]
    answer.append(tokenizer.eos_token_id)
    view = processor.image_processor.size["height"]
    centres = cells.token_centres(image.width, image.height, view, crops=True)
    boxes = [(block.label, normalized(block.box, image.size)) for block in page.blocks]
    cell_targets = torch.tensor(cells.cell_targets(centres, boxes), dtype=torch.long)
    image_tokens = int((inputs["input_ids"] == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)).sum())
    if len(cell_targets) != image_tokens:
        # Another processor geometry than train/cells.py's: this page trains without cell targets.
        print(f"page {seed}: {len(cell_targets)} cell targets for {image_tokens} image tokens; none used", flush=True)
        cell_targets = torch.full((image_tokens, 5), cells.IGNORE, dtype=torch.long)
    return {
        "prompt_ids": inputs["input_ids"][0],
        "answer_ids": torch.tensor(answer, dtype=torch.long),
        "pixel_values": inputs["pixel_values"],
        "pixel_values_local": inputs.get("pixel_values_local"),
        "num_local_patches": int(inputs["num_local_patches"][0]),
        "cells": cell_targets,
    }


def collate(examples: list[dict[str, Any]], pad_id: int, pixel_dtype: torch.dtype) -> dict[str, Any]:
    """A right-padded batch: ids, attention mask, labels (answer tokens only), pixels."""
    lengths = [len(e["prompt_ids"]) + len(e["answer_ids"]) for e in examples]
    width = max(lengths)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        prompt, answer = example["prompt_ids"], example["answer_ids"]
        input_ids[row, : len(prompt)] = prompt
        input_ids[row, len(prompt) : lengths[row]] = answer
        labels[row, len(prompt) : lengths[row]] = answer
        attention_mask[row, : lengths[row]] = 1
    locals_ = [e["pixel_values_local"] for e in examples if e["pixel_values_local"] is not None]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pixel_values": torch.cat([e["pixel_values"] for e in examples]).to(pixel_dtype),
        "pixel_values_local": torch.cat(locals_).to(pixel_dtype) if locals_ else None,
        "num_local_patches": [e["num_local_patches"] for e in examples],
        "cells": torch.cat([e["cells"] for e in examples]),
        "answer_tokens": int(sum(len(e["answer_ids"]) for e in examples)),
    }


def _worker(
    index: int,
    workers: int,
    batch: int,
    processor: Any,
    family: Any,
    out: Any,
    stop: Any,
    pixel_dtype: torch.dtype,
    through_pipe: bool,
) -> None:
    """Draw and encode pages forever (seeds index, index + workers, ...) and queue whole batches."""
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    pad_id = processor.tokenizer.pad_token_id
    counter = 0
    while not stop.is_set():
        examples = []
        for _ in range(batch):
            seed = TRAIN_SEED_BASE + counter * workers + index
            counter += 1
            examples.append(_encode_page(processor, family, seed))
        item = evaluate.portable(collate(examples, pad_id, pixel_dtype), through_pipe)
        while not stop.is_set():
            try:
                out.put(item, timeout=1.0)
                break
            except queue.Full:
                continue


#: How often a step waiting for its first batch checks that a page worker is still alive.
WORKER_CHECK_S = 5.0


def _next_batch(batches: Any, workers: list[Any]) -> dict[str, Any]:
    """The next batch from the page workers; an error (not a silent wait) when every worker died."""
    while True:
        try:
            return batches.get(timeout=WORKER_CHECK_S)
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                codes = sorted({worker.exitcode for worker in workers}, key=str)
                raise RuntimeError(f"every page worker died (exit codes {codes}); see their errors above") from None


def lr_at(fraction: float, peak: float) -> float:
    """Linear warm-up over WARMUP_FRACTION of the budget, then cosine to FINAL_LR_FRACTION of peak."""
    if fraction < WARMUP_FRACTION:
        return peak * max(fraction / WARMUP_FRACTION, 0.01)
    progress = min(1.0, (fraction - WARMUP_FRACTION) / (1 - WARMUP_FRACTION))
    return peak * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def answer_loss(
    model: torch.nn.Module, batch: dict[str, Any], cell_head: torch.nn.Module | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of the next token over answer positions only; with ``cell_head``, also the
    auxiliary cell loss (train/cells.py) on the decoder's last hidden state at the image tokens."""
    output = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values=batch["pixel_values"],
        pixel_values_local=batch["pixel_values_local"],
        num_local_patches=batch["num_local_patches"],
        use_cache=False,
        output_hidden_states=cell_head is not None,
    )
    logits = output.logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    loss = functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)
    if cell_head is None:
        return loss
    image_mask = batch["input_ids"] == model.config.image_token_id
    return loss, cells_loss(cell_head, output.hidden_states[-1][image_mask].float(), batch["cells"])


def cells_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the cell head per image token: the covering block's label class (or none),
    plus a quarter of each of its four box coordinates' bins (train/cells.py)."""
    logits = head(hidden)

    def mean_cross_entropy(part: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        # Summed, then divided: 0 (not NaN) when every target is ignored, and no host sync.
        summed = functional.cross_entropy(part, wanted, ignore_index=cells.IGNORE, reduction="sum")
        return summed / (wanted != cells.IGNORE).sum().clamp(min=1)

    loss = mean_cross_entropy(logits[:, : cells.CLASSES], targets[:, 0])
    for k in range(4):
        start = cells.CLASSES + k * cells.BOX_BINS
        loss = loss + mean_cross_entropy(logits[:, start : start + cells.BOX_BINS], targets[:, 1 + k]) / 4
    return loss


def _to_device(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    moved = {}
    for name, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if value.is_floating_point():
                value = value.to(dtype)
        moved[name] = value
    return moved


def write_json(path: Path, value: Any) -> None:
    """``value`` as indented JSON, written whole (temp then rename)."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    temp.replace(path)


def save_checkpoint(loaded: LoadedModel, folder: Path) -> list[dict[str, Any]]:
    """bf16 weights (shards <= MAX_SHARD), config, tokenizer and processor; the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    model = loaded.model
    model.to(torch.bfloat16)
    model.save_pretrained(folder, max_shard_size=MAX_SHARD)
    loaded.processor.save_pretrained(folder)
    return [{"file": p.name, "bytes": p.stat().st_size} for p in sorted(folder.iterdir())]


def main() -> None:
    """Command line: train, save, evaluate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=CONFIG, help="architecture (widths) to train")
    parser.add_argument("--budget-s", type=float, default=480.0, help="whole run: training, saving, evaluation")
    parser.add_argument("--eval-reserve-s", type=float, default=DEFAULT_EVAL_RESERVE_S)
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--ring", type=int, default=48, help="fresh batches kept on the device for replay")
    parser.add_argument(
        "--freeze-vision-fraction",
        type=float,
        default=DEFAULT_FREEZE_VISION_FRACTION,
        help="train with the vision tower frozen for this fraction of the time budget (0: never, 1: always)",
    )
    parser.add_argument(
        "--vision-lr-scale",
        type=float,
        default=DEFAULT_VISION_LR_SCALE,
        help="learning rate of SAM and the vision encoder / the rest's",
    )
    parser.add_argument(
        "--cell-loss-weight",
        type=float,
        default=DEFAULT_CELL_LOSS_WEIGHT,
        help="weight of the auxiliary cell loss (train/cells.py; 0: off)",
    )
    parser.add_argument("--image-use-pages", type=int, default=IMAGE_USE_PAGES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-readout-init", dest="readout_init", action="store_false", help="keep the random vision readout"
    )
    parser.add_argument("--eval-pages", type=int, default=evaluate.DEFAULT_PAGES)
    parser.add_argument("--eval-batch", type=int, default=evaluate.DEFAULT_BATCH)
    parser.add_argument("--eval-max-new-tokens", type=int, help="cap per evaluated page (default: inf)")
    parser.add_argument(
        "--smoke", action="store_true", help=f"CPU: {SMOKE_STEPS} steps of {SMOKE_BATCH} pages, tiny evaluation"
    )
    args = parser.parse_args()
    if args.smoke:
        args.max_steps, args.batch, args.workers, args.ring = SMOKE_STEPS, SMOKE_BATCH, 1, 1
        args.image_use_pages = SMOKE_BATCH
        args.eval_pages, args.eval_batch, args.eval_max_new_tokens = 1, 1, SMOKE_EVAL_TOKENS
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    random.seed(args.seed)
    # Built on the CPU before the workers fork (CUDA must not be initialised in the parent yet).
    loaded = load_random_weights(args.config, device="cpu", dtype=torch.float32, seed=args.seed)
    model, processor, family = loaded.model, loaded.processor, loaded.family
    readout = positional_readout_init(model) if args.readout_init else None
    widths = json.loads(args.config.read_text(encoding="utf-8"))
    print(f"model: {loaded.num_parameters:,} parameters, context {loaded.context_limit.tokens}", flush=True)
    pixel_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    through_pipe = not evaluate.shared_memory_ok()
    print(f"batches travel through {'pipes' if through_pipe else 'shared memory'}", flush=True)
    context = mp.get_context("fork")
    batches = context.Queue(maxsize=max(4, args.workers * 2))
    stop = context.Event()
    workers = [
        context.Process(
            target=_worker,
            args=(i, args.workers, args.batch, processor, family, batches, stop, pixel_dtype, through_pipe),
            daemon=True,
        )
        for i in range(args.workers)
    ]
    for worker in workers:
        worker.start()
    probe = _to_device(
        image_use_batch(processor, family, args.image_use_pages, processor.tokenizer.pad_token_id, pixel_dtype),
        device,
        pixel_dtype,
    )
    model.to(device)
    model.train()
    vision = list(model.model.vision_tower.parameters())
    vision_ids = {id(parameter) for parameter in vision}
    hidden_size = model.config.text_config.hidden_size
    # The cell head is the auxiliary loss's alone: it is not part of the model and is not saved.
    cell_head = torch.nn.Linear(hidden_size, cells.CLASSES + 4 * cells.BOX_BINS).to(device)
    groups = [
        {"params": vision, "lr_scale": args.vision_lr_scale},
        {"params": [p for p in model.parameters() if id(p) not in vision_ids], "lr_scale": 1.0},
        {"params": list(cell_head.parameters()), "lr_scale": 1.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=args.lr, betas=(0.9, 0.98), weight_decay=args.weight_decay, fused=device.type == "cuda"
    )
    train_budget = max(1.0, args.budget_s - args.eval_reserve_s - (time.perf_counter() - started))
    train_started = time.perf_counter()
    ring: list[dict[str, Any]] = []
    spreads: list[dict[str, Any]] = []
    image_uses: list[dict[str, Any]] = []
    frozen_now, unfrozen_at_step = False, None
    loss_curve: list[dict[str, Any]] = []
    step = fresh = replayed = pages_seen = distinct_pages = 0
    wait_s = 0.0
    loss_sum, loss_count, cell_sum = 0.0, 0, 0.0
    last_print = train_started
    use_autocast = device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast)
    if args.cell_loss_weight > 0:
        try:  # one forward with the cell head first: a transformers without hidden states trains without it
            with torch.no_grad(), autocast:
                first_cell_loss = float(answer_loss(model, probe, cell_head)[1])
            print(f"cell loss before training: {first_cell_loss:.4f}", flush=True)
        except (RuntimeError, TypeError, AttributeError, IndexError) as exc:
            print(f"the cell loss is off: {type(exc).__name__}: {str(exc).splitlines()[0]}", flush=True)
            args.cell_loss_weight = 0.0
    try:
        with autocast:
            image_uses.append({"step": 0, **image_use(model, probe)})
        print(f"before training: held-out loss {image_uses[-1]}", flush=True)
    except RuntimeError as exc:  # the first step's fp32 fallback below handles a failing bf16
        print(f"before training: no held-out loss ({str(exc).splitlines()[0]})", flush=True)
    while step < args.max_steps:
        elapsed = time.perf_counter() - train_started
        if elapsed >= train_budget:
            break
        try:
            batch = batches.get_nowait() if ring else None
        except queue.Empty:
            batch = None
        if batch is None and (not ring or args.smoke):
            waited = time.perf_counter()
            batch = _next_batch(batches, workers)
            wait_s += time.perf_counter() - waited
        if batch is not None:
            batch = _to_device(evaluate.unpacked(batch), device, pixel_dtype)
            ring.append(batch)
            if len(ring) > args.ring:
                ring.pop(0)
            fresh += 1
            distinct_pages += len(batch["num_local_patches"])
        else:
            batch = random.choice(ring)
            replayed += 1
        vision_frozen = elapsed < args.freeze_vision_fraction * train_budget
        if vision_frozen != frozen_now:
            for parameter in model.model.vision_tower.parameters():
                parameter.requires_grad_(not vision_frozen)
            frozen_now = vision_frozen
            if not vision_frozen:
                unfrozen_at_step = step
                print(f"vision tower trainable from step {step}", flush=True)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(elapsed / train_budget, args.lr) * group["lr_scale"]
        optimizer.zero_grad(set_to_none=True)
        try:
            with autocast:
                if args.cell_loss_weight > 0:
                    loss, cell_loss = answer_loss(model, batch, cell_head)
                    total = loss + args.cell_loss_weight * cell_loss
                else:
                    loss = total = answer_loss(model, batch)
            total.backward()
        except RuntimeError as exc:
            if step > 0 or not use_autocast:
                raise
            # Insurance for the one device call: without bf16 autocast the same step runs in fp32.
            print(f"bf16 autocast failed on the first step ({str(exc).splitlines()[0]}); training in fp32", flush=True)
            use_autocast, pixel_dtype = False, torch.float32
            autocast = torch.autocast(device.type, enabled=False)
            ring = [_to_device(item, device, pixel_dtype) for item in ring]
            probe = _to_device(probe, device, pixel_dtype)
            continue
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        pages_seen += len(batch["num_local_patches"])
        loss_sum += float(loss.detach())
        if args.cell_loss_weight > 0:
            cell_sum += float(cell_loss.detach())
        loss_count += 1
        if step % LOSS_CURVE_EVERY == 0 or args.smoke:
            loss_curve.append(
                {
                    "step": step,
                    "seconds": round(time.perf_counter() - train_started, 1),
                    "pages_seen": pages_seen,
                    "loss": round(loss_sum / loss_count, 4),
                    "cell_loss": round(cell_sum / loss_count, 4) if args.cell_loss_weight > 0 else None,
                    "lr": round(optimizer.param_groups[-1]["lr"], 6),
                }
            )
            loss_sum, loss_count, cell_sum = 0.0, 0, 0.0
        now = time.perf_counter()
        if now - last_print >= PRINT_EVERY_S or args.smoke:
            last = loss_curve[-1] if loss_curve else {}
            with autocast:
                spread = feature_spread(model, batch["pixel_values"])
                use = image_use(model, probe)
            if spread is not None:
                spreads.append({"step": step, **spread})
            image_uses.append({"step": step, **use})
            print(
                f"step {step} {now - train_started:.0f}s loss {last.get('loss')} lr {last.get('lr')} "
                f"fresh {fresh} replayed {replayed} distinct pages {distinct_pages} waited {wait_s:.1f}s "
                f"image features {spread} held-out loss matched {use['matched']} shuffled {use['shuffled']} "
                f"gap {use['gap']}",
                flush=True,
            )
            last_print = now
    train_seconds = time.perf_counter() - train_started
    if not image_uses or image_uses[-1]["step"] != step:
        with autocast:
            image_uses.append({"step": step, **image_use(model, probe)})
    print(f"after training: held-out loss {image_uses[-1]}", flush=True)
    stop.set()
    for worker in workers:
        worker.terminate()
    ring.clear()
    print(f"trained {step} steps in {train_seconds:.0f}s; saving", flush=True)
    model.eval()
    checkpoint = args.out / "checkpoint"
    files = save_checkpoint(loaded, checkpoint)
    reloaded = load_checkpoint(checkpoint, device=device.type, dtype=pixel_dtype)
    sample_page = evaluate.held_out_page(0)[0]
    same_ids = torch.equal(
        family.build_inputs(processor, sample_page, PROMPT)["input_ids"],
        reloaded.family.build_inputs(reloaded.processor, sample_page, PROMPT)["input_ids"],
    )
    record = {
        "what": "DeepSeek-OCR-2 layout model trained on synthetic pages (train/pages.py): it writes where blocks "
        "are and their labels, not their text",
        "seed": args.seed,
        "widths": {k: v for k, v in widths.items() if k != "_comment"},
        "vision_readout_init": readout,
        "freeze_vision_fraction": args.freeze_vision_fraction,
        "vision_unfrozen_at_step": unfrozen_at_step,
        "vision_lr_scale": args.vision_lr_scale,
        "cell_loss": {
            "weight": args.cell_loss_weight,
            "what": "auxiliary cross-entropy on the decoder's last hidden state at each image token: the label of "
            f"the block covering its cell and that block's box in {cells.BOX_BINS} bins per coordinate "
            "(train/cells.py); the head is not saved",
        },
        "image_feature_spread": spreads,
        "image_use": {
            "what": f"held-out answer loss per token on {args.image_use_pages} pages (seeds from 0, one crop count) "
            "with their own images (matched) and with the images rolled by one page (shuffled); gap = shuffled - "
            "matched: ~0 for a model that ignores the page",
            "points": image_uses,
        },
        "parameters": loaded.num_parameters,
        "context_limit": loaded.context_limit.tokens,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "bf16_autocast": use_autocast,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
        "batch": args.batch,
        "optimizer": {"name": "AdamW", "betas": [0.9, 0.98], "weight_decay": args.weight_decay, "grad_clip": 1.0},
        "lr_schedule": {
            "kind": "linear warm-up then cosine, by elapsed fraction of the training time budget",
            "peak": args.lr,
            "warmup_fraction": WARMUP_FRACTION,
            "final_fraction": FINAL_LR_FRACTION,
        },
        "train_budget_s": round(train_budget, 1),
        "train_seconds": round(train_seconds, 1),
        "steps": step,
        "pages_seen": pages_seen,
        "distinct_pages": distinct_pages,
        "fresh_batches": fresh,
        "replayed_batches": replayed,
        "ring_batches": args.ring,
        "waited_for_data_s": round(wait_s, 1),
        "workers": args.workers,
        "batch_transport": "pipe" if through_pipe else "shared memory",
        "train_seeds": f"{TRAIN_SEED_BASE} + k * workers + worker",
        "prompt": PROMPT,
        "loss": "cross-entropy on answer tokens (grounding lines and EOS) only",
        "checkpoint_files": files,
        "reload_same_input_ids": same_ids,
        "loss_curve": loss_curve,
    }
    write_json(args.out / "training.json", record)
    # One file for the checkpoint: the device returns at most 8 files.
    with tarfile.open(args.out / "checkpoint.tar", "w") as archive:
        archive.add(checkpoint, arcname=checkpoint.name)
    shutil.rmtree(checkpoint)
    print(f"saved {files} to checkpoint.tar; reloaded input ids identical: {same_ids}", flush=True)

    def write_eval(result: dict[str, Any]) -> None:
        result["training"] = {k: record[k] for k in ("steps", "pages_seen", "train_seconds", "parameters")}
        write_json(args.out / "eval.json", result)
        shown = {k: result[k] for k in ("held_out", "other_code") if k in result}
        shown["samples"] = {
            n: {k: v for k, v in p.items() if k != "text"} for n, p in result.get("samples", {}).items()
        }
        print(f"evaluation after {result['seconds']}s: {json.dumps(shown)}", flush=True)

    evaluate.evaluate(
        reloaded,
        pages=args.eval_pages,
        batch_size=args.eval_batch,
        max_new_tokens=args.eval_max_new_tokens,
        processes=args.workers,
        on_progress=write_eval,
    )
    print(f"total {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
