"""FLOPs and bytes of DeepSeek-OCR-2's stages, from the model config that capture records.

Counted: every matrix product (linear layers, convolutions as products, attention's two
products), 2 FLOPs per multiply-add. Bytes: each product's weights once per forward and its
inputs and outputs once, attention's Q, K, V read and output written (the KV cache is K and V).
Norms, activations, rotary embeddings, SAM's relative-position terms and dtype copies are left
out: the figures are the floor of what a stage must compute and move, so achieved rates are
lower bounds and MFU/MBU say how far the stage is from that floor. docs/analysis.md has every
formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Side of a local tile in pixels (the processor's constant; the global view is SAM's image_size).
TILE_PIXELS = 768
#: SAM's two stride-2 convolutions shrink the patch grid by 4 per side before the encoder.
DOWNSAMPLE = 4
#: One separator token closes each image's view tokens.
SEPARATOR_TOKENS = 1
#: Elements per 3x3 convolution window.
CONV3X3 = 9
#: Projections of a gated MLP (gate, up, down).
GATED_MLP_MATRICES = 3
DENSE = "dense"
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes of some work (floats: the figures reach 1e13)."""

    flops: float = 0.0
    bytes: float = 0.0
    #: The part of ``flops`` in attention's two products (SDPA: the profiler's estimates leave it out).
    attention_flops: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes, self.attention_flops + other.attention_flops)

    def times(self, factor: float) -> Cost:
        return Cost(self.flops * factor, self.bytes * factor, self.attention_flops * factor)


def total(costs: list[Cost]) -> Cost:
    return sum(costs, Cost())


def linear(tokens: float, d_in: int, d_out: int, width: int) -> Cost:
    """A ``tokens x d_in`` by ``d_in x d_out`` product: weights, input and output moved once."""
    return Cost(2.0 * tokens * d_in * d_out, float(width) * (d_in * d_out + tokens * d_in + tokens * d_out))


def attention(queries: float, keys: float, heads: int, kv_heads: int, head_dim: int, width: int) -> Cost:
    """QK^T and PV over ``queries x keys`` scores; Q and O of every head, K and V of every KV head."""
    flops = 4.0 * heads * head_dim * queries * keys
    moved = width * head_dim * (2.0 * queries * heads + 2.0 * keys * kv_heads)
    return Cost(flops, moved, flops)


def causal_pairs(tokens: int) -> float:
    """Query-key pairs of causal self-attention over ``tokens`` (the products a causal kernel does)."""
    return tokens * (tokens + 1) / 2


