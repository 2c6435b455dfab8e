"""Which attention kernels run: torch's SDPA backend choice, probed before anything is measured.

cuDNN's SDPA backend builds an execution plan for every sequence length it has not seen (about
50 ms each on an H200), so a decode's first pass over new lengths runs several times slower than
later passes; ``--sdpa-backend`` lets a user measure the alternative instead of guessing.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from dsocr.capture.config import SdpaBackend
from torch.nn.attention import SDPBackend, sdpa_kernel

from dsocr.errors import BadInputError

_BACKENDS = {
    SdpaBackend.cudnn: SDPBackend.CUDNN_ATTENTION,
    SdpaBackend.flash: SDPBackend.FLASH_ATTENTION,
    SdpaBackend.efficient: SDPBackend.EFFICIENT_ATTENTION,
    SdpaBackend.math: SDPBackend.MATH,
}
#: What torch raises when the allowed SDPA backends have no kernel for a call.
NO_KERNEL_MESSAGE = "No available kernel"
#: Key/value length of the probe: long enough to be a real decode shape, small enough to be instant.
PROBE_KV_LENGTH = 128


@contextlib.contextmanager
def sdpa_backend(backend: SdpaBackend) -> Iterator[None]:
    """Restrict scaled_dot_product_attention to ``backend`` inside the block (auto: no restriction)."""
    if backend is SdpaBackend.auto:
        yield
        return
    with sdpa_kernel([_BACKENDS[backend]]):
        yield


def text_head_dim(model_config: Any) -> int:
    """The language model's attention head size."""
    text = getattr(model_config, "text_config", model_config)
    head_dim = getattr(text, "head_dim", None)
    return int(head_dim or text.hidden_size // text.num_attention_heads)


def check_sdpa_backend(backend: SdpaBackend, *, device: torch.device, dtype: torch.dtype, head_dim: int) -> None:
    """Refuse with one line when ``backend`` cannot run a decode-shaped attention on this device."""
    if backend is SdpaBackend.auto:
        return
    query = torch.zeros(1, 1, 1, head_dim, device=device, dtype=dtype)
    key = torch.zeros(1, 1, PROBE_KV_LENGTH, head_dim, device=device, dtype=dtype)
    try:
        # torch warns once per disabled backend before it raises; the one-line error says it all.
        with warnings.catch_warnings(), torch.inference_mode(), sdpa_backend(backend):
            warnings.simplefilter("ignore")
            torch.nn.functional.scaled_dot_product_attention(query, key, key)
    except RuntimeError:
        raise BadInputError(
            f"--sdpa-backend {backend.value}: torch has no such kernel for {device.type}, "
            f"{str(dtype).removeprefix('torch.')}, head size {head_dim}"
        ) from None
