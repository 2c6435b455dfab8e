"""What capture needs to know about one model family: a frozen record of facts and functions.

A family loads its models (a checkpoint folder, or an architecture config with seeded random
weights), builds a prompt's inputs for an image, and names the modules whose forwards open and
close the vision range. Everything torch-free about it (name, model types, prompt, output
grammar) is its :class:`~dsocr.families.FamilyFacts`, which emit reads without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from dsocr.capture.limits import ContextLimit, find_context_limit
from PIL import Image

from dsocr.families import FamilyFacts

#: (model, processor): what a family's loaders return, before dsocr moves and checks them.
Loaded = tuple[torch.nn.Module, Any]


@dataclass(frozen=True)
class LoadOptions:
    """How to build the model, whatever its family: dtype and transformers' attention choice."""

    dtype: torch.dtype
    attn_implementation: str | None = None  # None: the model's own default

    def transformers_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained`` and ``_from_config``."""
        attention = {} if self.attn_implementation is None else {"attn_implementation": self.attn_implementation}
        return {"dtype": self.dtype, **attention}


def processor_inputs(processor: Any, image: Image.Image, prompt: str) -> Mapping[str, Any]:
    """The usual transformers multimodal processor call: one image, one prompt, PyTorch tensors."""
    return processor(images=image, text=prompt, return_tensors="pt")


def nested_text_config(config: Any) -> Any:
    """The decoder's config of a composite model (``config.text_config``)."""
    return config.text_config


def config_image_token_id(config: Any) -> int:
    """The image placeholder id most transformers VLM configs carry as ``image_token_id``."""
    return int(config.image_token_id)


@dataclass(frozen=True)
class ModelFamily:
    """One family: its torch-free facts and the functions capture calls on its models."""

    facts: FamilyFacts
    #: An architecture config (the parsed ``.json``) to a model with random weights and its
    #: processor. Called after seeding, under ``torch.device(target)``, so weights start there.
    random_weights: Callable[[dict[str, Any], LoadOptions], Loaded]
    #: A local checkpoint folder to a model (on the CPU) and its processor, no network.
    checkpoint: Callable[[Path, LoadOptions], Loaded]
    #: The module whose first forward of an image opens the vision range.
    vision_module: Callable[[torch.nn.Module], torch.nn.Module]
    #: The module whose first forward of an image closes the vision range (the decoder).
    text_module: Callable[[torch.nn.Module], torch.nn.Module]
    #: The config holding the decoder's eos/pad ids and context length.
    text_config: Callable[[Any], Any] = nested_text_config
    image_token_id: Callable[[Any], int] = config_image_token_id
    build_inputs: Callable[[Any, Image.Image, str], Mapping[str, Any]] = processor_inputs
    context_limit: Callable[[Any], ContextLimit] = find_context_limit

    @property
    def name(self) -> str:
        """The family name recorded in run.json ``model.family``."""
        return self.facts.name
