"""Resuming with changed flags: what would silently corrupt the run is refused, what the flags define is applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workloads.trainer_torch.support import Bucket
from workloads.trainer_torch.__main__ import main


def _run(bucket: Bucket, dataset: str, tmp_path: Path, *flags: str) -> int:
    return main(["--data", dataset, "--checkpoints", bucket.uri("resume-flags/ckpt"), "--model", "tiny",
                 "--seq-len", "64", "--micro-batch", "4", "--checkpoint-every", "2", "--eval-batches", "0",
                 "--local-dir", str(tmp_path), *flags])


def test_resume_refuses_another_seed_or_seq_len_and_applies_a_new_weight_decay(
        bucket: Bucket, dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(bucket, dataset, tmp_path, "--max-steps", "2", "--weight-decay", "0.1") == 0
    capsys.readouterr()

    # The saved data position is a place in one seed's order of one window length: anything else repeats or skips data.
    assert _run(bucket, dataset, tmp_path, "--max-steps", "4", "--seed", "7") == 2
    assert "--seed: " in (err := capsys.readouterr().err) and "was trained with --seed 1337 (got 7)" in err
    assert _run(bucket, dataset, tmp_path, "--max-steps", "4", "--seq-len", "32") == 2
    assert "was trained with --seq-len 64 (got 32)" in capsys.readouterr().err
    assert bucket.committed_steps("resume-flags/ckpt/") == [2]

    assert _run(bucket, dataset, tmp_path, "--max-steps", "4", "--weight-decay", "0.05") == 0
    groups = bucket.checkpoint("resume-flags/ckpt/step-000000004")["optim"]["param_groups"]
    assert sorted(group["weight_decay"] for group in groups) == [0.0, 0.05]
