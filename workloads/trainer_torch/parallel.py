"""How the model is spread over ranks: DDP or FSDP2, activation checkpointing and per-block compile.

The order follows torchtitan (https://github.com/pytorch/torchtitan, `parallelize_llama`): activation
checkpointing, then `torch.compile` per block, then `fully_shard` per block and on the root. Every
step works in place on the module, so parameter names (and so checkpoint keys) never change: a
checkpoint written under DDP loads under FSDP and the other way round.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.distributed._composable import checkpoint
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from workloads.lm.model import GPT
from workloads.trainer_torch import distributed
from workloads.trainer_torch.distributed import DistContext


class ParallelModel:
    """The training view of one rank's model: what to call, and when gradients are reduced."""

    def __init__(self, model: GPT, ctx: DistContext, *, mode: str, activation_checkpointing: str,
                 compile_blocks: bool) -> None:
        """Place `model` (built on the CPU) on `ctx.device`: sharded under fsdp, else whole (replicated by DDP)."""
        self.ctx = ctx
        self.model = model
        """The module the optimizer and checkpoints see (sharded in place under FSDP)."""
        self.ddp: DistributedDataParallel | None = None
        for index, block in enumerate(model.blocks):
            if activation_checkpointing == "full" or (activation_checkpointing == "selective" and index % 2 == 0):
                checkpoint(block)  # composable: recomputes the block in backward, keeps parameter names
            if compile_blocks:
                block.compile()  # in place, so no `_orig_mod.` prefix reaches state dicts
        self.forward: torch.nn.Module = model
        """The module to call for a training step."""
        if mode == "fsdp" and distributed.active():
            # `model` is still on the CPU: fully_shard moves each unit to the mesh's device as it shards it and frees
            # the unsharded copy (torch/distributed/fsdp/_fully_shard/_fsdp_init.py:567, _move_states_to_device;
            # _fsdp_param.py:329), so a device holds one block unsharded, never the whole fp32 model (7b: 24 GiB,
            # more than an A10G or L4 has, though its shards fit).
            self._shard(ctx)
            return
        model.to(ctx.device)
        if distributed.active():
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            # Gradients live in the all-reduce buckets: no copy into and out of them each step (docs/benchmarks.md:
            # 1 -> 2 rank scaling x1.60 -> x1.65 on CPU).
            self.ddp = DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)
            self.forward = self.ddp

    def _shard(self, ctx: DistContext) -> None:
        mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
        # bf16 compute with fp32 gradient reduction on GPUs; CPU (gloo) stays fp32 so tests compare exactly.
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if ctx.device.type == "cuda" else MixedPrecisionPolicy()
        for block in self.model.blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        # The root unit holds the embeddings, the final norm and the tied head.
        fully_shard(self.model, mesh=mesh, mp_policy=policy)

    @contextlib.contextmanager
    def gradient_sync(self, enabled: bool) -> Iterator[None]:
        """Inside, DDP's backward reduces gradients only when `enabled` (the last micro-batch).

        FSDP reduce-scatters on every micro-batch regardless, as torchtitan does: skipping it makes
        FSDP2 keep an unsharded fp32 gradient per parameter until the last one, memory that the
        per-rank estimate (workloads.lm.memory) does not count. DDP's `no_sync` only skips the
        all-reduce of gradients it already holds unsharded, so it stays.
        """
        if self.ddp is not None and not enabled:
            with self.ddp.no_sync():
                yield
        else:
            yield

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Clip the global gradient norm; returns the norm before clipping as a plain tensor."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        return norm.full_tensor() if isinstance(norm, DTensor) else norm

    def full_model(self) -> GPT | None:
        """A plain CPU copy of the whole model on rank 0 (None elsewhere); every rank must call it."""
        if distributed.active():
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            state = get_model_state_dict(self.model, options=options)
        else:
            state = {key: value.detach().cpu() for key, value in self.model.state_dict().items()}
        if not self.ctx.is_main:
            return None
        copy = GPT(self.model.config)
        copy.load_state_dict(state)
        return copy
