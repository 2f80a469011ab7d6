"""Per-rank training memory: an estimate for a preset, its parallelism, batch and precision, and the fit check.

Torch-free, so the trainer checks it before torch allocates anything and infra checks a stack's training
jobs against their GPU pool. The model is the one in workloads.lm.model (GPT-2-shaped blocks, tied
embeddings, SDPA attention) trained with AdamW; each term cites the formula it follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from workloads.lm.presets import PRESETS, GPTConfig, preset_config

Parallel = Literal["ddp", "fsdp"]
"""How ranks share the model: ddp replicates everything, fsdp shards parameters, gradients and optimizer states."""
Precision = Literal["fp32", "bf16"]
"""Compute precision: fp32 everywhere, or bf16 compute over fp32 master weights (the trainer's GPU mode)."""
Checkpointing = Literal["none", "full", "selective"]
"""Activation checkpointing: none, full (recompute every block), selective (recompute every other block)."""

GIB: Final = 1024**3
"""Bytes in a GiB."""
CUDA_OVERHEAD: Final = GIB // 2
"""Per-process GPU bytes outside the model: the CUDA context and kernels (~300-500 MiB; PyTorch "CUDA semantics",
memory management notes) and NCCL's buffers. None on CPU, where they are host memory."""
FRAGMENTATION: Final = 0.10
"""Headroom for the caching allocator's fragmentation, as a fraction of the tensors' bytes."""
FP32: Final = 4
"""Bytes per fp32 element: master parameters, gradients, AdamW states and fp32 reductions are kept at this width."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one rank needs to train, by what holds them."""

    params: int
    """Parameters (this rank's shard under fsdp), fp32 master copies."""
    grads: int
    """Gradients (this rank's shard under fsdp), fp32."""
    optimizer: int
    """AdamW's two moments (exp_avg, exp_avg_sq), fp32."""
    activations: int
    """Activations saved for backward over one micro-batch, plus the logits and their gradient."""
    buffers: int
    """Communication and cast buffers: DDP gradient buckets, FSDP all-gathered blocks, autocast weight copies."""
    overhead: int
    """CUDA context and kernels (on CUDA only), and allocator fragmentation."""

    @property
    def total(self) -> int:
        """Bytes in all."""
        return self.params + self.grads + self.optimizer + self.activations + self.buffers + self.overhead

    def breakdown(self) -> str:
        """One line: the total and each part in GiB."""
        parts = ("params", "grads", "optimizer", "activations", "buffers", "overhead")
        detail = ", ".join(f"{name} {getattr(self, name) / GIB:.2f}" for name in parts)
        return f"{self.total / GIB:.2f} GiB per rank ({detail})"


def activation_bytes(config: GPTConfig, *, micro_batch: int, seq_len: int, precision: Precision,
                     checkpointing: Checkpointing) -> int:
    """Activations kept for backward in one micro-batch (Korthikanti et al. 2022, arXiv:2205.05198, section 4).

    Their per-block count is s·b·h·(34 + 5·a·s/h) bytes at 2 bytes per element: 17 h-wide elements per token
    plus the a·s² attention scores and dropout masks. Our blocks have no dropout (the masks' 2·s·b·h bytes and
    a·s²·b bytes go) and SDPA's fused kernels keep no s x s scores, only an fp32 log-sum-exp per head and token:
    16 elements per token in a plain block. A checkpointed block keeps only its input (1 element per token) and is
    rebuilt one at a time in backward. full checkpoints every block, selective every other one (the even ones).
    Caveat: under bf16 autocast every element counts 2 bytes, but autocast runs LayerNorm in fp32 and the residual
    stream stays fp32, so both LayerNorms' saved inputs and outputs (4 of the 16 elements) take 4 bytes: a plain
    block may hold up to 25% more than counted, which the 10% fragmentation headroom does not fully cover.
    """
    element = 2 if precision == "bf16" else FP32
    tokens = micro_batch * seq_len
    plain = 16 * tokens * config.d_model * element + tokens * config.n_head * FP32
    kept = tokens * config.d_model * element
    checkpointed = {"none": 0, "selective": (config.n_layer + 1) // 2, "full": config.n_layer}[checkpointing]
    blocks = (config.n_layer - checkpointed) * plain + checkpointed * kept + (plain if checkpointed else 0)
    # Embedding sum and final LayerNorm (h wide), then the logits and their gradient: cross-entropy runs in fp32.
    head = 3 * tokens * config.d_model * element + 2 * tokens * config.vocab_size * FP32
    return blocks + head


def build_bytes(config: GPTConfig) -> int:
    """Host bytes one rank holds while it builds the model: every parameter in fp32, because each rank initialises the
    whole model on the CPU (the same weights on every rank) before placing it on its device, whole or sharded."""
    return config.n_params(non_embedding=False) * FP32


def default_parallel(world_size: int) -> Parallel:
    """The trainer's --parallel when unset: fsdp when the world size is > 1, else ddp."""
    return "fsdp" if world_size > 1 else "ddp"


def estimate(config: GPTConfig, *, parallel: Parallel, world_size: int, micro_batch: int, seq_len: int,
             precision: Precision, checkpointing: Checkpointing = "none", cuda: bool = True) -> MemoryEstimate:
    """Per-rank bytes to train `config` with AdamW, on a CUDA device unless `cuda` is false.

    Model states follow ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054, section 3.1): K·Ψ bytes for Ψ parameters,
    here 4 (fp32 params) + 4 (fp32 grads) + 8 (AdamW's two fp32 moments) = 16 per parameter in both precisions,
    because bf16 only changes compute. fsdp (ZeRO stage 3) divides all three by the world size.
    """
    n = config.n_params(non_embedding=False)
    shards = world_size if parallel == "fsdp" else 1
    params, grads, optimizer = (-(-n * width // shards) for width in (FP32, FP32, 2 * FP32))
    compute = 2 if precision == "bf16" else FP32
    if parallel == "fsdp":
        # FSDP2 all-gathers one block ahead (forward and backward prefetch) in the compute dtype and
        # reduce-scatters its unsharded gradient in fp32 (MixedPrecisionPolicy(reduce_dtype=float32)).
        block = 12 * config.d_model**2 + 13 * config.d_model
        embeddings = (config.vocab_size + config.max_seq_len) * config.d_model
        buffers = 2 * block * compute + block * FP32 + embeddings * (compute + FP32)
    else:
        # DDP's gradient buckets are a second copy of the gradients (DistributedDataParallel docs,
        # gradient_as_bucket_view); bf16 autocast caches a bf16 copy of every weight during forward.
        buffers = n * FP32 + (n * 2 if precision == "bf16" else 0)
    activations = activation_bytes(config, micro_batch=micro_batch, seq_len=seq_len, precision=precision,
                                   checkpointing=checkpointing)
    tensors = params + grads + optimizer + activations + buffers
    return MemoryEstimate(params=params, grads=grads, optimizer=optimizer, activations=activations, buffers=buffers,
                          overhead=(CUDA_OVERHEAD if cuda else 0) + int(tensors * FRAGMENTATION))


def _flag(name: str) -> str:
    if name == "world_size":
        return "the ranks (torchrun --nnodes x --nproc-per-node)"
    return "--" + name.replace("_", "-")


def fixes(model: str, *, parallel: Parallel, world_size: int, micro_batch: int, checkpointing: Checkpointing,
          name: Callable[[str], str] = _flag) -> list[str]:
    """What would lower the estimate, most effective first; `name` spells a trainer setting (default: its flag)."""
    advice = []
    if parallel == "ddp":
        advice.append(f"shard the model states with {name('parallel')} fsdp")
    else:
        advice.append(f"raise {name('world_size')} (fsdp shards the model states over all {world_size} ranks)")
    if checkpointing != "full":
        advice.append(f"recompute activations with {name('activation_checkpointing')} "
                      + ("full" if checkpointing == "selective" else "selective or full"))
    if micro_batch > 1:
        advice.append(f"lower {name('micro_batch')} (got {micro_batch}; keep the global batch with more gradient "
                      "accumulation)")
    smaller = [preset for preset, shape in PRESETS.items() if shape.n_params() < PRESETS[model].n_params()]
    if smaller:
        advice.append(f"pick a smaller {name('model')} than {model!r} ({', '.join(smaller)})")
    return advice


def fit_problem(model: str, *, device_bytes: int, device: str, parallel: Parallel, world_size: int,
                micro_batch: int, seq_len: int, precision: Precision, checkpointing: Checkpointing = "none",
                cuda: bool = True, vocab_size: int | None = None, name: Callable[[str], str] = _flag) -> str | None:
    """Why preset `model` (with `vocab_size` embedding rows, default the preset's) cannot train in `device_bytes` per
    rank (the estimate and what to change), or None."""
    config = preset_config(model, vocab_size)
    needed = estimate(config, parallel=parallel, world_size=world_size, micro_batch=micro_batch, seq_len=seq_len,
                      precision=precision, checkpointing=checkpointing, cuda=cuda)
    if needed.total <= device_bytes:
        return None
    advice = fixes(model, parallel=parallel, world_size=world_size, micro_batch=micro_batch,
                   checkpointing=checkpointing, name=name)
    own_vocab = config.vocab_size != PRESETS[model].vocab_size
    shape = f"{model!r} with {name('vocab_size')} {config.vocab_size}" if own_vocab else repr(model)
    return (f"{shape} needs an estimated {needed.breakdown()} with {parallel} over {world_size} rank(s), "
            f"micro-batch {micro_batch} x {seq_len} tokens, {precision}, activation checkpointing {checkpointing}; "
            f"{device} has {device_bytes / GIB:.2f} GiB. To fit: " + "; or ".join(advice))
