"""Load a DeepSeek-OCR model into one complete, frozen object; the adapter for each family.

Two sources:
- a local checkpoint folder (``config.json`` + weights + tokenizer/processor files), loaded
  through transformers' native DeepSeek-OCR-2 classes;
- an architecture config (a ``.json`` file, or the embedded tiny default): the same classes
  with deterministic random weights and the byte-level tokenizer dsocr builds itself. Its
  text is meaningless; shapes, kernels, ranges and stop logic are real.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from dsocr.capture.config import CaptureConfig, DType
from dsocr.capture.limits import ContextLimit, find_context_limit
from dsocr.capture.tokenizer import IMAGE_TOKEN, build_tokenizer
from PIL import Image
from transformers import (
    AutoProcessor,
    DeepseekOcr2Config,
    DeepseekOcr2ForConditionalGeneration,
    DeepseekOcr2Processor,
)
from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import DeepseekOcr2ImageProcessorPil

from dsocr.errors import BadInputError, ModelLoadError

log = logging.getLogger(__package__)

EMBEDDED_CONFIG = Path(__file__).parent / "embedded" / "tiny-deepseek-ocr2.json"
EMBEDDED_MODEL_ID = "embedded:tiny-deepseek-ocr2"
OCR2_MODEL_TYPE = "deepseek_ocr2"
# DeepSeek-OCR v1 ships remote code whose config names these types.
V1_MODEL_TYPES = ("deepseek_vl_v2", "deepseek_ocr")

_TORCH_DTYPES = {DType.bf16: torch.bfloat16, DType.fp16: torch.float16, DType.fp32: torch.float32}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to profile: everything the runner needs, fixed before the first image."""

    model: torch.nn.Module
    processor: Any
    device: torch.device
    dtype: torch.dtype
    model_id: str
    source: str  # "checkpoint" or "random-weights"
    config_sha256: str
    context_limit: ContextLimit
    eos_token_id: int
    pad_token_id: int
    vision_module: torch.nn.Module  # its first forward of an image opens the vision range
    text_module: torch.nn.Module  # its first forward of an image closes the vision range
    num_parameters: int

    def describe(self) -> dict[str, Any]:
        """The JSON-able facts about this model for run.json."""
        return {
            "id": self.model_id,
            "family": OCR2_MODEL_TYPE,
            "source": self.source,
            "config_sha256": self.config_sha256,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "parameters": self.num_parameters,
            "context_limit": self.context_limit.tokens,
            "context_limit_source": self.context_limit.source,
            "eos_token_id": self.eos_token_id,
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
        }


def resolve_dtype(requested: DType | None, device: str) -> torch.dtype:
    """The requested dtype, or the documented default: bf16 on cuda, fp32 on cpu."""
    if requested is None:
        requested = DType.bf16 if device == "cuda" else DType.fp32
    return _TORCH_DTYPES[requested]


def _config_sha256(config_dict: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()


def _finish(model: torch.nn.Module, processor: Any, device: torch.device, model_id: str, source: str) -> LoadedModel:
    model.eval()
    config = model.config
    text_config = config.text_config
    eos = text_config.eos_token_id
    eos_token_id = eos[0] if isinstance(eos, list) else eos
    if eos_token_id is None:
        raise ModelLoadError(f"{model_id}: the config names no eos_token_id")
    pad = text_config.pad_token_id
    return LoadedModel(
        model=model,
        processor=processor,
        device=device,
        dtype=next(model.parameters()).dtype,
        model_id=model_id,
        source=source,
        config_sha256=_config_sha256(config.to_dict()),
        context_limit=find_context_limit(config),
        eos_token_id=int(eos_token_id),
        pad_token_id=int(eos_token_id if pad is None else pad),
        vision_module=model.model.vision_tower,
        text_module=model.model.language_model,
        num_parameters=sum(parameter.numel() for parameter in model.parameters()),
    )


def _check_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device cuda: no CUDA device is available to torch on this machine")
    return torch.device(device)


def _attention_kwargs(attn_implementation: str | None) -> dict[str, str]:
    return {} if attn_implementation is None else {"attn_implementation": attn_implementation}


def load_random_weights(
    config_path: Path, *, device: str, dtype: torch.dtype, seed: int, attn_implementation: str | None = None
) -> LoadedModel:
    """DeepSeek-OCR-2 of the architecture in ``config_path`` with seeded random weights."""
    try:
        config_dict = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config_path}: not a readable JSON architecture config ({exc})") from None
    if config_dict.get("model_type") != OCR2_MODEL_TYPE:
        raise ModelLoadError(
            f"{config_path}: model_type must be {OCR2_MODEL_TYPE!r}, got {config_dict.get('model_type')!r}"
        )
    tokenizer = build_tokenizer()
    text = dict(config_dict.get("text_config", {}))
    # Random-weight models speak dsocr's tokenizer: its ids replace the checkpoint's.
    text.setdefault("vocab_size", len(tokenizer))
    text.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text.update(pad_token_id=tokenizer.pad_token_id)
    if text["vocab_size"] < len(tokenizer):
        raise ModelLoadError(f"{config_path}: vocab_size {text['vocab_size']} < the tokenizer's {len(tokenizer)}")
    config = DeepseekOcr2Config(
        text_config=text,
        vision_config=config_dict.get("vision_config"),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    torch_device = _check_device(device)
    torch.manual_seed(seed)
    # Building on the target device skips a multi-GB host copy for full-size configs.
    try:
        with torch.device(torch_device):
            model = DeepseekOcr2ForConditionalGeneration._from_config(
                config, dtype=dtype, **_attention_kwargs(attn_implementation)
            )
    except (ValueError, ImportError) as exc:
        first_sentence = str(exc).splitlines()[0].split(". ")[0]
        raise ModelLoadError(f"--attn-implementation {attn_implementation}: {first_sentence}") from None
    model.to(torch_device)
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tokenizer)
    model_id = EMBEDDED_MODEL_ID if config_path == EMBEDDED_CONFIG else f"random-weights:{config_path.name}"
    return _finish(model, processor, torch_device, model_id, "random-weights")


