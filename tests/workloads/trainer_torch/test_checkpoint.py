"""Checkpoints: commit marker written last, markerless folders ignored, pruning, verified loads."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
import torch

from tests.workloads.trainer_torch.support import Bucket
from workloads.common.uri import S3Uri
from workloads.trainer_torch.checkpoint import Checkpointer, CheckpointError
from workloads.trainer_torch.distributed import DistContext, rng_state

CTX = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def checkpointer(bucket: Bucket, tmp_path: Path, keep_last: int = 2) -> Checkpointer:
    root = S3Uri.parse(bucket.uri(f"ckpt-{uuid.uuid4().hex[:6]}"))
    return Checkpointer(root, tmp_path, CTX, keep_last=keep_last)


def save(ckpt: Checkpointer, step: int) -> None:
    model = {"w": torch.full((3, 3), float(step)), "b": torch.arange(3)}
    ckpt.save(step, model=model, optim={"optimizer": {"lr": 0.1}, "scheduler": {}}, state={"step": step},
              rng=rng_state())


def test_save_uploads_every_file_then_a_commit_listing_their_checksums(bucket: Bucket, tmp_path: Path) -> None:
    ckpt = checkpointer(bucket, tmp_path)
    save(ckpt, 5)
    prefix = ckpt.root.key + "/step-000000005/"
    assert bucket.keys(prefix) == [prefix + n for n in
                                   ("COMMIT", "model.pt", "optim.pt", "rng-rank00000.pt", "state.json")]
    marker = json.loads(bucket.read(prefix + "COMMIT"))
    assert marker["step"] == 5
    for name, entry in marker["files"].items():
        body = bucket.read(prefix + name)
        assert entry == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    assert not any((tmp_path / "checkpoints").rglob("*.pt")), "staged files are removed after upload"


def test_folder_without_commit_marker_is_ignored(bucket: Bucket, tmp_path: Path) -> None:
    ckpt = checkpointer(bucket, tmp_path)
    save(ckpt, 10)
    bucket.write(ckpt.root.key + "/step-000000020/model.pt", b"half-written")
    listing = ckpt.listing()
    assert (listing.committed, listing.partial) == ([10], [20])
    assert ckpt.latest() == 10


def test_prune_keeps_last_k_committed_and_drops_stale_partials(bucket: Bucket, tmp_path: Path) -> None:
    ckpt = checkpointer(bucket, tmp_path, keep_last=2)
    bucket.write(ckpt.root.key + "/step-000000001/model.pt", b"crashed save")
    for step in (2, 4, 6):
        save(ckpt, step)
    bucket.write(ckpt.root.key + "/step-000000008/model.pt", b"in flight")
    ckpt.prune()
    listing = ckpt.listing()
    assert (listing.committed, listing.partial) == ([4, 6], [8])
    assert bucket.keys(ckpt.root.key + "/step-000000002/") == []


def test_load_round_trips_the_saved_state(bucket: Bucket, tmp_path: Path) -> None:
    ckpt = checkpointer(bucket, tmp_path)
    torch.manual_seed(123)
    expected_rng = rng_state()["torch"]
    save(ckpt, 3)
    loaded = ckpt.load(3, torch.device("cpu"))
    assert torch.equal(loaded.model["w"], torch.full((3, 3), 3.0))
    assert loaded.optim["optimizer"] == {"lr": 0.1} and loaded.state == {"step": 3}
    assert loaded.rng is not None and torch.equal(loaded.rng["torch"], expected_rng)


def test_load_rejects_a_file_that_fails_its_checksum(bucket: Bucket, tmp_path: Path) -> None:
    ckpt = checkpointer(bucket, tmp_path)
    save(ckpt, 7)
    bucket.write(ckpt.root.key + "/step-000000007/optim.pt", b"bit rot")
    with pytest.raises(CheckpointError, match=r"^--checkpoints: s3://.*/step-000000007/optim.pt failed its checksum"):
        ckpt.load(7, torch.device("cpu"))


def test_unlistable_prefix_is_an_error_naming_the_flag(tmp_path: Path, bucket: Bucket) -> None:
    ckpt = Checkpointer(S3Uri("no-such-bucket-ckpt", "x"), tmp_path, CTX, keep_last=1)
    with pytest.raises(CheckpointError, match=r"^--checkpoints: cannot list s3://no-such-bucket-ckpt/x"):
        ckpt.latest()
