"""Install a device run's checkpoint as the embedded layout model, with its model card.

Run from the repository root with the files a training call returned::

    python -m train.ship --run DIR          # DIR holds checkpoint.tar, training.json, eval.json

The checkpoint folder becomes capture/embedded/layout-deepseek-ocr2/ (bf16 safetensors, config,
tokenizer, processor) and ``dsocr-model.json`` beside it says what the model is, how it was
trained and every figure of its evaluation; capture copies that card into run.json
``model.about``. Refuses a checkpoint over the package's 25 MB budget.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "capture" / "embedded" / "layout-deepseek-ocr2"
CARD = "dsocr-model.json"
MAX_BYTES = 25 * 10**6
WHAT = (
    "a layout model trained on synthetic pages (train/pages.py): DeepSeek-OCR-2's architecture at small "
    "widths; it writes where the blocks of a page are and what kind they are (title, sub_title, text, table, "
    "table_caption, image, image_caption), not their text"
)
TRAINING_KEYS = (
    "seed",
    "parameters",
    "context_limit",
    "device",
    "batch",
    "lr_schedule",
    "optimizer",
    "steps",
    "pages_seen",
    "distinct_pages",
    "train_seconds",
    "vision_readout_init",
    "freeze_vision_fraction",
    "vision_lr_scale",
    "cell_loss",
    "image_use",
)


def model_card(training: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """What run.json ``model.about`` says: what the model is, its training and its evaluation figures."""
    samples = {
        name: {key: value for key, value in page.items() if key != "text"}
        for name, page in evaluation.get("samples", {}).items()
    }
    return {
        "what": WHAT,
        "training": {key: training.get(key) for key in TRAINING_KEYS},
        "evaluation": {
            "script": "train/evaluate.py",
            "max_new_tokens": evaluation.get("max_new_tokens"),
            "iou_match": evaluation.get("iou_match"),
            "device": evaluation.get("device"),
            "held_out": evaluation.get("held_out"),
            "other_code": evaluation.get("other_code"),
            "samples": samples,
        },
    }


def main() -> None:
    """Command line: install the checkpoint of ``--run``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="folder with checkpoint.tar, training.json, eval.json")
    args = parser.parse_args()
    training = json.loads((args.run / "training.json").read_text(encoding="utf-8"))
    evaluation = json.loads((args.run / "eval.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as temp:
        with tarfile.open(args.run / "checkpoint.tar") as archive:
            archive.extractall(temp, filter="data")
        folder = Path(temp) / "checkpoint"
        size = sum(path.stat().st_size for path in folder.iterdir())
        if size > MAX_BYTES:
            sys.exit(f"Error: the checkpoint is {size / 1e6:.1f} MB, over the package's {MAX_BYTES / 1e6:.0f} MB")
        (folder / CARD).write_text(json.dumps(model_card(training, evaluation), indent=1) + "\n", encoding="utf-8")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(folder, TARGET)
    print(f"installed {TARGET.relative_to(ROOT)} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