def load_checkpoint(
    folder: Path, *, device: str, dtype: torch.dtype, attn_implementation: str | None = None
) -> LoadedModel:
    """A local DeepSeek-OCR-2 checkpoint folder through transformers' native classes."""
    if not folder.is_dir():
        raise ModelLoadError(f"--model {folder}: no such folder")
    config_file = folder / "config.json"
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"--model {folder}: no readable config.json ({exc.__class__.__name__})") from None
    if model_type in V1_MODEL_TYPES:
        raise ModelLoadError(
            f"--model {folder}: DeepSeek-OCR v1 ({model_type}) needs its remote code; "
            "this version profiles DeepSeek-OCR-2 (native in transformers)"
        )
    if model_type != OCR2_MODEL_TYPE:
        raise ModelLoadError(f"--model {folder}: not a DeepSeek-OCR-2 model (model_type {model_type!r})")
    torch_device = _check_device(device)
    try:
        # No device_map: it would need accelerate, which the capture extra does not install.
        model = DeepseekOcr2ForConditionalGeneration.from_pretrained(
            folder, dtype=dtype, **_attention_kwargs(attn_implementation)
        ).to(torch_device)
        processor = AutoProcessor.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"--model {folder}: cannot load ({str(exc).splitlines()[0]})") from None
    return _finish(model, processor, torch_device, str(folder.resolve()), "checkpoint")


def load_model(config: CaptureConfig) -> LoadedModel:
    """The model ``config`` names: embedded default, an architecture .json, or a checkpoint folder."""
    device = config.device.value
    dtype = resolve_dtype(config.dtype, device)
    attention = config.attn_implementation
    if config.model is None:
        return load_random_weights(
            EMBEDDED_CONFIG, device=device, dtype=dtype, seed=config.seed, attn_implementation=attention
        )
    if config.model.suffix == ".json" and config.model.is_file():
        return load_random_weights(
            config.model, device=device, dtype=dtype, seed=config.seed, attn_implementation=attention
        )
    return load_checkpoint(config.model, device=device, dtype=dtype, attn_implementation=attention)


def encode(loaded: LoadedModel, image: Image.Image, prompt: str) -> dict[str, Any]:
    """Processor outputs for one image, on the model's device and dtype."""
    inputs = loaded.processor(images=image, text=prompt, return_tensors="pt")
    encoded = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(loaded.device)
            if value.is_floating_point():
                value = value.to(loaded.dtype)
        encoded[name] = value
    return encoded


def greedy_generate(loaded: LoadedModel, inputs: dict[str, Any], max_new_tokens: int, **extra: Any) -> torch.Tensor:
    """One greedy ``generate`` with the model's EOS and pad ids: the call every capture path makes."""
    with torch.inference_mode():
        return loaded.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=loaded.eos_token_id,
            pad_token_id=loaded.pad_token_id,
            **extra,
        )


def image_token_count(loaded: LoadedModel, input_ids: torch.Tensor) -> int:
    """How many prompt tokens are image placeholders."""
    return int((input_ids == loaded.model.config.image_token_id).sum())


def decode_text(loaded: LoadedModel, token_ids: list[int]) -> str:
    """Generated ids to text, special tokens kept (emit parses the grounding markup)."""
    return loaded.processor.tokenizer.decode(token_ids, skip_special_tokens=False)
