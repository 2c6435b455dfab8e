"""How many new tokens a generation may take: the user's number, or the model's own limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsocr.errors import BadInputError
from dsocr.vocab import StopReason

#: Used for `--max-new-tokens inf` when the model exposes no context length (a WARNING says so).
FALLBACK_DECODE_CEILING = 4096

# Config attributes that bound the sequence length, most authoritative first. Not
# `sliding_window`: that is how far attention looks back, and a model with one still takes
# sequences up to its max_position_embeddings.
CONTEXT_ATTRIBUTES = ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions")


@dataclass(frozen=True)
class ContextLimit:
    """The model's maximum sequence length and the config attribute it came from (None: unknown)."""

    tokens: int | None
    source: str | None


@dataclass(frozen=True)
class TokenCap:
    """The resolved cap of one generation and the stop reason that reaching it means."""

    max_new_tokens: int
    reason_at_cap: StopReason
    #: A WARNING for the run's log and run.json when the cap is not what was asked.
    warning: str | None = None


def find_context_limit(config: Any) -> ContextLimit:
    """Look for the model's context length on its text config, then on the top-level config."""
    for owner_name, owner in (("text_config", getattr(config, "text_config", None)), ("config", config)):
        if owner is None:
            continue
        for attribute in CONTEXT_ATTRIBUTES:
            value = getattr(owner, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return ContextLimit(tokens=value, source=f"{owner_name}.{attribute}")
    return ContextLimit(tokens=None, source=None)


def resolve_cap(requested: int | None, prompt_tokens: int, limit: ContextLimit) -> TokenCap:
    """The cap for one image: ``requested`` (None = inf), never past the model's context."""
    room = None if limit.tokens is None else limit.tokens - prompt_tokens
    if room is not None and room < 1:
        raise BadInputError(
            f"the prompt ({prompt_tokens} tokens with image tokens) fills the model's context "
            f"({limit.tokens} tokens, {limit.source})"
        )
    if requested is None:
        if room is None:
            warning = (
                "--max-new-tokens inf: the model exposes no context length; using the fallback ceiling "
                f"FALLBACK_DECODE_CEILING={FALLBACK_DECODE_CEILING} new tokens"
            )
            return TokenCap(FALLBACK_DECODE_CEILING, StopReason.fallback_ceiling, warning)
        return TokenCap(room, StopReason.model_limit)
    if room is not None and requested > room:
        warning = (
            f"--max-new-tokens {requested} exceeds the model's remaining context "
            f"({limit.source} {limit.tokens} - prompt {prompt_tokens} = {room}); capped at {room}"
        )
        return TokenCap(room, StopReason.model_limit, warning)
    return TokenCap(requested, StopReason.max_new_tokens)


def stop_reason(generated_tokens: int, last_token_is_eos: bool, cap: TokenCap) -> StopReason:
    """Why a generation ended: EOS, or reaching its cap (and what the cap was)."""
    if last_token_is_eos:
        return StopReason.eos
    if generated_tokens >= cap.max_new_tokens:
        return cap.reason_at_cap
    raise AssertionError(f"generation ended after {generated_tokens} tokens without EOS or cap {cap}")
