"""The layout model's training script, run for a few CPU steps (a smoke test, not the training).

It runs the real script (train/train_layout.py --smoke) in a subprocess on a handful of pages,
at tiny widths so it stays short on CPU, and checks what the device run relies on: the training
record next to the weights, a bf16 checkpoint under the device's 16 MiB per-file limit that
reloads through dsocr's loader with the training processor's input ids, and an evaluation file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="training needs the [capture] extra")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "capture" / "embedded" / "tiny-deepseek-ocr2.json"
MAX_FILE_BYTES = 16 * 2**20
SMOKE_TIMEOUT_S = 600


def _smoke_config(tmp_path: Path) -> Path:
    """The tiny widths with the layout recipe's two fixes: SAM initialised, room for the answer."""
    config = json.loads(TINY.read_text())
    config["text_config"]["max_position_embeddings"] = 2048
    config["vision_config"]["sam_config"]["initializer_range"] = 0.02
    path = tmp_path / "smoke-config.json"
    path.write_text(json.dumps(config))
    return path


def _assert_vision_unchanged(config: Path, out: Path) -> None:
    """A frozen vision tower leaves the checkpoint's vision weights at their initial values."""
    import torch
    from dsocr.capture.models import load_random_weights
    from safetensors.torch import load

    from train.train_layout import positional_readout_init

    initial = load_random_weights(config, device="cpu", dtype=torch.float32, seed=0).model
    positional_readout_init(initial)
    with tarfile.open(out / "checkpoint.tar") as archive:
        weights_file = archive.extractfile("checkpoint/model.safetensors")
        assert weights_file is not None
        saved = load(weights_file.read())
    tower = initial.model.vision_tower
    patch = tower.sam_encoder.patch_embed.projection.weight.to(torch.bfloat16)
    query = tower.query_1024_resolution.weight.to(torch.bfloat16)
    assert torch.equal(saved["model.sam_model.patch_embed.proj.weight"], patch)
    assert torch.equal(saved["model.qwen2_model.query_1024.weight"], query)
    decoder_before = initial.lm_head.weight.to(torch.bfloat16)
    assert not torch.equal(saved["lm_head.weight"], decoder_before)  # the rest did train


