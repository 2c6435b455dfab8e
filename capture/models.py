"""Load a model into one complete, frozen object, through its family (capture/families/).

Two sources:
- a local checkpoint folder (``config.json`` + weights + tokenizer/processor files), loaded
  by the family its ``model_type`` names; the embedded default (``embedded:layout-deepseek-ocr2``,
  a layout model trained on synthetic pages) is one, shipped inside the package;
- an architecture config (a ``.json`` file, or ``embedded:tiny-deepseek-ocr2``): the family's
  classes with deterministic random weights. Their text is meaningless; shapes, kernels,
  ranges and stop logic are real.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from dsocr.capture.architecture import EMBEDDED_CONFIG, check_architecture, read_config
from dsocr.capture.config import CaptureConfig, DType
from dsocr.capture.embedded_models import EMBEDDED, MODEL_CARD, TINY, embedded_name
from dsocr.capture.embedded_models import model_id as embedded_model_id
from dsocr.capture.families import LoadOptions, ModelFamily, family_for
from dsocr.capture.limits import ContextLimit
from PIL import Image
from transformers.utils import logging as hf_logging

from dsocr.errors import BadInputError, ModelLoadError

EMBEDDED_MODEL_ID = embedded_model_id(TINY)
CPU_INFO = Path("/proc/cpuinfo")
_CPU_NAME_KEY = "model name"

_TORCH_DTYPES = {DType.bf16: torch.bfloat16, DType.fp16: torch.float16, DType.fp32: torch.float32}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to profile: everything the runner needs, fixed before the first image."""

    model: torch.nn.Module
    processor: Any
    family: ModelFamily
    device: torch.device
    device_name: str  # "NVIDIA H200", or the CPU's model name
    dtype: torch.dtype
    model_id: str
    source: str  # "checkpoint" or "random-weights"
    config_sha256: str
    architecture: dict[str, Any]  # the config's to_dict(), JSON-safe: sizes for FLOPs and bytes
    context_limit: ContextLimit
    eos_token_id: int
    pad_token_id: int
    image_token_id: int
    vision_module: torch.nn.Module  # its first forward of an image opens the vision range
    text_module: torch.nn.Module  # its first forward of an image closes the vision range
    num_parameters: int
    #: What an embedded trained model says about itself (its training and evaluation figures).
    about: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        """The JSON-able facts about this model for run.json ``model``."""
        return {
            "id": self.model_id,
            "family": self.family.name,
            "source": self.source,
            "config_sha256": self.config_sha256,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "device_name": self.device_name,
            "parameters": self.num_parameters,
            "context_limit": self.context_limit.tokens,
            "context_limit_source": self.context_limit.source,
            "eos_token_id": self.eos_token_id,
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "architecture": self.architecture,
            "about": self.about,
        }


def resolve_dtype(requested: DType | None, device: str) -> torch.dtype:
    """The requested dtype, or the documented default: bf16 on cuda, fp32 on cpu."""
    if requested is None:
        requested = DType.bf16 if device == "cuda" else DType.fp32
    return _TORCH_DTYPES[requested]


def _cpu_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo; platform's guess where there is none (not Linux)."""
    try:
        for line in CPU_INFO.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == _CPU_NAME_KEY and value.strip():
                return value.strip()
    except OSError:
        pass  # no /proc: not Linux, platform below names the processor
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """What runs the model: the GPU's name on cuda, the CPU's model name on cpu."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_name()


def json_safe(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A config dict as JSON round-trips it (tuples to lists; anything else odd to its str)."""
    return json.loads(json.dumps(config_dict, default=str))


def _config_sha256(config_dict: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True, default=str).encode()).hexdigest()


def _finish(
    model: torch.nn.Module,
    processor: Any,
    family: ModelFamily,
    device: torch.device,
    model_id: str,
    source: str,
    about: dict[str, Any] | None = None,
) -> LoadedModel:
    model.eval()
    config = model.config
    text_config = family.text_config(config)
    eos = text_config.eos_token_id
    eos_token_id = eos[0] if isinstance(eos, list) else eos
    if eos_token_id is None:
        raise ModelLoadError(f"{model_id}: the config names no eos_token_id")
    pad = text_config.pad_token_id
    config_dict = config.to_dict()
    return LoadedModel(
        model=model,
        processor=processor,
        family=family,
        device=device,
        device_name=device_name(device),
        dtype=next(model.parameters()).dtype,
        model_id=model_id,
        source=source,
        config_sha256=_config_sha256(config_dict),
        architecture=json_safe(config_dict),
        context_limit=family.context_limit(config),
        eos_token_id=int(eos_token_id),
        pad_token_id=int(eos_token_id if pad is None else pad),
        image_token_id=family.image_token_id(config),
        vision_module=family.vision_module(model),
        text_module=family.text_module(model),
        num_parameters=sum(parameter.numel() for parameter in model.parameters()),
        about=about,
    )


def _check_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device cuda: no CUDA device is available to torch on this machine")
    return torch.device(device)


def _read_config(path: Path, where: str) -> dict[str, Any]:
    """The config's JSON object, its sizes checked (capture.architecture) before transformers sees it."""
    config_dict = read_config(path, where)
    check_architecture(config_dict, where)
    return config_dict


