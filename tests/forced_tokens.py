"""Test only: logits processors that make greedy decoding write tokens chosen per decode step."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

#: Added to the chosen token's score: far above any score the tiny models give.
BONUS = 1e4


class ForcedTokens(LogitsProcessor):
    """Pushes greedy decoding to write ``token_at(step)`` (step 0: the image's first new token).

    A bonus, not a ban of every other token: a later processor (the guard) can still ban the
    pushed token, and the model then picks its own.
    """

    def __init__(self) -> None:
        self.prompt_length: int | None = None

    def token_at(self, step: int) -> int:
        raise NotImplementedError

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        length = input_ids.shape[1]
        if self.prompt_length is None or length <= self.prompt_length:
            self.prompt_length = length  # a new image's first step
        scores = scores.clone()
        scores[:, self.token_at(length - self.prompt_length)] += BONUS
        return scores