def test_training_script_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = _smoke_config(tmp_path)
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "train.train_layout", "--smoke"),
            *("--config", str(config), "--out", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "step 2" in completed.stdout  # progress is printed
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 2 and record["pages_seen"] == 4 and record["batch"] == 2
    assert record["seed"] == 0 and record["parameters"] > 0 and record["widths"]["model_type"] == "deepseek_ocr2"
    assert record["lr_schedule"]["peak"] > 0 and len(record["loss_curve"]) == 2
    assert all(point["loss"] > 0 for point in record["loss_curve"])
    assert record["reload_same_input_ids"] is True
    assert record["vision_readout_init"]["head_offsets"] == [256, 256, 144, 144]
    # The default keeps the vision tower frozen throughout (it collapses when trained with the rest).
    assert (record["freeze_vision_fraction"], record["vision_unfrozen_at_step"]) == (1.0, None)
    assert len(record["image_feature_spread"]) == 2
    # The metric that says whether the model reads the page: held-out loss with each page's own
    # image against another page's image, printed with the progress and recorded.
    assert "held-out loss matched" in completed.stdout and " gap " in completed.stdout
    uses = record["image_use"]["points"]
    assert [point["step"] for point in uses] == [0, 1, 2]  # before training, then each step
    for point in uses:
        assert point["matched"] > 0 and point["shuffled"] > 0
        assert point["gap"] == pytest.approx(point["shuffled"] - point["matched"], abs=1e-3)
    from train.train_layout import DEFAULT_VISION_LR_SCALE

    assert record["vision_lr_scale"] == DEFAULT_VISION_LR_SCALE
    # The auxiliary cell loss is on by default and recorded with the answer loss.
    assert record["cell_loss"]["weight"] == 1.0
    assert all(point["cell_loss"] > 0 for point in record["loss_curve"])
    assert all(point["page_difference"] > 0 for point in record["image_feature_spread"])
    with tarfile.open(out / "checkpoint.tar") as archive:
        members = {Path(member.name).name: member for member in archive.getmembers() if member.isfile()}
        config_file = archive.extractfile(members["config.json"])
        assert config_file is not None
        assert json.loads(config_file.read())["dtype"] == "bfloat16"
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= set(members)
    assert max(member.size for member in members.values()) <= MAX_FILE_BYTES
    assert not (out / "checkpoint").exists()  # archived whole (the device returns at most 8 files)
    _assert_vision_unchanged(config, out)
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["held_out"]["pages"] == 1 and evaluation["other_code"]["pages"] == 1
    assert set(evaluation["samples"]) == {"text-page.png", "table-page.png", "figure-page.png"}


def test_image_use_exchanges_the_pages_images(tmp_path: Path) -> None:
    """The shuffled loss gives each page another page's image (global view and crops alike): the
    same page twice has a gap of exactly 0; different pages (a random model already sees them
    differently) a gap that is not 0."""
    import torch
    from dsocr.capture.models import load_random_weights

    from train.train_layout import image_use, image_use_batch

    loaded = load_random_weights(_smoke_config(tmp_path), device="cpu", dtype=torch.float32, seed=0)
    processor, pad_id = loaded.processor, loaded.processor.tokenizer.pad_token_id
    batch = image_use_batch(processor, loaded.family, 2, pad_id, torch.float32)
    assert batch["num_local_patches"][0] == batch["num_local_patches"][1] > 0
    different = image_use(loaded.model, batch)
    assert different["gap"] != 0
    twice = dict(batch)
    crops = batch["num_local_patches"][0]
    twice["pixel_values"] = batch["pixel_values"][:1].repeat(2, 1, 1, 1)
    twice["pixel_values_local"] = batch["pixel_values_local"][:crops].repeat(2, 1, 1, 1)
    same = image_use(loaded.model, twice)
    assert same["gap"] == 0


def test_cell_targets_follow_the_processors_views() -> None:
    """train/cells.py's geometry matches the processor: one target per image token (crops, global
    view, separator), and the global-view token at a block's centre is labelled with that block."""
    from dsocr.capture.tokenizer import build_tokenizer
    from transformers import DeepseekOcr2Processor
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import DeepseekOcr2ImageProcessorPil

    from train import cells
    from train.pages import LABELS, draw_page, normalized
    from train.train_layout import PROMPT

    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=build_tokenizer())
    view = processor.image_processor.size["height"]
    shapes = set()
    for seed in range(6):
        page = draw_page(seed)
        width, height = page.image.size
        shapes.add(width > height)
        inputs = processor(images=page.image, text=PROMPT, return_tensors="pt")
        centres = cells.token_centres(width, height, view, crops=True)
        assert len(centres) == int((inputs["input_ids"] == processor.image_token_id).sum())
        boxes = [(block.label, normalized(block.box, page.image.size)) for block in page.blocks]
        targets = cells.cell_targets(centres, boxes)
        label, box = max(boxes, key=lambda item: (item[1][2] - item[1][0]) * (item[1][3] - item[1][1]))
        centre = ((box[0] + box[2]) / 2 / 999, (box[1] + box[3]) / 2 / 999)
        side = view // cells.TOKEN_PIXELS
        global_start = len(centres) - 1 - side * side
        nearest = min(
            range(global_start, len(centres) - 1),
            key=lambda i: (
                float("inf")
                if centres[i] is None
                else (centres[i][0] - centre[0]) ** 2 + (centres[i][1] - centre[1]) ** 2
            ),
        )
        assert targets[nearest][0] == 1 + LABELS.index(label)
        assert targets[-1] == (cells.IGNORE,) * 5  # the view separator
    assert shapes == {True, False}  # landscape and portrait pages (padding on either side)


def test_crop_grid_copy_agrees_with_the_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The copied crop-grid rule (used where transformers lays its modules out differently) picks the
    processor's grid for every page shape the generators draw and more."""
    from train import cells

    sizes = [(w, h) for w in range(300, 2400, 97) for h in range(300, 2400, 89)]
    expected = [cells.crop_grid(w, h) for w, h in sizes]
    monkeypatch.setattr(cells, "get_optimal_tiled_canvas", None)
    assert [cells.crop_grid(w, h) for w, h in sizes] == expected
    assert len(set(expected)) > 3


def test_a_step_waiting_for_dead_page_workers_fails_at_once() -> None:
    """When every page worker has died, waiting for a batch is an error within seconds (the device
    call would otherwise wait out its time limit and save nothing)."""
    import multiprocessing

    from train.train_layout import WORKER_CHECK_S, _next_batch

    context = multiprocessing.get_context("fork")
    worker = context.Process(target=sys.exit, args=(3,))
    worker.start()
    worker.join()
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="every page worker died"):
        _next_batch(context.Queue(), [worker])
    assert time.perf_counter() - started < 3 * WORKER_CHECK_S
