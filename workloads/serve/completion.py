"""What one completion asks for and what it produced: plain data, so the routes and state need no torch.

The LM backend (workloads.serve.lm_backend, which needs torch) turns `GenerationRequest`s into
`GenerationResult`s; the TF-enabled image serves tensor models and never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to generate."""

    prompt_ids: tuple[int, ...]
    """Prompt token ids (at least one)."""
    max_tokens: int
    """Most tokens to generate, EOS included."""
    temperature: float = 0.0
    """0 = greedy; otherwise logits are divided by it before sampling."""
    top_p: float = 1.0
    """Nucleus sampling: sample from the smallest set of tokens whose probability reaches top_p."""
    seed: int | None = None
    """Seed of this request's private generator; None draws a fresh one."""
    stop: tuple[str, ...] = ()
    """Generation ends before the first occurrence of any of these strings."""
    logprobs: int | None = None
    """Report each sampled token's log-probability and its `logprobs` most likely alternatives; None reports none."""
    presence_penalty: float = 0.0
    """Subtracted from the logit of every token generated at least once (OpenAI's presence penalty)."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once per time it was generated (OpenAI's frequency penalty)."""
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias) pairs added to the logits before sampling."""


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token with its log-probability and the most likely alternatives at its step."""

    token_id: int
    """The sampled token."""
    logprob: float
    """Its log-probability under the model (before temperature, penalties and logit_bias)."""
    top: tuple[tuple[int, float], ...]
    """(token id, log-probability) of the step's most likely tokens, most likely first."""


@dataclass(frozen=True)
class GenerationResult:
    """What one request produced."""

    text: str
    """Generated text, cut before any stop string."""
    finish_reason: str
    """`stop` (EOS or a stop string), `length` (max_tokens) or `cancelled` (nobody waits for it)."""
    prompt_tokens: int
    """Prompt length in tokens."""
    completion_tokens: int
    """Tokens sampled, EOS and stop-string tokens included."""
    first_token_at: float | None
    """`time.monotonic()` when the first token was sampled."""
    logprob_sum: float = 0.0
    """Sum of the sampled tokens' log-probabilities (ranks `best_of` candidates)."""
    tokens: tuple[TokenLogprob, ...] = ()
    """Per generated token (EOS excluded), when the request asked for logprobs."""

    @property
    def mean_logprob(self) -> float:
        """Log-probability per sampled token (0 for an empty generation)."""
        return self.logprob_sum / self.completion_tokens if self.completion_tokens else 0.0
