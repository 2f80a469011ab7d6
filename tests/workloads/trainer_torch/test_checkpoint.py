"""Checkpoints: DCP shards then a commit marker, markerless folders ignored, pruning, verified loads, async saves."""

from __future__ import annotations

import itertools
import json
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.support.servers import S3Server
from tests.workloads.trainer_torch.support import REPO, Bucket, subprocess_env
from workloads.common.uri import S3Uri
from workloads.trainer_torch import checkpoint as checkpoint_module
from workloads.trainer_torch.checkpoint import UPLOAD_THREADS, Checkpointer, CheckpointError
from workloads.trainer_torch.distributed import DistContext, rng_state

# DCP warns on every single-process save and load; that is the mode these tests use on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is:UserWarning")

CTX = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def checkpointer(bucket: Bucket, keep_last: int = 2, *, async_save: bool = False,
                 on_commit: Callable[[float], None] | None = None) -> Checkpointer:
    root = S3Uri.parse(bucket.uri(f"ckpt-{uuid.uuid4().hex[:6]}"))
    return Checkpointer(root, CTX, keep_last=keep_last, async_save=async_save, on_commit=on_commit)


def trained(value: float) -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
    """A small model whose weights are all `value`, after one AdamW step (so the optimizer has state)."""
    model = torch.nn.Linear(3, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(value)
    return model, optimizer


def save(ckpt: Checkpointer, step: int) -> None:
    model, optimizer = trained(float(step))
    ckpt.save(step, model, optimizer, state={"step": step}, rng=rng_state())


def test_save_writes_dcp_shards_then_a_commit_listing_their_sizes(bucket: Bucket) -> None:
    ckpt = checkpointer(bucket)
    save(ckpt, 5)
    prefix = ckpt.root.key + "/step-000000005/"
    shards = [f"__0_{i}.distcp" for i in range(UPLOAD_THREADS)]
    files = sorted([".metadata", *shards, "rng-rank00000.pt", "state.json"])
    # Nothing outside the step folder either (the listing is of the root key itself, no slash).
    assert bucket.keys(ckpt.root.key) == sorted(prefix + n for n in [*files, "COMMIT"])
    marker = json.loads(bucket.read(prefix + "COMMIT"))
    assert marker["step"] == 5 and sorted(marker["files"]) == files
    for name, entry in marker["files"].items():
        assert entry == {"bytes": len(bucket.read(prefix + name))}


def test_folder_without_commit_marker_is_ignored(bucket: Bucket) -> None:
    ckpt = checkpointer(bucket)
    save(ckpt, 10)
    bucket.write(ckpt.root.key + "/step-000000020/__0_0.distcp", b"half-written")
    listing = ckpt.listing()
    assert (listing.committed, listing.partial) == ([10], [20])
    assert ckpt.latest() == 10


@pytest.mark.parametrize("slash", ["", "/"], ids=["no-trailing-slash", "trailing-slash"])
def test_listing_sees_only_its_own_prefix(bucket: Bucket, slash: str) -> None:
    root = f"list-{uuid.uuid4().hex[:6]}"
    bucket.write(f"{root}/step-000000003/COMMIT", b"{}")
    bucket.write(f"{root}/step-000000004/__0_0.distcp", b"partial")
    bucket.write(f"{root}-other/step-000000009/COMMIT", b"{}")  # a sibling prefix sharing the name's start
    ckpt = Checkpointer(S3Uri.parse(bucket.uri(root + slash)), CTX, keep_last=1)
    listing = ckpt.listing()
    assert (listing.committed, listing.partial, ckpt.latest()) == ([3], [4], 3)
    assert ckpt.step_uri(3, "COMMIT").key == f"{root}/step-000000003/COMMIT"


def test_prune_keeps_last_k_committed_and_drops_stale_partials(bucket: Bucket) -> None:
    ckpt = checkpointer(bucket, keep_last=2)
    bucket.write(ckpt.root.key + "/step-000000001/__0_0.distcp", b"crashed save")
    for step in (2, 4, 6):
        save(ckpt, step)
    bucket.write(ckpt.root.key + "/step-000000008/__0_0.distcp", b"in flight")
    ckpt.prune()
    listing = ckpt.listing()
    assert (listing.committed, listing.partial) == ([4, 6], [8])
    assert bucket.keys(ckpt.root.key + "/step-000000002/") == []


def test_load_restores_model_optimizer_state_and_rng(bucket: Bucket) -> None:
    ckpt = checkpointer(bucket)
    saved_model, saved_optimizer = trained(3.0)
    torch.manual_seed(123)
    expected_rng = rng_state()["torch"]
    ckpt.save(3, saved_model, saved_optimizer, state={"step": 3}, rng=rng_state())
    model, optimizer = trained(0.0)
    rng = ckpt.load(3, model, optimizer)
    assert torch.equal(model.weight, torch.full((3, 3), 3.0))
    exp_avg = optimizer.state[model.weight]["exp_avg"]
    assert torch.equal(exp_avg, saved_optimizer.state[saved_model.weight]["exp_avg"])
    assert ckpt.read_state(3) == {"step": 3}
    assert rng is not None and torch.equal(rng["torch"], expected_rng)


def test_load_rejects_a_file_that_differs_from_its_commit(bucket: Bucket) -> None:
    ckpt = checkpointer(bucket)
    save(ckpt, 7)
    bucket.write(ckpt.root.key + "/step-000000007/__0_0.distcp", b"bit rot")
    model, optimizer = trained(0.0)
    with pytest.raises(CheckpointError, match=r"^--checkpoints: s3://.*/step-000000007/__0_0.distcp does not match "
                                              r"its COMMIT \(COMMIT says \d+ bytes, found 7\)"):
        ckpt.load(7, model, optimizer)


def test_unlistable_prefix_is_an_error_naming_the_flag(bucket: Bucket) -> None:
    ckpt = Checkpointer(S3Uri("no-such-bucket-ckpt", "x"), CTX, keep_last=1)
    with pytest.raises(CheckpointError, match=r"^--checkpoints: cannot list s3://no-such-bucket-ckpt/x"):
        ckpt.latest()


def test_async_save_commits_only_after_the_upload_and_the_next_save_waits(
        bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    # What the trainer's "last committed checkpoint" metric hears: only a written COMMIT, never a save in flight.
    ckpt = checkpointer(bucket, async_save=True, on_commit=lambda seconds: order.append("committed"))
    save(ckpt, 1)
    ckpt.wait()
    order.clear()
    gate = threading.Event()
    original = checkpoint_module.FsspecWriter.write_data

    uploads = itertools.count()

    def held(self: Any, plan: Any, planner: Any) -> Any:
        # Only step 2's upload is held and recorded: step 3's runs on its own thread, unordered against the test's.
        if next(uploads) == 0:
            gate.wait()  # the upload stalls here, as a slow or killed one would
            order.append("upload finished")
        return original(self, plan, planner)

    monkeypatch.setattr(checkpoint_module.FsspecWriter, "write_data", held)
    model, optimizer = trained(2.0)
    saved_moments = {k: v.clone() for k, v in optimizer.state[model.weight].items()}
    ckpt.save(2, model, optimizer, state={"step": 2}, rng=rng_state())  # returns while the upload is held
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # training goes on while the upload is held: weights and moments change in place
    with torch.no_grad():
        model.weight.fill_(-1.0)
    assert ckpt.latest() == 1, "an upload in flight is not a checkpoint"
    assert not any(k.endswith("/COMMIT") for k in bucket.keys(ckpt.step_uri(2).key + "/"))

    def next_save() -> None:
        save(ckpt, 3)
        order.append(f"next save returned, committed {ckpt.listing().committed}")

    third = threading.Thread(target=next_save, daemon=True)
    third.start()
    third.join(0.5)  # a save that does not wait returns here; one that waits is still blocked, however slow the host
    assert third.is_alive() and order == [], "the next save must wait for the upload in flight"
    gate.set()
    third.join(120)  # only so a hang fails instead of blocking the suite
    assert not third.is_alive(), "the next save did not return after the upload was released"
    # Step 3's own upload and commit run on in the background, so only the first three events are ordered.
    assert order[:3] == ["upload finished", "committed", "next save returned, committed [1, 2]"]
    ckpt.close()
    assert ckpt.latest() == 3
    restored, restored_optimizer = trained(0.0)
    ckpt.load(2, restored, restored_optimizer)
    assert torch.equal(restored.weight, torch.full((3, 3), 2.0)), "the save holds the weights at save time"
    moments = restored_optimizer.state[restored.weight]
    assert all(torch.equal(moments[k], v) for k, v in saved_moments.items()), "and the optimizer state"


def denied(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every DCP shard upload fail the way s3fs reports a 403."""
    def write_data(self: Any, plan: Any, planner: Any) -> Any:
        raise PermissionError("Access Denied")
    monkeypatch.setattr(checkpoint_module.FsspecWriter, "write_data", write_data)


@pytest.mark.parametrize("async_save", [False, True], ids=["sync", "async"])
def test_failed_shard_upload_is_a_checkpoint_error_naming_the_flag(
        bucket: Bucket, monkeypatch: pytest.MonkeyPatch, async_save: bool) -> None:
    ckpt = checkpointer(bucket, async_save=async_save)
    denied(monkeypatch)
    expected = r"^--checkpoints: saving s3://.*/step-000000003 failed \(.*PermissionError: Access Denied\); check that"
    with pytest.raises(CheckpointError, match=expected):
        save(ckpt, 3)
        ckpt.wait()  # an async save's error surfaces here
    ckpt.close()
    assert ckpt.latest() is None


def test_failed_async_upload_is_logged_when_it_fails_not_only_at_the_next_save(
        bucket: Bucket, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = checkpointer(bucket, async_save=True)
    denied(monkeypatch)
    save(ckpt, 3)
    out, deadline = "", time.monotonic() + 120  # the loop goes on; nobody calls wait() until the next save
    while '"checkpoint_failed"' not in out and time.monotonic() < deadline:
        time.sleep(0.05)
        out += capsys.readouterr().out
    failed = [json.loads(line) for line in out.splitlines() if '"checkpoint_failed"' in line]
    assert [(e["step"], e["rank"]) for e in failed] == [(3, 0)] and "PermissionError: Access Denied" in failed[0]["error"]
    with pytest.raises(CheckpointError):
        ckpt.wait()
    ckpt.close()


def test_save_to_a_missing_bucket_is_a_checkpoint_error(bucket: Bucket) -> None:
    ckpt = Checkpointer(S3Uri("no-such-bucket-ckpt", "x"), CTX, keep_last=1)
    with pytest.raises(CheckpointError, match=r"^--checkpoints: saving s3://no-such-bucket-ckpt/x/step-000000001 "
                                              r"failed \(.*NoSuchBucket.*check that the bucket exists"):
        save(ckpt, 1)


def test_close_finishes_the_save_in_flight_and_releases_the_thread(bucket: Bucket) -> None:
    before = set(threading.enumerate())
    ckpt = checkpointer(bucket, async_save=True)
    save(ckpt, 4)
    ckpt.close()
    assert ckpt.latest() == 4
    assert [t.name for t in set(threading.enumerate()) - before if t.name.startswith("ckpt-commit")] == []


def test_save_clears_files_a_crashed_save_left_in_its_step_folder(bucket: Bucket) -> None:
    ckpt = checkpointer(bucket)
    folder = ckpt.step_uri(6).key + "/"
    for stale in ("rng-rank00003.pt", "__3_0.distcp", "COMMIT"):  # a crashed 4-rank save of the same step
        bucket.write(folder + stale, b"stale")
    save(ckpt, 6)
    shards = [f"__0_{i}.distcp" for i in range(UPLOAD_THREADS)]
    files = sorted([".metadata", *shards, "rng-rank00000.pt", "state.json"])
    assert bucket.keys(folder) == sorted(folder + n for n in [*files, "COMMIT"])
    assert sorted(json.loads(bucket.read(folder + "COMMIT"))["files"]) == files


def test_pre_dcp_checkpoint_is_refused_with_the_fix(bucket: Bucket) -> None:
    ckpt = checkpointer(bucket)
    bucket.write(ckpt.root.key + "/step-000000004/model.pt", b"old format")
    bucket.write(ckpt.root.key + "/step-000000004/COMMIT", json.dumps({"files": {"model.pt": {"bytes": 10}}}).encode())
    model, optimizer = trained(0.0)
    with pytest.raises(CheckpointError, match=r"step-000000004 is in the pre-DCP format .* start a new --checkpoints"):
        ckpt.load(4, model, optimizer)


KILLED_SAVE = """
import sys, time
from tests.workloads.trainer_torch import test_checkpoint as t
from workloads.common.uri import S3Uri
from workloads.trainer_torch.checkpoint import Checkpointer, FsspecWriter

stage = sys.argv[2]
original = getattr(FsspecWriter, stage)
def stuck(self, *args, **kwargs):
    done = original(self, *args, **kwargs)  # write_data: the shards are in S3; finish: .metadata is too; COMMIT is not
    print("done " + stage, flush=True)
    time.sleep(600)
    return done
setattr(FsspecWriter, stage, stuck)
ckpt = Checkpointer(S3Uri.parse(sys.argv[1]), t.CTX, keep_last=2, async_save=True)
t.save(ckpt, 2)
time.sleep(600)
"""


@pytest.mark.parametrize(("stage", "written"), [("write_data", ".distcp"), ("finish", "/.metadata")],
                         ids=["after-shards", "after-dcp-metadata"])
def test_sigkill_during_an_async_upload_leaves_the_previous_checkpoint_newest(
        s3: S3Server, bucket: Bucket, stage: str, written: str) -> None:
    ckpt = checkpointer(bucket)
    save(ckpt, 1)
    with subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(ckpt.root), stage], cwd=REPO,
                          env=subprocess_env(s3.env()), stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        try:
            ready, _, _ = select.select([child.stdout], [], [], 120)
            line = child.stdout.readline() if ready else ""
        finally:
            child.send_signal(signal.SIGKILL)  # also on failure, so the test never waits on a stuck child
    assert line.strip() == f"done {stage}", f"the child printed {line!r} (nothing within 120 s?)"
    assert any(k.endswith(written) for k in bucket.keys(ckpt.step_uri(2).key + "/")), "killed mid-save"
    listing = ckpt.listing()
    assert (listing.committed, listing.partial, ckpt.latest()) == ([1], [2], 1)
    model, optimizer = trained(0.0)
    ckpt.load(1, model, optimizer)
    assert torch.equal(model.weight, torch.full((3, 3), 1.0))
