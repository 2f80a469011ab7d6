"""The model's shape and its named sizes, without torch, so settings can validate a preset before torch loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class GPTConfig:
    """Shape of the model."""

    n_layer: int
    """Transformer blocks."""
    n_head: int
    """Attention heads per block."""
    d_model: int
    """Residual stream width; must divide by n_head."""
    max_seq_len: int
    """Longest sequence (learned position embeddings)."""
    vocab_size: int = 320
    """Embedding rows: the byte tokenizer's 259 ids padded to a multiple of 64 for fast matmuls."""
    dropout: float = 0.0
    """Dropout probability in attention and MLP outputs."""

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_head

    def n_params(self, *, non_embedding: bool = True) -> int:
        """Parameter count N (the `6N` in the FLOPs estimate excludes embeddings)."""
        per_block = 12 * self.d_model * self.d_model + 13 * self.d_model
        total = self.n_layer * per_block + 2 * self.d_model
        if not non_embedding:
            total += self.vocab_size * self.d_model + self.max_seq_len * self.d_model
        return total

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N + 12·L·H·Q·T (PaLM appendix B; Q = head dim), N counting the tied output
        projection (vocab_size x d_model, a matmul every token makes, as nanoGPT's estimate_mfu counts it) but not
        the position embeddings (a lookup)."""
        return (6 * (self.n_params() + self.vocab_size * self.d_model)
                + 12 * self.n_layer * self.n_head * self.head_dim * seq_len)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for exports and checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        """Inverse of `to_dict`."""
        return cls(**data)


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=256),
    "mini": GPTConfig(n_layer=4, n_head=4, d_model=128, max_seq_len=512),
    "small": GPTConfig(n_layer=12, n_head=12, d_model=768, max_seq_len=1024),
    "medium": GPTConfig(n_layer=24, n_head=16, d_model=1024, max_seq_len=1024),
    "large": GPTConfig(n_layer=36, n_head=20, d_model=1280, max_seq_len=1024),
    # GPT-2-shaped (learned positions, LayerNorm, tied embeddings) at 128-wide heads, the width FlashAttention
    # and vLLM kernels support best; 24 x 2048 and 32 x 4096 are the GPT-3 paper's 1.3B and 6.7B shapes (Table 2.1).
    "1b": GPTConfig(n_layer=24, n_head=16, d_model=2048, max_seq_len=2048),
    "7b": GPTConfig(n_layer=32, n_head=32, d_model=4096, max_seq_len=2048),
}
"""Named sizes: `tiny` trains in seconds on a CPU; `small` is the GPT-2 124M shape; `1b` and `7b` need FSDP on GPUs."""


def default_seq_len(model: str) -> int:
    """The trainer's --seq-len when unset: preset `model`'s max_seq_len."""
    return PRESETS[model].max_seq_len


def preset_config(model: str, vocab_size: int | None = None) -> GPTConfig:
    """Preset `model`'s shape with `vocab_size` embedding rows (default: the preset's, for byte-level data)."""
    preset = PRESETS[model]
    return preset if vocab_size is None else replace(preset, vocab_size=vocab_size)
