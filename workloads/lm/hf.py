"""Our GPT as Hugging Face's `GPT2LMHeadModel`: the config, the weight names, and sharded safetensors.

The architectures agree exactly: learned positions, pre-norm blocks with LayerNorm (eps 1e-5, with
bias), fused q|k|v projection with bias split in that order, attention scaled by 1/sqrt(head_dim),
a 4x MLP with tanh-approximated GELU (`gelu_pytorch_tanh` is torch's `gelu(approximate="tanh")`,
the very function our model calls), a final LayerNorm and an LM head tied to the token embedding.
The one layout difference: GPT-2 stores its projections as `Conv1D` ([in, out]), the transpose of
`nn.Linear`'s [out, in].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import torch
from safetensors.torch import load_file, save_file

from workloads.lm.hf_tokenizer import ExportTokenizer
from workloads.lm.layout import MODEL_TYPE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from workloads.lm.presets import GPTConfig

MAX_SHARD_BYTES: Final = 2 * 1024**3
"""Largest safetensors shard: weights beyond 2 GiB are split, with an index naming each tensor's shard."""
LAYER_NORM_EPS: Final = 1e-5
"""`nn.LayerNorm`'s default eps, which our model uses."""

_PREFIXES: Final = (("tok_emb.", "transformer.wte."), ("pos_emb.", "transformer.wpe."),
                    ("ln_f.", "transformer.ln_f."), ("blocks.", "transformer.h."))
_INFIXES: Final = ((".ln1.", ".ln_1."), (".ln2.", ".ln_2."), (".attn.qkv.", ".attn.c_attn."),
                   (".attn.proj.", ".attn.c_proj."), (".mlp.0.", ".mlp.c_fc."), (".mlp.2.", ".mlp.c_proj."))
_CONV1D_WEIGHTS: Final = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")
_TIED: Final = "lm_head.weight"


def hf_config(config: GPTConfig, tokenizer: ExportTokenizer, dtype: torch.dtype) -> dict[str, Any]:
    """config.json of the `GPT2LMHeadModel` that computes what `GPT(config)` computes, with `tokenizer`'s special ids."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": MODEL_TYPE,
        "vocab_size": config.vocab_size,
        "n_positions": config.max_seq_len,
        "n_embd": config.d_model,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": 4 * config.d_model,
        "activation_function": "gelu_pytorch_tanh",
        # Our model has no dropout on the embeddings; attention and residual dropout match ours.
        "embd_pdrop": 0.0,
        "attn_pdrop": config.dropout,
        "resid_pdrop": config.dropout,
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        # Written even when None (null): left out, GPT2Config would default them to GPT-2's 50256.
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        "dtype": str(dtype).removeprefix("torch."),  # the key transformers >= 4.56 writes (torch_dtype before)
    }


def generation_config(tokenizer: ExportTokenizer) -> dict[str, Any]:
    """generation_config.json: stop at EOS, pad with the pad id (null where a Hugging Face tokenizer names none)."""
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}


def gpt_config(hf: dict[str, Any]) -> GPTConfig:
    """Our `GPTConfig` from an export's config.json; `ValueError` naming any setting GPT cannot reproduce."""
    expected = {"model_type": MODEL_TYPE, "activation_function": "gelu_pytorch_tanh",
                "layer_norm_epsilon": LAYER_NORM_EPS, "scale_attn_weights": True,
                "scale_attn_by_inverse_layer_idx": False, "tie_word_embeddings": True,
                "n_inner": 4 * int(hf.get("n_embd", 0))}
    # GPT-2's own configs write "n_inner": null, which means 4 * n_embd, as ours does.
    given = hf | {"n_inner": hf.get("n_inner") or expected["n_inner"]}
    wrong = {key: given.get(key) for key, value in expected.items() if given.get(key, value) != value}
    if wrong:
        ours = {key: expected[key] for key in wrong}
        raise ValueError(f"config.json: {wrong} cannot run as our GPT, which needs {ours}")
    return GPTConfig(n_layer=hf["n_layer"], n_head=hf["n_head"], d_model=hf["n_embd"], max_seq_len=hf["n_positions"],
                     vocab_size=hf["vocab_size"], dropout=float(hf.get("resid_pdrop", 0.0)))


def _rename(name: str, pairs: tuple[tuple[str, str], ...], infixes: tuple[tuple[str, str], ...]) -> str:
    for old, new in pairs:
        if name.startswith(old):
            name = new + name.removeprefix(old)
    for old, new in infixes:
        name = name.replace(old, new)
    return name


def to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict as GPT-2's (Conv1D weights transposed, the tied LM head stored once as wte), as views."""
    hf: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name == _TIED:
            continue
        hf_name = _rename(name, _PREFIXES, _INFIXES)
        # A transposed view: save_weights copies it contiguous one shard at a time, which bounds the extra memory.
        hf[hf_name] = (tensor.t() if hf_name.endswith(_CONV1D_WEIGHTS) else tensor).detach()
    return hf


def from_hf(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `to_hf`, the tied LM head included."""
    flip = tuple((new, old) for old, new in _PREFIXES), tuple((new, old) for old, new in _INFIXES)
    state = {_rename(name, *flip): tensor.t() if name.endswith(_CONV1D_WEIGHTS) else tensor
             for name, tensor in hf.items()}
    state[_TIED] = state["tok_emb.weight"]
    return state


def save_weights(state: dict[str, torch.Tensor], folder: Path, *, max_shard_bytes: int = MAX_SHARD_BYTES) -> list[str]:
    """Write `state` as model.safetensors, or as numbered shards plus the index past `max_shard_bytes`.

    Tensors fill shards in order; a tensor larger than the limit gets a shard of its own.
    Returns the names of the files written.
    """
    shards: list[dict[str, torch.Tensor]] = [{}]
    filled = 0
    for name, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and filled + size > max_shard_bytes:
            shards.append({})
            filled = 0
        shards[-1][name] = tensor
        filled += size
    sharded = len(shards) > 1
    names = [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)] if sharded \
        else [WEIGHTS_FILE]
    for name, shard in zip(names, shards, strict=True):
        save_file({key: tensor.contiguous() for key, tensor in shard.items()}, str(folder / name),
                  metadata={"format": "pt"})
    if not sharded:
        return names
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total},
             "weight_map": {tensor: name for name, shard in zip(names, shards, strict=True) for tensor in shard}}
    (folder / WEIGHTS_INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True))
    return [*names, WEIGHTS_INDEX_FILE]


def load_weights(folder: Path, *, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of model.safetensors, or of the shards the index lists."""
    index_path = folder / WEIGHTS_INDEX_FILE
    if not index_path.is_file():
        return load_file(str(folder / WEIGHTS_FILE), device=device)
    state: dict[str, torch.Tensor] = {}
    for name in sorted(set(json.loads(index_path.read_text())["weight_map"].values())):
        state.update(load_file(str(folder / name), device=device))
    return state
