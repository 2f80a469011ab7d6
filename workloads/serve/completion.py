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
