"""Does the layout model read the page? A reduced-scale CPU probe of train/train_layout.py's recipe.

Run from the repository root::

    python -m train.cpu_probe --name baseline --steps 120 --out train/results/cpu-probe.jsonl
    python -m train.cpu_probe --name frozen --freeze-vision-steps 120 ...

It trains the real DeepSeek-OCR-2 classes (train/layout-config.json, optionally fewer decoder
layers) on pages of train/pages.py encoded through the processor with the global view only
(``crop_to_patches`` off: one 768 view, 144 image tokens), so a CPU step is a fraction of a
second per page. The pages are encoded once and cached (``--cache``). Every ``--eval-every``
steps it measures, on held-out pages (seeds below 1,000,000, never trained on):

- ``matched``: the answer loss per token with each page's own image;
- ``shuffled``: the same answers with the images rolled by one page (another page's image);
- ``gap`` = shuffled - matched: what the image is worth to the model. An average-layout model has
  a gap of ~0 (it ignores the image); a model that reads the page has a clearly positive gap.
  ``coord_*`` are the same on the coordinate digits only (where the page's content matters most);
- ``spread``: the mean distance between two pages' projected image features over their mean norm.

Each probe appends one JSON line (its settings and every measurement) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as functional  # noqa: E402
from dsocr.capture.models import load_random_weights  # noqa: E402

from train import cells, train_layout  # noqa: E402
from train.pages import draw_page, target_text  # noqa: E402

HELD_OUT_PAGES = 8  # seeds from 0 up (held out: below 1,000,000)
TRAIN_SEED_BASE = train_layout.TRAIN_SEED_BASE
#: No crops: the global view alone, which the processor then draws at the crop size (768, 144 image
#: tokens). ``size`` must say so too, or the processor counts the 1024 view's 256 placeholders.
PROBE_VIEW = 768
GLOBAL_VIEW_ONLY = {"crop_to_patches": False, "size": {"height": 768, "width": 768}}


def _encode(processor: Any, seed: int, max_blocks: int | None) -> dict[str, Any] | None:
    page = draw_page(seed)
    if max_blocks is not None and len(page.blocks) > max_blocks:
        return None
    inputs = processor(images=page.image, text=train_layout.PROMPT, return_tensors="pt", **GLOBAL_VIEW_ONLY)
    tokenizer = processor.tokenizer
    answer = tokenizer(target_text(page.blocks, page.image.size), add_special_tokens=False)["input_ids"]
    return {
        "prompt_ids": inputs["input_ids"][0],
        "answer_ids": torch.tensor([*answer, tokenizer.eos_token_id], dtype=torch.long),
        "pixel_values": inputs["pixel_values"].to(torch.float16),
        "pixel_values_local": None,
        "num_local_patches": 0,
    }


def encoded_pages(processor: Any, cache: Path, count: int, max_blocks: int | None) -> dict[str, list]:
    """``count`` training pages and the held-out pages, encoded once and cached."""
    if cache.exists():
        data = torch.load(cache, weights_only=False)
        if len(data["train"]) >= count:
            return data
    train, seed = [], TRAIN_SEED_BASE
    while len(train) < count:
        example = _encode(processor, seed, max_blocks)
        seed += 1
        if example is not None:
            train.append(example)
    held, seed = [], 0
    while len(held) < HELD_OUT_PAGES:
        example = _encode(processor, seed, max_blocks)
        seed += 1
        if example is not None:
            held.append(example)
    data = {"train": train, "held_out": held}
    torch.save(data, cache)
    return data


def _batch(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    batch = train_layout.collate(examples, pad_id, torch.float32)
    if all("cells" in e for e in examples):
        batch["cells"] = torch.cat([e["cells"] for e in examples])
    if all("vision_states" in e for e in examples):
        batch["vision_states"] = torch.stack([e["vision_states"] for e in examples]).float()
    return batch


BACKGROUND = 127 / 255 * 2 - 1  # the processor's padding colour, normalised (mean 0.5, std 0.5)


def add_cells(examples: list[dict[str, Any]], tokenizer: Any) -> None:
    """Each example's per-image-token cell targets (train/cells.py), from its answer and its view."""
    pattern = re.compile(r"<\|ref\|>(\w+)<\|/ref\|><\|det\|>\[\[(\d+), (\d+), (\d+), (\d+)\]\]")
    for example in examples:
        text = tokenizer.decode(example["answer_ids"].tolist(), skip_special_tokens=False)
        blocks = [(m[0], tuple(float(v) for v in m[1:])) for m in pattern.findall(text)]
        page = ((example["pixel_values"][0].float() - BACKGROUND).abs() > 1e-3).any(dim=0)
        height, width = int(page.any(dim=1).sum()), int(page.any(dim=0).sum())
        centres = cells.token_centres(width, height, PROBE_VIEW, crops=False)
        example["cells"] = torch.tensor(cells.cell_targets(centres, blocks), dtype=torch.long)


