"""A GPT-style decoder: pre-norm blocks, causal SDPA attention, tied embeddings, and a KV cache.

The same module trains under DDP (`forward(idx)`) and serves batched generation
(`forward(idx, kv_cache=..., positions=..., attn_mask=...)`), so the server can never load
weights into a subtly different architecture.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workloads.lm.presets import GPTConfig


class KVCache:
    """Pre-allocated keys and values for incremental decoding of a batch."""

    def __init__(self, config: GPTConfig, batch: int, max_len: int, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        shape = (config.n_layer, batch, config.n_head, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        """Positions already filled."""

    @property
    def capacity(self) -> int:
        """The most positions the cache can hold."""
        return int(self.k.shape[3])


def attention_mask(key_valid: torch.Tensor, q_len: int) -> torch.Tensor:
    """Boolean SDPA mask [B, 1, q_len, K] for the last `q_len` of K positions.

    A query may see a key when the key is not padding (`key_valid[b, k]`) and is not in its
    future. Padding queries still see themselves, so no softmax row is all -inf (NaN).
    """
    total = key_valid.shape[1]
    q_pos = torch.arange(total - q_len, total, device=key_valid.device)[:, None]
    k_pos = torch.arange(total, device=key_valid.device)[None, :]
    causal = k_pos <= q_pos
    mask = causal[None, :, :] & key_valid[:, None, :]
    mask = mask | (k_pos == q_pos)[None, :, :]
    return mask[:, None, :, :]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through `scaled_dot_product_attention`."""

    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.config = config
        self.layer = layer
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None, attn_mask: torch.Tensor | None) -> torch.Tensor:
        batch, seq, _ = x.shape
        q, k, v = self.qkv(x).split(self.config.d_model, dim=2)
        q, k, v = (t.view(batch, seq, self.config.n_head, self.config.head_dim).transpose(1, 2) for t in (q, k, v))
        if kv_cache is not None:
            start, end = kv_cache.length, kv_cache.length + seq
            kv_cache.k[self.layer, :, :, start:end] = k
            kv_cache.v[self.layer, :, :, start:end] = v
            k, v = kv_cache.k[self.layer, :, :, :end], kv_cache.v[self.layer, :, :, :end]
        dropout = self.config.dropout if self.training else 0.0
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=kv_cache is None, dropout_p=dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(batch, seq, self.config.d_model)
        return F.dropout(self.proj(y), dropout, self.training)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config, layer)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, 4 * config.d_model),
            nn.GELU(approximate="tanh"),
            nn.Linear(4 * config.d_model, config.d_model),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), kv_cache, attn_mask)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """The decoder. `forward` returns logits [B, T, vocab]."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # Tied input/output embeddings (Press & Wolf 2017): fewer parameters, better small-model loss.
        self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance flat with depth.
        for name, param in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        idx: torch.Tensor,
        *,
        kv_cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for `idx` [B, T].

        Training passes `idx` alone (plain causal attention). Generation passes a `kv_cache`,
        per-token `positions` [B, T] (left-padded prompts start at 0 after their padding) and
        a boolean `attn_mask` from `attention_mask`; the cache advances by T.
        """
        seq = idx.shape[1]
        past = kv_cache.length if kv_cache is not None else 0
        if past + seq > self.config.max_seq_len:
            raise ValueError(f"sequence of {past + seq} tokens exceeds max_seq_len={self.config.max_seq_len}")
        if positions is None:
            positions = torch.arange(past, past + seq, device=idx.device)[None, :]
        x = self.tok_emb(idx) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x, kv_cache, attn_mask)
        if kv_cache is not None:
            kv_cache.length += seq
        logits: torch.Tensor = self.lm_head(self.ln_f(x))
        return logits
