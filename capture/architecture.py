"""Torch-free checks of a model's config.json (or architecture .json) before any model loads.

transformers accepts a hidden_size of 64.5 or ``true``, a negative layer count, or more experts
per token than experts, and fails later, deep inside torch, with a message about tensors; a
config nested 100,000 deep crashes the JSON parser. Each is refused here with one line naming
the field, in well under a second (torch is not imported).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dsocr.capture.config import CaptureConfig
from dsocr.capture.embedded_models import EMBEDDED, TINY, embedded_name, model_id
from dsocr.capture.limits import CONTEXT_ATTRIBUTES, ContextLimit

from dsocr.errors import BadInputError, ModelLoadError

#: The random-weight tiny architecture (``--model embedded:tiny-deepseek-ocr2``).
EMBEDDED_CONFIG = EMBEDDED[TINY]

#: Sizes that must be integers >= 1 wherever they appear (a null means the model's default).
POSITIVE_SIZES = frozenset(
    {
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "vocab_size", "max_position_embeddings", "moe_intermediate_size", "n_routed_experts",
        "num_experts_per_tok", "head_dim", "patch_size", "image_size", "output_channels", "window_size",
    }
)  # fmt: skip
#: Counts that may be 0 but never negative nor fractional.
NON_NEGATIVE_COUNTS = frozenset({"n_shared_experts", "first_k_dense_replace", "n_group", "topk_group"})


def read_config(path: Path, where: str) -> dict[str, Any]:
    """The JSON object in ``path``; ModelLoadError naming ``where`` when it is not one."""
    try:
        config_dict = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{where}: not a readable JSON config ({exc.__class__.__name__})") from None
    except RecursionError:  # {"a": {"a": ... nested deeper than Python's parser recurses
        raise ModelLoadError(f"{where}: not a readable JSON config (nested too deeply)") from None
    if not isinstance(config_dict, dict):
        raise ModelLoadError(f"{where}: not a JSON config (a JSON object expected)")
    return config_dict


def config_file(config: CaptureConfig) -> tuple[Path, str, bool]:
    """The config file ``config`` names, how errors name it, and whether it is an architecture
    (random weights) rather than a checkpoint folder's config.json."""
    name = embedded_name(config.model)
    if name is not None:  # the default, or --model embedded:NAME
        model = EMBEDDED[name]
        if model.suffix == ".json":
            return model, str(model), True
        return model / "config.json", f"--model {model_id(name)}: config.json", False
    if config.model.suffix == ".json" and config.model.is_file():
        return config.model, str(config.model), True
    return config.model / "config.json", f"--model {config.model}: config.json", False


def _sections(config_dict: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every object of the config with its dotted name (``text_config``, ``vision_config.sam_config``)."""
    yield prefix, config_dict
    for key, value in config_dict.items():
        if isinstance(value, Mapping):
            yield from _sections(value, f"{prefix}{key}.")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_section(where: str, prefix: str, section: Mapping[str, Any]) -> None:
    for key, value in section.items():
        if value is None:
            continue
        if key in POSITIVE_SIZES and not (_is_integer(value) and value >= 1):
            raise ModelLoadError(f"{where}: {prefix}{key} must be an integer >= 1, got {json.dumps(value)}")
        if key in NON_NEGATIVE_COUNTS and not (_is_integer(value) and value >= 0):
            raise ModelLoadError(f"{where}: {prefix}{key} must be an integer >= 0, got {json.dumps(value)}")
    hidden, heads, kv_heads = (
        section.get(key) for key in ("hidden_size", "num_attention_heads", "num_key_value_heads")
    )
    if hidden and heads and section.get("head_dim") is None and hidden % heads:
        raise ModelLoadError(
            f"{where}: {prefix}hidden_size {hidden} is not divisible by {prefix}num_attention_heads {heads}"
        )
    if heads and kv_heads and heads % kv_heads:
        raise ModelLoadError(
            f"{where}: {prefix}num_attention_heads {heads} is not divisible by {prefix}num_key_value_heads {kv_heads}"
        )
    experts, per_token = section.get("n_routed_experts"), section.get("num_experts_per_tok")
    if experts and per_token and per_token > experts:
        raise ModelLoadError(
            f"{where}: {prefix}num_experts_per_tok {per_token} is more than {prefix}n_routed_experts {experts}"
        )


def check_architecture(config_dict: Mapping[str, Any], where: str) -> None:
    """ModelLoadError (one line naming the field) for a size that no model can be built with."""
    for prefix, section in _sections(config_dict):
        _check_section(where, prefix, section)


def context_limit(config_dict: Mapping[str, Any]) -> ContextLimit:
    """The context length the config states, as capture.limits finds it on the loaded config."""
    text_config = config_dict.get("text_config")
    for owner_name, owner in (("text_config", text_config), ("config", config_dict)):
        if not isinstance(owner, Mapping):
            continue
        for attribute in CONTEXT_ATTRIBUTES:
            value = owner.get(attribute)
            if _is_integer(value) and value > 0:
                return ContextLimit(tokens=value, source=f"{owner_name}.{attribute}")
    return ContextLimit(tokens=None, source=None)


def check_model_config(config: CaptureConfig) -> None:
    """Every check of the model's config and of the options bounded by it, before torch loads:
    the config's sizes, and ``--warmup-tokens`` within the model's context."""
    path, where, _architecture = config_file(config)
    if not path.is_file():
        return  # a missing folder or config.json: the model loader says which, in its words
    config_dict = read_config(path, where)
    check_architecture(config_dict, where)
    limit = context_limit(config_dict)
    if limit.tokens is not None and config.warmup_tokens >= limit.tokens:
        raise BadInputError(
            f"--warmup-tokens {config.warmup_tokens} does not fit the model's context "
            f"({limit.source} = {limit.tokens} tokens, the prompt included): use fewer"
        )
