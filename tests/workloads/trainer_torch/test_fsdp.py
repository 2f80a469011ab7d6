"""FSDP2 on CPU (gloo): the same losses as DDP, and async DCP checkpoints that resume bit-exactly on 2 ranks and
reshard 2 -> 1, 1 -> 2 and 2 -> 4 ranks.

The learning rate is constant after warmup (`--min-lr` = `--lr`), so runs with different
`--max-steps` follow one schedule, and `--global-batch 32` keeps every step's windows the same at
any world size: a resumed run must then continue the uninterrupted run's losses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.support.servers import S3Server
from tests.workloads.trainer_torch.support import TINY, Bucket, events, subprocess_env, torchrun
from workloads.common.settings import SettingsError
from workloads.trainer_torch.config import parse_config

# Reading a checkpoint back in this single test process is DCP's no-process-group mode, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is:UserWarning")

FLAGS = (*TINY, "--global-batch", "32", "--min-lr", "3e-3", "--log-every", "1", "--eval-batches", "0",
         "--checkpoint-every", "10", "--keep-last", "3")
"""Flags of every run here."""


REQUIRED = ("--data", "s3://b/data/manifest.json", "--checkpoints", "s3://b/ckpt")
"""The flags every settings check needs."""


def test_parallel_defaults_to_fsdp_above_one_rank_and_ddp_at_one() -> None:
    assert parse_config(REQUIRED, world_size=2).parallel == "fsdp"
    assert parse_config(REQUIRED, world_size=1).parallel == "ddp"
    assert parse_config([*REQUIRED, "--parallel", "ddp"], world_size=4).parallel == "ddp"


def test_bad_parallel_and_activation_checkpointing_are_reported_together() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_config([*REQUIRED, "--parallel", "zero3", "--activation-checkpointing", "some"], world_size=2)
    assert [e.split(":")[0] for e in caught.value.errors] == [
        "--parallel (MODELPLANE_TRAIN_PARALLEL)", "--activation-checkpointing (MODELPLANE_TRAIN_ACTIVATION_CHECKPOINTING)"]


def train(s3: S3Server, dataset: str, bucket: Bucket, name: str, local: Path, *extra: str,
          nproc: int = 2) -> dict[int, float]:
    """Run the trainer under torchrun; returns rank 0's loss by step."""
    args = ["--data", dataset, "--checkpoints", bucket.uri(f"{name}/ckpt"), *FLAGS, "--local-dir", str(local),
            *extra]
    proc = torchrun(args, subprocess_env(s3.env()), nproc=nproc, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {e["step"]: e["loss"] for e in events(proc.stdout, "step")}


@pytest.fixture(scope="module")
def fsdp(s3: S3Server, bucket: Bucket, dataset: str, tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """30 steps on 2 ranks, FSDP (the default there), full activation checkpointing, async checkpoints."""
    return train(s3, dataset, bucket, "fsdp", tmp_path_factory.mktemp("fsdp"), "--max-steps", "30",
                 "--activation-checkpointing", "full", "--async-checkpoint")


def close(actual: dict[int, float], expected: dict[int, float], steps: range, tol: float) -> bool:
    """True when the losses at `steps` agree within `tol`."""
    return all(abs(actual[s] - expected[s]) <= tol for s in steps)


def assert_same_training_state(bucket: Bucket, resumed: str, reference: str, step: int) -> None:
    """The resumed run's checkpoint at `step` holds the reference run's data position, and its AdamW state.

    The step count is exact (a run that dropped the optimizer state on resume restarts it at 1); the moments
    agree to fp32 tolerance, as different world sizes reduce in different orders.
    """
    folder = f"{{}}/ckpt/step-{step:09d}/"
    for name in (resumed, reference):
        state = json.loads(bucket.read(folder.format(name) + "state.json"))
        assert (state["step"], state["consumed"]) == (step, step * 32), (name, state)
    actual = bucket.checkpoint(folder.format(resumed))["optim"]["state"]
    expected = bucket.checkpoint(folder.format(reference))["optim"]["state"]
    assert actual.keys() == expected.keys() and actual
    for fqn, moments in expected.items():
        assert float(actual[fqn]["step"]) == float(moments["step"]) == step, fqn
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(actual[fqn][key], moments[key], rtol=1e-3, atol=1e-7), (fqn, key)


def test_fsdp_matches_ddp_losses_for_20_steps(
        fsdp: dict[int, float], s3: S3Server, bucket: Bucket, dataset: str, tmp_path: Path) -> None:
    ddp = train(s3, dataset, bucket, "ddp", tmp_path, "--max-steps", "20", "--parallel", "ddp")
    assert close(fsdp, ddp, range(1, 21), 1e-5), {s: (ddp[s], fsdp[s]) for s in range(1, 21)}
    assert bucket.committed_steps("fsdp/ckpt/") == [10, 20, 30]


def test_async_checkpoint_resumes_bit_exactly_at_the_same_world_size(
        fsdp: dict[int, float], s3: S3Server, bucket: Bucket, dataset: str, tmp_path: Path) -> None:
    bucket.copy_prefix("fsdp/ckpt/step-000000010/", "same/ckpt/step-000000010/")
    same = train(s3, dataset, bucket, "same", tmp_path, "--max-steps", "20", "--activation-checkpointing", "full",
                 "--async-checkpoint")
    assert min(same) == 11 and {s: same[s] for s in range(11, 21)} == {s: fsdp[s] for s in range(11, 21)}
    resumed, uninterrupted = bucket.checkpoint("same/ckpt/step-000000020/"), bucket.checkpoint("fsdp/ckpt/step-000000020/")
    for key, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for fqn, moments in uninterrupted["optim"]["state"].items():
        assert all(torch.equal(resumed["optim"]["state"][fqn][k], v) for k, v in moments.items()), fqn


def test_two_rank_checkpoint_resumes_on_one_rank_and_that_one_on_two(
        fsdp: dict[int, float], s3: S3Server, bucket: Bucket, dataset: str, tmp_path: Path) -> None:
    bucket.copy_prefix("fsdp/ckpt/step-000000010/", "down/ckpt/step-000000010/")
    down = train(s3, dataset, bucket, "down", tmp_path / "down", "--max-steps", "20", nproc=1)
    assert min(down) == 11, "resumed after the 2-rank checkpoint"
    assert close(down, fsdp, range(11, 21), 1e-4), {s: (fsdp[s], down[s]) for s in range(11, 21)}
    assert json.loads(bucket.read("down/ckpt/step-000000020/state.json"))["world_size"] == 1
    assert_same_training_state(bucket, "down", "fsdp", 20)

    bucket.copy_prefix("down/ckpt/step-000000020/", "up/ckpt/step-000000020/")
    up = train(s3, dataset, bucket, "up", tmp_path / "up", "--max-steps", "30", "--activation-checkpointing",
               "selective")
    assert min(up) == 21, "resumed after the 1-rank checkpoint"
    assert close(up, fsdp, range(21, 31), 1e-4), {s: (fsdp[s], up[s]) for s in range(21, 31)}
    assert json.loads(bucket.read("up/ckpt/step-000000030/state.json"))["world_size"] == 2
    assert_same_training_state(bucket, "up", "fsdp", 30)


def test_two_rank_checkpoint_resumes_on_four_ranks(
        fsdp: dict[int, float], s3: S3Server, bucket: Bucket, dataset: str, tmp_path: Path) -> None:
    bucket.copy_prefix("fsdp/ckpt/step-000000010/", "wide/ckpt/step-000000010/")
    wide = train(s3, dataset, bucket, "wide", tmp_path, "--max-steps", "15", nproc=4)
    assert min(wide) == 11, "resumed after the 2-rank checkpoint"
    assert close(wide, fsdp, range(11, 16), 1e-4), {s: (fsdp[s], wide[s]) for s in range(11, 16)}
    state = json.loads(bucket.read("wide/ckpt/step-000000015/state.json"))
    assert (state["world_size"], state["consumed"]) == (4, 15 * 32)
    optim = bucket.checkpoint("wide/ckpt/step-000000015/")["optim"]["state"]
    assert optim and {float(moments["step"]) for moments in optim.values()} == {15.0}, "AdamW resumed at step 11"
