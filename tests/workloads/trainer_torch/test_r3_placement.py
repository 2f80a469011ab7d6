"""Where the model lives (whole on the device under DDP, under FSDP never whole on it) and when the step loop waits
for the device (only to read back a loss it logs or checkpoints; ranks agree to stop over a CPU group).

No GPU here, so the device is injected: `meta` stands for the GPU a DDP rank copies its replica to, and a
one-rank gloo group on the CPU exercises the FSDP branch the GPU takes (fully_shard moves each unit to the mesh's
device itself, torch/distributed/fsdp/_fully_shard/_fsdp_init.py `_move_states_to_device`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from tests.workloads.trainer_torch.support import TINY, Bucket, events
from workloads.lm.model import GPT
from workloads.trainer_torch.__main__ import main
from workloads.trainer_torch.config import parse_config
from workloads.trainer_torch.distributed import DistContext
from workloads.trainer_torch.lifecycle import StopSignal
from workloads.trainer_torch.parallel import ParallelModel
from workloads.trainer_torch.schedule import WarmupCosine
from workloads.trainer_torch.train import Trainer

REQUIRED = ("--data", "s3://b/data", "--checkpoints", "s3://b/ckpt", "--model", "tiny")


@pytest.fixture()
def one_rank_group(tmp_path: Path) -> Iterator[DistContext]:
    """A one-rank gloo process group in this process (left again afterwards)."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    finally:
        dist.destroy_process_group()


def test_without_sharding_the_whole_model_is_placed_on_the_rank_device() -> None:
    model = GPT(parse_config(REQUIRED, environ={}).preset)
    meta = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("meta"))
    ParallelModel(model, meta, mode="ddp", activation_checkpointing="none", compile_blocks=False)
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_under_fsdp_the_unsharded_model_never_moves_to_the_device_whole(
        one_rank_group: DistContext, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config([*REQUIRED, "--parallel", "fsdp"], environ={})
    moved: list[str] = []
    to = torch.nn.Module.to

    def spy(module: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.nn.Module:
        moved.append(type(module).__name__)
        return to(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    trainer = Trainer.__new__(Trainer)  # only the model-building part: no S3 client, no checkpointer
    trainer.cfg, trainer.ctx = cfg, one_rank_group
    trainer.schedule = WarmupCosine(cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
    trainer._build_model()
    # On a GPU a whole-model `.to(device)` would put every fp32 parameter there at once (7b: 24 GiB) before sharding.
    assert "GPT" not in moved
    assert all(isinstance(p, DTensor) for p in trainer.model.parameters())


def test_ranks_agree_to_stop_over_the_cpu_control_group(one_rank_group: DistContext) -> None:
    trainer = Trainer.__new__(Trainer)  # only the stop agreement: no S3 client, no checkpointer
    trainer.control_group = dist.new_group(backend="gloo")  # what a GPU rank uses instead of its NCCL group
    trainer.stop = StopSignal(1.0)
    try:
        assert trainer._stop_agreed() is False
        trainer.stop.requested = True
        assert trainer._stop_agreed() is True
    finally:
        dist.destroy_process_group(trainer.control_group)


def test_the_loss_is_read_back_only_on_steps_that_log_or_checkpoint_it(
        bucket: Bucket, dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    losses: list[torch.Tensor] = []
    reads: list[int] = []
    step, item = Trainer._step, torch.Tensor.item

    def recording_step(self: Trainer, progress: Any) -> Any:
        result = step(self, progress)
        losses.append(result[0])
        return result

    def spy(tensor: torch.Tensor) -> Any:
        # On a GPU each read waits for the device to finish the step, so the next one cannot be queued behind it.
        if any(tensor is loss for loss in losses):
            reads.append(len(losses))
        return item(tensor)

    monkeypatch.setattr(Trainer, "_step", recording_step)
    monkeypatch.setattr(torch.Tensor, "item", spy)
    code = main(["--data", dataset, "--checkpoints", bucket.uri("reads/ckpt"), *TINY, "--max-steps", "7",
                 "--log-every", "3", "--checkpoint-every", "5", "--eval-batches", "0", "--local-dir", str(tmp_path)])
    assert code == 0, capsys.readouterr().err[-2000:]
    assert reads == [1, 3, 5, 6, 7]  # logged: 1, 3, 6, 7 (the last); checkpointed: 5, 7
    assert [e["step"] for e in events(capsys.readouterr().out, "step")] == [1, 3, 6, 7]
