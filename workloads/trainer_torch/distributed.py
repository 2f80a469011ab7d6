"""Process-group setup under torchrun, rank facts, collective helpers and RNG state.

Without torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK) the trainer runs as a single process with
no process group, so `python -m workloads.trainer_torch` works for quick local runs. Every
helper here is a no-op or identity in that case.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    """Global rank."""
    world_size: int
    """Processes in the job."""
    local_rank: int
    """Rank on this node (picks the GPU)."""
    device: torch.device
    """The device this rank trains on."""

    @property
    def is_main(self) -> bool:
        """True on global rank 0 (logs, metrics, model files, commit marker)."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """True on local rank 0 (downloads shared by the node)."""
        return self.local_rank == 0


def context_from_env() -> DistContext:
    """Read torchrun's env; CUDA device `LOCAL_RANK` when a GPU is present, else CPU."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def init(ctx: DistContext, timeout_s: int) -> None:
    """Join the process group when launched by torchrun: NCCL on GPUs, gloo on CPU.

    `timeout_s` bounds every collective: gloo raises when a peer does not answer in time, and NCCL's watchdog
    aborts the communicator and ends the process (TORCH_NCCL_ASYNC_ERROR_HANDLING defaults to tearing down), so a
    hung rank fails the whole job instead of holding its devices
    (https://docs.pytorch.org/docs/stable/distributed.html#torch.distributed.init_process_group).
    """
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if "RANK" not in os.environ or dist.is_initialized():
        return
    timeout = timedelta(seconds=timeout_s)
    if ctx.device.type == "cuda":
        dist.init_process_group(backend="nccl", device_id=ctx.device, timeout=timeout)
    else:
        dist.init_process_group(backend="gloo", timeout=timeout)


TIMEOUT_MESSAGES = ("Timed out waiting", "Watchdog caught collective operation timeout")
"""How a collective that outlived the group's timeout is worded: gloo's TCP transport (gloo/transport/tcp/
unbound_buffer.cc, a plain RuntimeError) and ProcessGroupNCCL's watchdog (a DistBackendError where a wait sees it;
by default the watchdog ends the process itself, having logged the same words)."""


def is_collective_timeout(exc: BaseException) -> bool:
    """True when `exc` is a collective that waited longer than the process group's timeout."""
    return isinstance(exc, RuntimeError) and any(message in str(exc) for message in TIMEOUT_MESSAGES)


def shutdown() -> None:
    """Leave the process group (idempotent)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True when a process group exists."""
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank."""
    if active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` across ranks in place and return it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def rank_seed(seed: int, rank: int) -> int:
    """A per-rank seed derived from (seed, rank) by SeedSequence, so ranks never share streams."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This rank's RNG states as tensors and plain values (loadable with `weights_only=True`)."""
    version, mt_state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python_version": version,
        "python_state": torch.tensor(mt_state, dtype=torch.int64),
        "python_gauss": gauss,
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_has_gauss": int(np_state["has_gauss"]),
        "numpy_gauss": float(np_state["gauss"]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        # This rank's own GPU only (`init` made it current): a list of every visible GPU's states would not restore
        # on a node with fewer GPUs (torch.cuda.set_rng_state_all indexes torch.cuda.default_generators by position).
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_state"].tolist()),
                     state["python_gauss"]))
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": state["numpy_key"].numpy().astype(np.uint32), "pos": state["numpy_pos"]},
        "has_gauss": state["numpy_has_gauss"],
        "gauss": state["numpy_gauss"],
    })
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, list):  # written by earlier trainers: every visible GPU's state, this rank's at its index
        device = torch.cuda.current_device() if torch.cuda.is_available() else len(cuda)
        cuda = cuda[device] if device < len(cuda) else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)