def cache_vision_states(model: torch.nn.Module, examples: list[dict[str, Any]]) -> None:
    """Each example's vision-tower output (the tower is frozen throughout: it never changes)."""
    with torch.no_grad():
        for start in range(0, len(examples), 8):
            chunk = examples[start : start + 8]
            pixels = torch.cat([e["pixel_values"] for e in chunk]).float()
            states = model.model.vision_tower(pixels).last_hidden_state
            for example, state in zip(chunk, states, strict=True):
                example["vision_states"] = state.to(torch.float16)


def _logits(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The model's logits; from cached vision-tower outputs (``vision_states``) when the batch has them.

    The cached path is the model's own forward with the (frozen) vision tower's output given:
    projector, view separator, image features scattered over the placeholders, decoder, head.
    """
    if "vision_states" not in batch:
        return model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
            pixel_values_local=None,
            num_local_patches=batch["num_local_patches"],
            use_cache=False,
        ).logits
    inner = model.model
    features = inner.multi_modal_projector(batch["vision_states"])
    separator = inner.view_separator.expand(features.shape[0], 1, -1)
    features = torch.cat([features, separator], dim=1).reshape(-1, features.shape[-1])
    embeds = inner.get_input_embeddings()(batch["input_ids"])
    mask = (batch["input_ids"] == model.config.image_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(mask, features.to(embeds.dtype))
    hidden = inner.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], use_cache=False)
    batch["hidden"] = hidden.last_hidden_state
    return model.lm_head(hidden.last_hidden_state)


def _losses(
    model: torch.nn.Module, batch: dict[str, Any], digit_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token answer losses and the mask of coordinate digits among them."""
    logits = _logits(model, batch)[:, :-1].float()
    targets = batch["labels"][:, 1:]
    losses = functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
    keep = targets != -100
    digits = torch.isin(targets, digit_ids) & keep
    return losses[keep], losses[digits]


def measure(model: torch.nn.Module, held: list[dict[str, Any]], pad_id: int, digit_ids: torch.Tensor) -> dict:
    """Matched vs shuffled held-out loss, and the image features' spread."""
    model.eval()
    with torch.no_grad():
        batch = _batch(held, pad_id)
        matched, matched_digits = _losses(model, batch, digit_ids)
        rolled = dict(batch)
        rolled["pixel_values"] = batch["pixel_values"].roll(1, dims=0)
        if "vision_states" in batch:
            rolled["vision_states"] = batch["vision_states"].roll(1, dims=0)
        shuffled, shuffled_digits = _losses(model, rolled, digit_ids)
        inner = model.model
        states = batch.get("vision_states")
        if states is None:
            states = inner.vision_tower(batch["pixel_values"]).last_hidden_state
        features = inner.multi_modal_projector(states)
        difference = (features - features.roll(1, dims=0)).norm(dim=-1).mean()
        norm = features.norm(dim=-1).mean()
    model.train()
    return {
        "matched": round(float(matched.mean()), 4),
        "shuffled": round(float(shuffled.mean()), 4),
        "gap": round(float(shuffled.mean() - matched.mean()), 4),
        "coord_matched": round(float(matched_digits.mean()), 4),
        "coord_shuffled": round(float(shuffled_digits.mean()), 4),
        "coord_gap": round(float(shuffled_digits.mean() - matched_digits.mean()), 4),
        "feature_norm": round(float(norm), 3),
        "spread": round(float(difference / norm), 4),
    }


def main() -> None:
    """Command line: one probe, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/dsocr-probe-pages.pt"))
    parser.add_argument("--pages", type=int, default=240, help="distinct training pages (cycled)")
    parser.add_argument("--max-blocks", type=int, help="only pages with at most this many blocks")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--vision-lr-scale", type=float, default=1.0, help="SAM and encoder LR / the rest")
    parser.add_argument("--freeze-vision-steps", type=int, default=0, help="SAM and encoder frozen this long")
    parser.add_argument("--freeze-projector-steps", type=int, default=0)
    parser.add_argument("--freeze-sam", action="store_true", help="SAM frozen throughout")
    parser.add_argument(
        "--freeze-readout", action="store_true", help="the encoder's first attention (q, k) frozen throughout"
    )
    parser.add_argument("--coord-weight", type=float, default=1.0, help="loss weight of coordinate digits")
    parser.add_argument("--cell-loss-weight", type=float, default=0.0, help="auxiliary loss (train/cells.py)")
    parser.add_argument("--text-layers", type=int, help="decoder layers (default: the config's)")
    parser.add_argument("--eval-every", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = json.loads(train_layout.CONFIG.read_text())
    if args.text_layers is not None:
        config["text_config"]["num_hidden_layers"] = args.text_layers
        config["text_config"]["mlp_layer_types"] = ["dense"] * (args.text_layers - 1) + ["sparse"]
    config_path = Path(f"/tmp/dsocr-probe-config-{args.name}.json")
    config_path.write_text(json.dumps(config))
    loaded = load_random_weights(config_path, device="cpu", dtype=torch.float32, seed=args.seed)
    model, processor = loaded.model, loaded.processor
    train_layout.positional_readout_init(model)
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id
    digit_ids = torch.tensor([tokenizer(str(d), add_special_tokens=False)["input_ids"][0] for d in range(10)])
    data = encoded_pages(processor, args.cache, args.pages, args.max_blocks)
    train, held = data["train"][: args.pages], data["held_out"]
    if args.freeze_vision_steps >= args.steps:
        cache_vision_states(model, train + held)  # frozen throughout: decoder-only steps
    add_cells(train + held, tokenizer)
    head = torch.nn.Linear(model.config.text_config.hidden_size, cells.CLASSES + 4 * cells.BOX_BINS)
    inner = model.model
    vision = list(inner.vision_tower.parameters())
    sam = list(inner.vision_tower.sam_encoder.parameters())
    projector = list(inner.multi_modal_projector.parameters())
    attention = inner.vision_tower.vision_encoder.layers[0].self_attn
    readout = [*attention.q_proj.parameters(), *attention.k_proj.parameters()]
    vision_ids = {id(p) for p in vision} | {id(p) for p in projector}
    rest = [p for p in model.parameters() if id(p) not in vision_ids]
    groups = [
        {"params": vision, "scale": args.vision_lr_scale},
        {"params": projector, "scale": 1.0},
        {"params": rest + list(head.parameters()), "scale": 1.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = random.Random(args.seed)
    record: dict[str, Any] = {"name": args.name, "settings": vars(args) | {"out": str(args.out), "cache": None}}
    record["parameters"] = loaded.num_parameters
    record["measurements"] = []
    started = time.perf_counter()
    record["measurements"].append({"step": 0, **measure(model, held, pad_id, digit_ids)})
    print(json.dumps(record["measurements"][-1]), flush=True)
    train_losses: list[float] = []
    for step in range(1, args.steps + 1):
        for parameter in vision:
            parameter.requires_grad_(step > args.freeze_vision_steps)
        for parameter in sam if args.freeze_sam else []:
            parameter.requires_grad_(False)
        for parameter in projector:
            parameter.requires_grad_(step > args.freeze_projector_steps)
        for parameter in readout if args.freeze_readout else []:
            parameter.requires_grad_(False)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * group["scale"] * min(1.0, step / args.warmup_steps)
        batch = _batch(rng.sample(train, args.batch), pad_id)
        losses, _ = _losses(model, batch, digit_ids)
        targets = batch["labels"][:, 1:]
        keep = targets != -100
        weights = torch.where(torch.isin(targets[keep], digit_ids), args.coord_weight, 1.0)
        loss = (losses * weights).sum() / weights.sum()
        if args.cell_loss_weight > 0:
            image_mask = batch["input_ids"] == model.config.image_token_id
            cell_loss = train_layout.cells_loss(head, batch["hidden"][image_mask].float(), batch["cells"])
            loss = loss + args.cell_loss_weight * cell_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        train_losses.append(float(losses.detach().mean()))
        if step % args.eval_every == 0 or step == args.steps:
            point = {
                "step": step,
                "seconds": round(time.perf_counter() - started, 1),
                "train_loss": round(sum(train_losses) / len(train_losses), 4),
                **measure(model, held, pad_id, digit_ids),
            }
            train_losses.clear()
            record["measurements"].append(point)
            print(json.dumps(point), flush=True)
    with args.out.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
