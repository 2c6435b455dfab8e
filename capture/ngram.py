"""The vendor's guard against repetition loops, as a transformers logits processor.

DeepSeek-OCR's vLLM recipe bans, at every decode step, each token that would complete an
n-gram (``ngram_size`` 30) already present among the latest ``window_size`` (90) generated
tokens, except the tokens it allows to repeat (``<td>`` and ``</td>``). This is that rule over
the generated tokens only (vLLM's processor sees the request's output ids, not the prompt),
for ``dsocr capture --no-repeat-ngram N --ngram-window W --ngram-allow TOKEN``. It runs inside
generate's step, so its host cost is in the per-step timings (bench/ngram_guard.py measures it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from transformers import LogitsProcessor

from dsocr.errors import BadInputError

log = logging.getLogger(__package__)


class NoRepeatNGram(LogitsProcessor):
    """Ban each token completing an ``ngram_size``-gram seen in the last ``window_size`` generated tokens.

    ``prompt_length``: the prompt's tokens in ``input_ids``; only what follows is searched.
    ``allowed_ids``: tokens never banned (the vendor's whitelist).
    """

    def __init__(self, ngram_size: int, window_size: int, allowed_ids: Iterable[int], prompt_length: int) -> None:
        if ngram_size < 1 or window_size < ngram_size:
            raise BadInputError(f"--ngram-window ({window_size}) must be >= --no-repeat-ngram ({ngram_size}) >= 1")
        self.ngram_size = ngram_size
        self.window_size = window_size
        self.allowed_ids = frozenset(allowed_ids)
        self.prompt_length = prompt_length

    def banned(self, generated: list[int]) -> set[int]:
        """The tokens banned after ``generated`` (the last ``window_size`` tokens suffice)."""
        size = self.ngram_size
        window = generated[-self.window_size :]
        if len(window) < size:
            return set()
        prefix = window[len(window) - size + 1 :]
        found = {
            window[start + size - 1]
            for start in range(len(window) - size + 1)
            if window[start : start + size - 1] == prefix
        }
        return found - self.allowed_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # The rule compares token ids on the host, as the vendor's does: on cuda this copy waits
        # for the step's forward (docs/configuration.md says where that cost shows).
        start = max(self.prompt_length, input_ids.shape[1] - self.window_size)
        recent = input_ids[:, start:].tolist()
        bans = [(row, token) for row, tokens in enumerate(recent) for token in self.banned(tokens)]
        if not bans:
            return scores
        rows, tokens = zip(*bans, strict=True)
        scores = scores.clone()
        scores[list(rows), list(tokens)] = -float("inf")
        return scores


#: Resolved ``--ngram-allow`` ids per (tokenizer object, tokens): resolved and warned about once.
_ALLOWED: dict[tuple[int, tuple[str, ...]], tuple[int, ...]] = {}


def allowed_token_ids(tokenizer: object, tokens: tuple[str, ...]) -> tuple[int, ...]:
    """The ids of ``--ngram-allow`` tokens; a token this tokenizer lacks as one token is skipped
    with a WARNING (the guard then bans it like any other). Empty strings are ignored."""
    key = (id(tokenizer), tokens)
    if key not in _ALLOWED:
        _ALLOWED[key] = _resolve(tokenizer, tokens)
    return _ALLOWED[key]


def _resolve(tokenizer: object, tokens: tuple[str, ...]) -> tuple[int, ...]:
    ids = []
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    for token in tokens:
        if not token:
            continue
        if token in vocab:
            ids.append(int(vocab[token]))
        else:
            log.warning("--ngram-allow %s: not one token of this model's tokenizer; the guard may ban it", token)
    return tuple(ids)
