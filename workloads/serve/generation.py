"""Batched autoregressive generation with a KV cache, one result per request.

Prompts of different lengths are left-padded to a common width; every row gets its own
positions (a padded prompt still starts at position 0) and a key mask that hides the padding,
so a row computes what it would compute alone. Each row has its own stop strings, EOS and
`max_tokens`, and its own `torch.Generator`, so sampling never depends on its batch-mates.
Finished rows are dropped from the batch (and their KV rows with them), so a long request does
not keep short ones' compute alive.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from workloads.lm.model import GPT, KVCache, attention_mask
from workloads.lm.tokenizer import BYTE_VOCAB
from workloads.serve.completion import GenerationRequest, GenerationResult, TokenLogprob

MIN_LOGPROB = -9999.0
"""Floor of reported log-probabilities, so JSON never needs -Infinity."""


class TextTracker:
    """Incremental UTF-8 decoding with stop strings, emitting only text that cannot change.

    Text is held back while it might still be the start of a stop string or of a multi-byte
    character, so the streamed deltas always concatenate to the final text.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._longest = max((len(s) for s in self._stop), default=0)
        self.text = ""
        """Text decoded so far (cut at a stop string once one is found)."""
        self.emitted = 0
        """Characters of `text` already handed out as deltas."""

    def push(self, byte: int) -> bool:
        """Add one byte; True when a stop string now appears (and `text` was cut before it)."""
        return self._append(self._decoder.decode(bytes([byte])))

    def finish(self) -> None:
        """Flush an incomplete trailing character (as U+FFFD) and apply stop strings to it."""
        self._append(self._decoder.decode(b"", final=True))

    def _append(self, piece: str) -> bool:
        if not piece:
            return False
        start = max(0, len(self.text) - self._longest + 1)
        self.text += piece
        hits = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return True
        return False

    def delta(self) -> str:
        """New text that no later byte can change."""
        safe = len(self.text) - self._held_back()
        piece = self.text[self.emitted : safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return piece

    def _held_back(self) -> int:
        for size in range(min(self._longest - 1, len(self.text)), 0, -1):
            tail = self.text[-size:]
            if any(s.startswith(tail) for s in self._stop):
                return size
        return 0


@dataclass
class _Row:
    index: int
    request: GenerationRequest
    generator: torch.Generator
    tracker: TextTracker
    bias: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    generated: int = 0
    first_token_at: float | None = None
    finish_reason: str | None = None
    logprob_sum: float = 0.0
    tokens: list[TokenLogprob] = field(default_factory=list)

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` with this row's logit_bias and presence/frequency penalties applied."""
        if self.bias is not None:
            logits = logits + self.bias
        if self.counts is not None:
            request = self.request
            logits = logits - request.frequency_penalty * self.counts - request.presence_penalty * (self.counts > 0)
        return logits

    def result(self) -> GenerationResult:
        # Tokens cut off with a stop string are not part of the text, so their logprobs are not reported. Counted in
        # decoded characters, as the text was cut: a byte that is no UTF-8 becomes a 3-byte U+FFFD in the text.
        kept: list[TokenLogprob] = []
        decoder, chars = codecs.getincrementaldecoder("utf-8")(errors="replace"), 0
        for token in self.tokens:
            if chars >= len(self.tracker.text) or token.token_id >= BYTE_VOCAB:
                break
            kept.append(token)
            chars += len(decoder.decode(bytes([token.token_id])))
        return GenerationResult(
            text=self.tracker.text, finish_reason=self.finish_reason or "length",
            prompt_tokens=len(self.request.prompt_ids),
            completion_tokens=self.generated, first_token_at=self.first_token_at,
            logprob_sum=self.logprob_sum, tokens=tuple(kept),
        )


def _new_row(index: int, request: GenerationRequest, vocab_size: int, device: torch.device) -> _Row:
    row = _Row(index, request, _new_generator(request.seed, device), TextTracker(request.stop))
    if request.logit_bias:
        row.bias = torch.zeros(vocab_size, dtype=torch.float64, device=device)
        for token, value in request.logit_bias:
            row.bias[token] = value
    if request.presence_penalty or request.frequency_penalty:
        row.counts = torch.zeros(vocab_size, dtype=torch.float64, device=device)
    return row


OnText = Callable[[int, str], None]
OnDone = Callable[[int, GenerationResult], None]


def allowed_tokens(vocab_size: int, eos_id: int, device: torch.device) -> torch.Tensor:
    """Boolean [vocab] mask of tokens generation may produce: the 256 bytes and EOS (never BOS or padding)."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    allowed[:BYTE_VOCAB] = True
    allowed[eos_id] = True
    return allowed


def _sample(logits: torch.Tensor, request: GenerationRequest, generator: torch.Generator) -> int:
    # Scale in float64 after subtracting the top logit: a denormal temperature (float32 rounds it to 0) then
    # sends every other logit to -inf, which is greedy (the limit as T -> 0), instead of 0/0 = NaN probabilities.
    logits = logits.double()
    probs = torch.softmax((logits - logits.max()) / request.temperature, dim=-1)
    if request.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep a token while the mass before it is under top_p, so the first token always stays.
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= request.top_p
        # A denormal top_p rounds to 0 in float32 and would drop everything: the top token always stays.
        drop[0] = False
        sorted_probs[drop] = 0.0
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def _choose(logits: torch.Tensor, rows: Sequence[_Row], allowed: torch.Tensor) -> list[int]:
    logits = logits.masked_fill(~allowed, float("-inf"))
    # Reported logprobs are the model's own distribution over the tokens it may generate, as vLLM reports them.
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    tokens: list[int] = logits.argmax(dim=-1).tolist()
    for j, row in enumerate(rows):
        adjusted = row.bias is not None or row.counts is not None
        row_logits = row.adjust(logits[j].double()) if adjusted else logits[j]
        if row.request.temperature > 0:
            tokens[j] = _sample(row_logits, row.request, row.generator)
        elif adjusted:
            tokens[j] = int(row_logits.argmax())
    # One gather and one device-to-host copy for the whole batch, not one per row.
    picked = logprobs[torch.arange(len(rows), device=logits.device), torch.tensor(tokens, device=logits.device)]
    for j, (row, value) in enumerate(zip(rows, picked.tolist(), strict=True)):
        _record(row, tokens[j], value, logprobs[j])
    return tokens


def _record(row: _Row, token: int, logprob: float, logprobs: torch.Tensor) -> None:
    value = max(logprob, MIN_LOGPROB)
    row.logprob_sum += value
    if row.counts is not None:
        row.counts[token] += 1
    k = row.request.logprobs
    if k is not None:
        top = logprobs.topk(k) if k else None
        pairs = () if top is None else tuple(
            (int(i), max(float(v), MIN_LOGPROB)) for v, i in zip(top.values, top.indices, strict=True))
        row.tokens.append(TokenLogprob(token, value, pairs))


def _advance(row: _Row, token: int, eos_id: int, cancelled: bool) -> bool:
    """Record `token` for `row`; True when the row is finished."""
    row.generated += 1
    if row.first_token_at is None:
        row.first_token_at = time.monotonic()
    if cancelled:
        row.finish_reason = "cancelled"
    elif token == eos_id:
        row.finish_reason = "stop"
    elif row.tracker.push(token):
        # The text is already cut before the stop string; bytes held for an unfinished character go too.
        row.finish_reason = "stop"
        return True
    elif row.generated >= row.request.max_tokens:
        row.finish_reason = "length"
    else:
        return False
    row.tracker.finish()
    return True


def _new_generator(seed: int | None, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@torch.inference_mode()
def generate(
    model: GPT,
    requests: Sequence[GenerationRequest],
    *,
    eos_id: int,
    pad_id: int,
    on_text: OnText | None = None,
    on_done: OnDone | None = None,
    is_cancelled: Callable[[int], bool] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[GenerationResult]:
    """Generate for all `requests` at once; returns their results in order.

    `on_text(i, delta)` streams safe text, `on_done(i, result)` fires as soon as request `i`
    finishes, `is_cancelled(i)` lets the caller drop a request early, and `on_step(n)` reports
    the `n` tokens sampled in each step. The padded prompt width plus the largest `max_tokens`
    must fit in the model's `max_seq_len`.
    """
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    lengths = torch.tensor([len(r.prompt_ids) for r in requests], device=device)
    width = int(lengths.max())
    budget = max(r.max_tokens for r in requests)
    cache = KVCache(model.config, len(requests), width + budget, device=device, dtype=dtype)
    offsets = width - lengths
    columns = torch.arange(width, device=device)
    idx = torch.full((len(requests), width), pad_id, dtype=torch.long, device=device)
    for i, request in enumerate(requests):
        idx[i, int(offsets[i]) :] = torch.tensor(request.prompt_ids, device=device)
    key_valid = torch.zeros((len(requests), width + budget), dtype=torch.bool, device=device)
    key_valid[:, :width] = columns[None, :] >= offsets[:, None]
    positions = (columns[None, :] - offsets[:, None]).clamp(min=0)
    logits = model(idx, kv_cache=cache, positions=positions, attn_mask=attention_mask(key_valid[:, :width], width))
    logits = logits[:, -1]

    allowed = allowed_tokens(model.config.vocab_size, eos_id, device)
    rows = [_new_row(i, r, model.config.vocab_size, device) for i, r in enumerate(requests)]
    results: list[GenerationResult | None] = [None] * len(requests)
    next_positions = lengths.clone()
    while rows:
        tokens = _choose(logits, rows, allowed)
        if on_step is not None:
            on_step(len(rows))
        keep: list[int] = []
        for j, row in enumerate(rows):
            done = _advance(row, tokens[j], eos_id, is_cancelled is not None and is_cancelled(row.index))
            delta = row.tracker.delta() if not done else ""
            if on_text is not None and delta:
                on_text(row.index, delta)
            if done:
                result = results[row.index] = row.result()
                if on_done is not None:
                    on_done(row.index, result)
            else:
                keep.append(j)
        if not keep:
            break
        if len(keep) < len(rows):
            # Drop finished rows from every batched tensor so later steps only compute live ones.
            keep_t = torch.tensor(keep, device=device)
            cache.k, cache.v = cache.k[:, keep_t], cache.v[:, keep_t]
            key_valid, next_positions = key_valid[keep_t], next_positions[keep_t]
            rows = [rows[j] for j in keep]
            tokens = [tokens[j] for j in keep]
        total = cache.length + 1
        key_valid[:, total - 1] = True
        step_idx = torch.tensor(tokens, dtype=torch.long, device=device)[:, None]
        logits = model(step_idx, kv_cache=cache, positions=next_positions[:, None],
                       attn_mask=attention_mask(key_valid[:, :total], 1))[:, -1]
        next_positions = next_positions + 1
    return [r for r in results if r is not None]
