"""DeepSeek-OCR-2 through transformers' native classes: the first model family.

Random-weight models speak dsocr's byte-level tokenizer (capture/tokenizer.py), so the
embedded model runs with nothing downloaded; checkpoints bring their own processor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsocr.capture.families.base import Loaded, LoadOptions, ModelFamily, processor_inputs
from dsocr.capture.images import ImageReadError
from dsocr.capture.tokenizer import IMAGE_TOKEN, build_tokenizer
from PIL import Image
from transformers import (
    AutoProcessor,
    DeepseekOcr2Config,
    DeepseekOcr2ForConditionalGeneration,
    DeepseekOcr2Processor,
)
from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import DeepseekOcr2ImageProcessorPil

from dsocr.errors import ModelLoadError
from dsocr.families import DEEPSEEK_OCR2


def random_weights(config_dict: dict[str, Any], options: LoadOptions) -> Loaded:
    """The architecture in ``config_dict`` with random weights, speaking dsocr's tokenizer."""
    tokenizer = build_tokenizer()
    text = dict(config_dict.get("text_config", {}))
    # Random-weight models speak dsocr's tokenizer: its ids replace the checkpoint's.
    text.setdefault("vocab_size", len(tokenizer))
    text.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text.update(pad_token_id=tokenizer.pad_token_id)
    if text["vocab_size"] < len(tokenizer):
        raise ModelLoadError(f"vocab_size {text['vocab_size']} < the tokenizer's {len(tokenizer)}")
    config = DeepseekOcr2Config(
        text_config=text,
        vision_config=config_dict.get("vision_config"),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    model = DeepseekOcr2ForConditionalGeneration._from_config(config, **options.transformers_kwargs())
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tokenizer)
    return model, processor


def checkpoint(folder: Path, options: LoadOptions) -> Loaded:
    """A local checkpoint folder: the model and its own processor (AutoProcessor)."""
    # No device_map: it would need accelerate, which the capture extra does not install.
    model = DeepseekOcr2ForConditionalGeneration.from_pretrained(folder, **options.transformers_kwargs())
    return model, AutoProcessor.from_pretrained(folder)


#: The processor resizes a page's global view so that its long side is the view's size; the short
#: side is rounded, and a page whose short side rounds to 0 pixels (long / short >= 2 x the view)
#: fails deep inside transformers. Its size is read from the processor (1024 for DeepSeek-OCR-2).
ROUNDS_TO_ZERO = 2


def check_aspect_ratio(processor: Any, image: Image.Image) -> None:
    """ImageReadError naming the limit for a page too thin for the processor's global view."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    view = min(getattr(size, "height", None) or 0, getattr(size, "width", None) or 0)
    if not view:
        return  # a processor that states no view size: its own check applies
    long_side, short_side = max(image.size), min(image.size)
    limit = ROUNDS_TO_ZERO * view
    if long_side >= limit * short_side:
        raise ImageReadError(
            f"{image.width}x{image.height}: aspect ratio too extreme ({long_side / short_side:.0f}:1; "
            f"the limit is under {limit}:1, as the processor scales the long side to {view} pixels)"
        )


def build_inputs(processor: Any, image: Image.Image, prompt: str) -> Any:
    """The processor's inputs, a page too thin for its global view refused with the limit first."""
    check_aspect_ratio(processor, image)
    return processor_inputs(processor, image, prompt)


FAMILY = ModelFamily(
    facts=DEEPSEEK_OCR2,
    random_weights=random_weights,
    checkpoint=checkpoint,
    vision_module=lambda model: model.model.vision_tower,
    text_module=lambda model: model.model.language_model,
    build_inputs=build_inputs,
)
