"""The vendor's guard against repetition loops, as a transformers logits processor.

DeepSeek-OCR's vLLM recipe bans, at every decode step, each token that would complete an
n-gram (``ngram_size`` 30) already present among the latest ``window_size`` (90) generated
tokens, except the tokens it allows to repeat (``<td>`` and ``</td>``). This is that rule over
the generated tokens only (vLLM's processor sees the request's output ids, not the prompt),
for ``dsocr capture --no-repeat-ngram N --ngram-window W --ngram-allow TOKEN``. It runs inside
generate's step, so its cost is in the per-step timings (bench/ngram_guard.py measures it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import torch
from dsocr.capture.config import MIN_NO_REPEAT_NGRAM
from transformers import LogitsProcessor

from dsocr.errors import BadInputError

log = logging.getLogger(__package__)

#: The smallest n-gram: with 1, the rule would ban every token of the window.
MIN_NGRAM = MIN_NO_REPEAT_NGRAM


class NoRepeatNGram(LogitsProcessor):
    """Ban each token completing an ``ngram_size``-gram seen in the last ``window_size`` generated tokens.

    ``prompt_length``: the prompt's tokens in ``input_ids``; only what follows is searched.
    ``allowed_ids``: tokens never banned (the vendor's whitelist).
    The rule runs on the device, in tensor operations over the window (as transformers' own
    NoRepeatNGram does): it never reads token ids back to the host, so it adds no synchronisation
    to a cuda step.
    """

    def __init__(self, ngram_size: int, window_size: int, allowed_ids: Iterable[int], prompt_length: int) -> None:
        if ngram_size < MIN_NGRAM or window_size < ngram_size:
            raise BadInputError(
                f"--ngram-window ({window_size}) must be >= --no-repeat-ngram ({ngram_size}) >= {MIN_NGRAM}"
            )
        self.ngram_size = ngram_size
        self.window_size = window_size
        self.allowed_ids = frozenset(allowed_ids)
        self.prompt_length = prompt_length
        self._allowed_on: dict[torch.device, torch.Tensor] = {}
        #: Host nanoseconds spent in this processor's calls (its own cost inside each decode step:
        #: the ops are only enqueued on cuda, so this is what the guard adds to the host's step).
        self.host_ns = 0

    def banned(self, generated: list[int]) -> set[int]:
        """The tokens banned after ``generated``, by the vendor's own loop over the window (the
        reference the tensor version is tested against)."""
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

    def _allowed(self, device: torch.device) -> torch.Tensor:
        if device not in self._allowed_on:
            self._allowed_on[device] = torch.tensor(sorted(self.allowed_ids), dtype=torch.long, device=device)
        return self._allowed_on[device]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Set the banned tokens' scores to -inf, in place: O(window) work whatever the vocabulary,
        no tensor of the vocabulary's size made (capture's generate keeps neither scores nor logits)."""
        started = time.perf_counter_ns()
        try:
            return self._ban(input_ids, scores)
        finally:
            self.host_ns += time.perf_counter_ns() - started

    def _ban(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        size = self.ngram_size
        window = input_ids[:, max(self.prompt_length, input_ids.shape[1] - self.window_size) :]
        if window.shape[1] < size:
            return scores
        prefix = window[:, window.shape[1] - size + 1 :]
        ngrams = window.unfold(1, size, 1)  # every n-gram of the window, the last one included
        matches = (ngrams[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        vocab = scores.shape[-1]
        tokens = ngrams[..., -1]
        ban = matches & (tokens < vocab) & ~torch.isin(tokens, self._allowed(tokens.device))
        tokens = tokens.clamp(max=vocab - 1)
        # A token completing several n-grams gets -inf if any of them matches: the minimum.
        values = scores.gather(1, tokens).masked_fill(ban, -float("inf"))
        return scores.scatter_reduce_(1, tokens, values, reduce="amin")


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