def model_source(config: CaptureConfig) -> tuple[Path, bool]:
    """The folder or config file ``config`` names and whether it is an architecture (random weights)."""
    name = embedded_name(config.model)
    if name is not None:
        return EMBEDDED[name], EMBEDDED[name].suffix == ".json"
    assert config.model is not None  # embedded_name answers for None
    if config.model.suffix == ".json" and config.model.is_file():
        return config.model, True
    return config.model, False


def resolve_family(config: CaptureConfig) -> ModelFamily:
    """The family of the model ``config`` names, from its config's model_type (no weights read)."""
    path, architecture = model_source(config)
    if architecture:
        return family_for(_read_config(path, str(path)).get("model_type"), where=str(path))
    where = f"--model {path}"
    if not path.is_dir():
        raise ModelLoadError(f"{where}: no such folder")
    return family_for(_read_config(path / "config.json", f"{where}: config.json").get("model_type"), where=where)


def resolve_prompt(config: CaptureConfig, family: ModelFamily) -> str:
    """The prompt to run: ``--prompt``, else the family's default; checked for its image placeholder."""
    prompt = family.facts.default_prompt if config.prompt is None else config.prompt
    family.facts.check_prompt(prompt)
    return prompt


def _attention_error(attn_implementation: str | None, exc: Exception) -> ModelLoadError:
    """transformers refuses an attn_implementation the model or the install lacks with a paragraph."""
    first_sentence = str(exc).splitlines()[0].split(". ")[0]
    return ModelLoadError(f"--attn-implementation {attn_implementation}: {first_sentence}")


def load_random_weights(
    config_path: Path, *, device: str, dtype: torch.dtype, seed: int, attn_implementation: str | None = None
) -> LoadedModel:
    """The architecture in ``config_path`` (its family from model_type) with seeded random weights."""
    config_dict = _read_config(config_path, str(config_path))
    family = family_for(config_dict.get("model_type"), where=str(config_path))
    torch_device = _check_device(device)
    options = LoadOptions(dtype=dtype, attn_implementation=attn_implementation)
    torch.manual_seed(seed)
    try:
        # Building on the target device skips a multi-GB host copy for full-size configs.
        with torch.device(torch_device):
            model, processor = family.random_weights(config_dict, options)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{config_path}: {exc}") from None
    except ImportError as exc:
        if attn_implementation is None:
            raise
        raise _attention_error(attn_implementation, exc) from None
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        # transformers refuses an unknown attention with a ValueError; anything else here is the
        # config's content (a string where a section belongs, a negative size): one line, no traceback.
        if attn_implementation is not None and isinstance(exc, ValueError):
            raise _attention_error(attn_implementation, exc) from None
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ModelLoadError(
            f"{config_path}: not a usable {family.name} architecture ({type(exc).__name__}: {first_line})"
        ) from None
    model.to(torch_device)
    model_id = EMBEDDED_MODEL_ID if config_path == EMBEDDED_CONFIG else f"random-weights:{config_path.name}"
    return _finish(model, processor, family, torch_device, model_id, "random-weights")


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers draws a "Loading weights" bar on stderr: capture's own progress (and the
    Python API, which prints nothing) must not get it."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_checkpoint(
    folder: Path, *, device: str, dtype: torch.dtype, attn_implementation: str | None = None
) -> LoadedModel:
    """A local checkpoint folder through its family's classes (no network)."""
    where = f"--model {folder}"
    if not folder.is_dir():
        raise ModelLoadError(f"{where}: no such folder")
    config_dict = _read_config(folder / "config.json", f"{where}: config.json")
    family = family_for(config_dict.get("model_type"), where=where)
    torch_device = _check_device(device)
    try:
        with _no_progress_bars():
            model, processor = family.checkpoint(
                folder, LoadOptions(dtype=dtype, attn_implementation=attn_implementation)
            )
    except ImportError as exc:  # transformers' answer to an attention kernel that is not installed
        if attn_implementation is None:
            raise
        raise _attention_error(attn_implementation, exc) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{where}: cannot load ({str(exc).splitlines()[0]})") from None
    model_id, about = str(folder.resolve()), None
    for name, path in EMBEDDED.items():
        if path.is_dir() and folder.resolve() == path.resolve():
            model_id, about = embedded_model_id(name), _read_config(path / MODEL_CARD, f"{where}: {MODEL_CARD}")
    return _finish(model.to(torch_device), processor, family, torch_device, model_id, "checkpoint", about)


def load_model(config: CaptureConfig) -> LoadedModel:
    """The model ``config`` names: embedded default, an architecture .json, or a checkpoint folder.

    The family and the prompt are checked first, so a bad prompt costs no weights loading.
    """
    resolve_prompt(config, resolve_family(config))
    device = config.device.value
    dtype = resolve_dtype(config.dtype, device)
    attention = config.attn_implementation
    path, architecture = model_source(config)
    if architecture:
        return load_random_weights(path, device=device, dtype=dtype, seed=config.seed, attn_implementation=attention)
    return load_checkpoint(path, device=device, dtype=dtype, attn_implementation=attention)


def encode(loaded: LoadedModel, image: Image.Image, prompt: str) -> dict[str, Any]:
    """The family's inputs for one image and prompt, on the model's device and dtype."""
    inputs = loaded.family.build_inputs(loaded.processor, image, prompt)
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
    return int((input_ids == loaded.image_token_id).sum())


def decode_text(loaded: LoadedModel, token_ids: list[int]) -> str:
    """Generated ids to text, special tokens kept (emit parses the grounding markup)."""
    return loaded.processor.tokenizer.decode(token_ids, skip_special_tokens=False)
