"""The trainer's CUDA branches, run on a CPU-only torch with the device injected (torch.cuda monkeypatched).

No GPU is lent to these tests, so each branch that only a GPU takes is driven here with the GPU's answers faked:
the rank's device from LOCAL_RANK, the up-front memory check against that device's total memory in bf16, the MFU
peak from the device table, and FSDP2's bf16-parameters / fp32-reduction policy on every unit.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from workloads.lm.model import GPT
from workloads.trainer_torch import parallel
from workloads.trainer_torch.__main__ import _memory_problem
from workloads.trainer_torch.config import parse_config
from workloads.trainer_torch.distributed import DistContext, context_from_env
from workloads.trainer_torch.telemetry import peak_flops_per_device

REQUIRED = ["--data", "s3://b/data", "--checkpoints", "s3://b/ckpt"]
H200_BYTES = 143_771 * 2**20
"""An H200's total memory as the instance table gives it (infra/config/instances.yaml, p5e)."""


@pytest.fixture()
def fake_h200(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """torch.cuda answering as a node of H200s; returns the devices it was asked about."""
    asked: list[Any] = []

    def properties(device: Any) -> SimpleNamespace:
        asked.append(device)
        return SimpleNamespace(name="NVIDIA H200", total_memory=H200_BYTES)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: properties(device).name)
    return asked


def test_each_rank_trains_on_the_gpu_of_its_local_rank(fake_h200: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"RANK": "11", "WORLD_SIZE": "16", "LOCAL_RANK": "3"}.items():
        monkeypatch.setenv(name, value)
    ctx = context_from_env()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.device) == (11, 16, 3, torch.device("cuda", 3))


def test_the_memory_check_sizes_bf16_against_the_rank_gpu(fake_h200: list[Any]) -> None:
    device = torch.device("cuda", 3)
    assert _memory_problem(parse_config([*REQUIRED, "--model", "small"], environ={}), device) is None
    problem = _memory_problem(parse_config([*REQUIRED, "--model", "7b", "--micro-batch", "1"], environ={}), device)
    assert problem is not None and fake_h200 == [device, device]
    assert "with ddp over 1 rank(s), micro-batch 1 x 2048 tokens, bf16, activation checkpointing none" in problem
    assert "cuda:3 (NVIDIA H200) has 140.40 GiB" in problem
    # --device-memory-gb (a share of the GPU) wins over the GPU's total; the CUDA context is still counted.
    small = parse_config([*REQUIRED, "--model", "small", "--device-memory-gb", "1"], environ={})
    problem = _memory_problem(small, device)
    assert problem is not None and "overhead 0.91)" in problem and "cuda:3 (NVIDIA H200) has 1.00 GiB" in problem


def test_mfu_peak_comes_from_the_table_for_the_rank_gpu(fake_h200: list[Any]) -> None:
    assert peak_flops_per_device(torch.device("cuda", 5), None) == (989e12, "table:NVIDIA H200")
    assert fake_h200 == [torch.device("cuda", 5)]


def test_fsdp_on_gpus_shards_every_block_and_the_root_with_bf16_params_and_fp32_reduction(
        monkeypatch: pytest.MonkeyPatch) -> None:
    meshes: list[tuple[str, tuple[int, ...]]] = []
    sharded: list[tuple[torch.nn.Module, Any]] = []
    monkeypatch.setattr(parallel.distributed, "active", lambda: True)

    def mesh(kind: str, shape: tuple[int, ...]) -> str:
        meshes.append((kind, shape))
        return kind

    monkeypatch.setattr(parallel, "init_device_mesh", mesh)
    monkeypatch.setattr(parallel, "fully_shard", lambda module, mesh, mp_policy: sharded.append((module, mp_policy)))
    model = GPT(parse_config([*REQUIRED, "--model", "tiny"], environ={}).preset)
    ctx = DistContext(rank=0, world_size=8, local_rank=0, device=torch.device("cuda", 0))
    parallel.ParallelModel(model, ctx, mode="fsdp", activation_checkpointing="none", compile_blocks=False)
    assert meshes == [("cuda", (8,))]
    assert [module for module, _ in sharded] == [*model.blocks, model]  # blocks first, the root last
    assert {(policy.param_dtype, policy.reduce_dtype) for _, policy in sharded} == {(torch.bfloat16, torch.float32)}
    assert {p.device.type for p in model.parameters()} == {"cpu"}  # fully_shard (faked here) moves each unit itself