@dataclass(frozen=True)
class Architecture:
    """The widths the counts need, read from ``run.json`` ``model.architecture`` (HF to_dict())."""

    text: Mapping[str, Any]
    sam: Mapping[str, Any]
    encoder: Mapping[str, Any]

    @property
    def text_head_dim(self) -> int:
        return int(self.text.get("head_dim") or self.text["hidden_size"] // self.text["num_attention_heads"])

    def text_layer_is_dense(self, layer: int) -> bool:
        types = self.text.get("mlp_layer_types")
        if types:
            return types[layer] == DENSE
        return layer < int(self.text.get("first_k_dense_replace") or 0)


def architecture(config: Mapping[str, Any] | None) -> Architecture | None:
    """The parts of a recorded config the counts use; None when it is absent or not DeepSeek-OCR-2-shaped."""
    if not config:
        return None
    text, vision = config.get("text_config"), config.get("vision_config")
    if not isinstance(text, Mapping) or not isinstance(vision, Mapping):
        return None
    sam, encoder = vision.get("sam_config"), vision.get("encoder_config")
    if not isinstance(sam, Mapping) or not isinstance(encoder, Mapping):
        return None
    return Architecture(text=text, sam=sam, encoder=encoder)


# ---------------------------------------------------------------- vision


def _queries(pixels: int, patch: int) -> int:
    return (pixels // patch // DOWNSAMPLE) ** 2


def view_tokens(arch: Architecture) -> tuple[int, int]:
    """Image tokens of the global view and of one local tile."""
    patch = int(arch.sam.get("patch_size", 16))
    return _queries(int(arch.sam.get("image_size", 1024)), patch), _queries(TILE_PIXELS, patch)


def tiles_from_image_tokens(arch: Architecture, image_tokens: int | None) -> int | None:
    """Local tiles of an image from its image-token count (global + tiles x local + separator)."""
    if image_tokens is None:
        return None
    global_tokens, tile_tokens = view_tokens(arch)
    rest = image_tokens - global_tokens - SEPARATOR_TOKENS
    if rest < 0 or rest % tile_tokens:
        return None
    return rest // tile_tokens


def _sam(sam: Mapping[str, Any], views: int, pixels: int, width: int) -> Cost:
    hidden, heads = int(sam["hidden_size"]), int(sam["num_attention_heads"])
    patch, window = int(sam.get("patch_size", 16)), int(sam.get("window_size", 14))
    mlp = int(sam.get("mlp_dim") or hidden * float(sam.get("mlp_ratio", 4.0)))
    grid = pixels // patch
    tokens = views * grid * grid
    costs = [linear(tokens, int(sam.get("num_channels", 3)) * patch * patch, hidden, width)]
    global_layers = set(sam.get("global_attn_indexes") or ())
    padded = math.ceil(grid / window) * window
    windows = views * (padded // window) ** 2
    head_dim = hidden // heads
    for layer in range(int(sam["num_hidden_layers"])):
        costs += [linear(tokens, hidden, mlp, width), linear(tokens, mlp, hidden, width)]
        if layer in global_layers:
            attended = tokens
            costs.append(attention(grid * grid, grid * grid, heads, heads, head_dim, width).times(views))
        else:
            # Windowed layers pad the grid to whole windows before qkv: the padding is computed too.
            attended = windows * window**2
            costs.append(attention(window**2, window**2, heads, heads, head_dim, width).times(windows))
        costs += [linear(attended, hidden, 3 * hidden, width), linear(attended, hidden, hidden, width)]
    out = int(sam["output_channels"])
    first, second = (int(c) for c in sam["downsample_channels"])
    costs += [linear(tokens, hidden, out, width), linear(tokens, out * CONV3X3, out, width)]
    costs += [linear(tokens / 4, out * CONV3X3, first, width), linear(tokens / 16, first * CONV3X3, second, width)]
    return total(costs)


def _encoder(encoder: Mapping[str, Any], views: int, sequence: int, width: int) -> Cost:
    hidden, heads = int(encoder["hidden_size"]), int(encoder["num_attention_heads"])
    kv_heads = int(encoder.get("num_key_value_heads") or heads)
    head_dim = int(encoder.get("head_dim") or hidden // heads)
    inter = int(encoder["intermediate_size"])
    tokens = views * sequence
    layer = total(
        [
            linear(tokens, hidden, heads * head_dim, width),
            linear(tokens, hidden, 2 * kv_heads * head_dim, width),
            linear(tokens, heads * head_dim, hidden, width),
            linear(tokens, hidden, 2 * inter, width),
            linear(tokens, inter, hidden, width),
            # The hybrid mask (bidirectional over patches, causal over queries) runs as one full product.
            attention(sequence, sequence, heads, kv_heads, head_dim, width).times(views),
        ]
    )
    return layer.times(int(encoder["num_hidden_layers"]))


def _view_batch(arch: Architecture, views: int, pixels: int, width: int) -> Cost:
    """One vision-tower forward over ``views`` views of ``pixels`` square, then the projector."""
    queries = _queries(pixels, int(arch.sam.get("patch_size", 16)))
    sam = _sam(arch.sam, views, pixels, width)
    # The encoder sees the downsampled patches followed by as many learned queries.
    encoder = _encoder(arch.encoder, views, 2 * queries, width)
    projector = linear(views * queries, int(arch.encoder["hidden_size"]), int(arch.text["hidden_size"]), width)
    return sam + encoder + projector


def vision_cost(arch: Architecture, tiles: int, width: int) -> Cost:
    """The vision stage: the global view, then the local tiles as one batch (weights read once each)."""
    cost = _view_batch(arch, 1, int(arch.sam.get("image_size", 1024)), width)
    if tiles:
        cost += _view_batch(arch, tiles, TILE_PIXELS, width)
    return cost


# ---------------------------------------------------------------- decoder


def _experts_touched(experts: int, per_token: int, tokens: int) -> float:
    """Expected distinct experts hit by ``tokens`` tokens routed to ``per_token`` each (uniform routing)."""
    if tokens <= 1:
        return float(min(per_token, experts))
    return experts * (1.0 - (1.0 - per_token / experts) ** tokens)


def _decoder(arch: Architecture, tokens: int, pairs: float, keys: float, width: int) -> Cost:
    """The decoder over ``tokens`` new tokens whose attention covers ``pairs`` query-key pairs and
    reads ``keys`` cached positions; logits for the last token only (generate's logits_to_keep=1)."""
    text = arch.text
    hidden, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = arch.text_head_dim
    costs = []
    for layer in range(int(text["num_hidden_layers"])):
        costs += [
            linear(tokens, hidden, heads * head_dim, width),
            linear(tokens, hidden, 2 * kv_heads * head_dim, width),
            linear(tokens, heads * head_dim, hidden, width),
        ]
        score_flops = attention(1, 1, heads, kv_heads, head_dim, width).flops * pairs
        moved = width * head_dim * (2.0 * tokens * heads + 2.0 * keys * kv_heads)
        costs.append(Cost(score_flops, moved, score_flops))
        if arch.text_layer_is_dense(layer):
            costs += [linear(tokens, hidden, 2 * int(text["intermediate_size"]), width)]
            costs += [linear(tokens, int(text["intermediate_size"]), hidden, width)]
            continue
        experts, per_token = int(text["n_routed_experts"]), int(text["num_experts_per_tok"])
        moe = int(text["moe_intermediate_size"])
        shared = moe * int(text.get("n_shared_experts") or 0)
        costs.append(linear(tokens, hidden, experts, width))
        if shared:
            costs += [linear(tokens, hidden, 2 * shared, width), linear(tokens, shared, hidden, width)]
        routed = tokens * per_token
        touched = _experts_touched(experts, per_token, tokens)
        costs.append(
            Cost(
                2.0 * routed * GATED_MLP_MATRICES * hidden * moe,
                width * (touched * GATED_MLP_MATRICES * hidden * moe + routed * (2 * hidden + 3 * moe)),
            )
        )
    costs.append(linear(1, hidden, int(text["vocab_size"]), width))
    return total(costs)


def prefill_cost(arch: Architecture, prompt_tokens: int, width: int) -> Cost:
    """The decoder over the whole prompt (image tokens included), causal attention."""
    return _decoder(arch, prompt_tokens, causal_pairs(prompt_tokens), prompt_tokens, width)


def decode_step_cost(arch: Architecture, keys: int, width: int) -> Cost:
    """One decode step whose single query attends to ``keys`` positions (cache plus itself)."""
    return _decoder(arch, 1, keys, keys, width)


def decoder_weight_bytes(arch: Architecture, width: int) -> float:
    """Bytes of the decoder weights one decode step reads (active experts only, KV cache excluded)."""
    return decode_step_cost(arch, 0, width).bytes
