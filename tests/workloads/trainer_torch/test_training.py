"""End to end on CPU: prepare, then 2-process torchrun training of `tiny` against the S3 test server.

Run A trains uninterrupted and is shared by several tests; run B is SIGKILLed on one rank and
restarted by torchrun, and must end bit-for-bit where A ended.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load as load_safetensors
from torch.distributed.checkpoint._fsspec_filesystem import FsspecWriter

from tests.support.servers import S3Server, free_port
from tests.workloads.trainer_torch.support import REPO, TINY, Bucket, events, kill_job, subprocess_env, torchrun
from workloads.common import metrics as names
from workloads.common.vocab import COLLECTIVE_TIMEOUT_FLAG
from workloads.lm.export import load_export
from workloads.trainer_torch.__main__ import main
from workloads.trainer_torch.checkpoint import UPLOAD_THREADS
from workloads.trainer_torch.lifecycle import EXIT_PREEMPTED, FAULT_ENV, HANG_ENV

# DCP warns on every single-process save and load; that is the mode these tests use on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is:UserWarning")

STEPS = 40
"""Optimizer steps of runs A and B."""


def run_args(dataset: str, bucket: Bucket, name: str, local_dir: Path, *extra: str) -> list[str]:
    """Flags of runs A and B: only the output prefixes and the scratch dir differ."""
    return ["--data", dataset, "--checkpoints", bucket.uri(f"{name}/ckpt"), "--export", bucket.uri(f"{name}/export"),
            *TINY, "--grad-accum", "2", "--max-steps", str(STEPS), "--checkpoint-every", "10", "--keep-last", "2",
            "--local-dir", str(local_dir), *extra]


@dataclass(frozen=True)
class Run:
    """A finished trainer run."""

    proc: subprocess.CompletedProcess[str]
    name: str

    def losses(self) -> dict[int, float]:
        """Logged loss by step (rank 0's step events)."""
        return {e["step"]: e["loss"] for e in events(self.proc.stdout, "step")}


@pytest.fixture(scope="module")
def run_a(s3: S3Server, bucket: Bucket, dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Run A: STEPS steps, two ranks, no interruption."""
    local = tmp_path_factory.mktemp("run-a")
    proc = torchrun(run_args(dataset, bucket, "run-a", local), subprocess_env(s3.env()))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Run(proc, "run-a")


def state_dicts(bucket: Bucket, run: str, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model and optimizer state of a checkpoint, gathered into full tensors."""
    content = bucket.checkpoint(f"{run}/ckpt/step-{step:09d}")
    return content["model"], content["optim"]


def test_two_rank_training_reduces_loss_clearly(run_a: Run) -> None:
    losses = run_a.losses()
    assert {1, STEPS} <= losses.keys()
    assert losses[STEPS] < 0.8 * losses[1], losses
    start = events(run_a.proc.stdout, "start")[0]
    assert (start["world_size"], start["global_batch"], start["grad_accum"]) == (2, 32, 2)
    assert "MFU" in run_a.proc.stderr and "tok/s" in run_a.proc.stderr


def test_checkpoints_are_committed_and_only_the_last_k_kept(run_a: Run, bucket: Bucket) -> None:
    assert bucket.committed_steps("run-a/ckpt/") == [30, 40]
    shards = [f"__{rank}_{i}.distcp" for rank in (0, 1) for i in range(UPLOAD_THREADS)]
    assert bucket.keys("run-a/ckpt/step-000000040/") == [
        f"run-a/ckpt/step-000000040/{n}"
        for n in (".metadata", "COMMIT", *shards, "rng-rank00000.pt", "rng-rank00001.pt", "state.json")]
    state = json.loads(bucket.read("run-a/ckpt/step-000000040/state.json"))
    assert (state["step"], state["consumed"], state["world_size"]) == (STEPS, STEPS * 32, 2)
    assert [e["step"] for e in events(run_a.proc.stdout, "checkpoint")] == [10, 20, 30, 40]


def test_export_is_loadable_by_the_server_format(run_a: Run, bucket: Bucket, tmp_path: Path) -> None:
    for key in bucket.keys("run-a/export/"):
        (tmp_path / key.rsplit("/", 1)[1]).write_bytes(bucket.read(key))
    model, _, config = load_export(tmp_path)
    final, _ = state_dicts(bucket, "run-a", STEPS)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in final.items())
    assert config["modelplane_meta"]["step"] == STEPS and config["modelplane_meta"]["val_loss"] > 0


def test_sigkilled_rank_resumes_bit_exactly_from_newest_committed_checkpoint(
        run_a: Run, s3: S3Server, bucket: Bucket, dataset: str, tmp_path: Path) -> None:
    # A newer step folder without a COMMIT marker (a save that crashed) must not exist for resume.
    bucket.write("run-b/ckpt/step-000000035/__0_0.distcp", b"half-written")
    bucket.write("run-b/ckpt/step-000000035/state.json", b"{}")
    marker = tmp_path / "killed-once"
    env = subprocess_env(s3.env(), **{FAULT_ENV: f"1:25:{marker}"})
    proc = torchrun(run_args(dataset, bucket, "run-b", tmp_path / "local"), env, max_restarts=1)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert marker.read_text() == "25", "rank 1 was killed at step 25"
    resumed = events(proc.stdout, "resumed")
    assert sorted(e["rank"] for e in resumed) == [0, 1] and {e["step"] for e in resumed} == {20}
    assert bucket.committed_steps("run-b/ckpt/") == [30, 40]
    assert bucket.keys("run-b/ckpt/step-000000035/") == [], "stale partial folders are pruned"

    model_a, optim_a = state_dicts(bucket, "run-a", STEPS)
    model_b, optim_b = state_dicts(bucket, "run-b", STEPS)
    assert model_a.keys() == model_b.keys()
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), key
    for name, state in optim_a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, optim_b["state"][name][key]), (name, key)
    run_b = Run(proc, "run-b")
    assert {s: run_b.losses()[s] for s in (25, 30, 35, 40)} == {s: run_a.losses()[s] for s in (25, 30, 35, 40)}
    weights_a = load_safetensors(bucket.read("run-a/export/model.safetensors"))
    weights_b = load_safetensors(bucket.read("run-b/export/model.safetensors"))
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_whole_group_restart_resumes_bit_exactly_from_newest_committed_checkpoint(
        run_a: Run, s3: S3Server, bucket: Bucket, dataset: str, tmp_path: Path) -> None:
    # What JobSet's failurePolicy does: every pod of the job (each torchrun agent and its ranks) is deleted and
    # recreated; SIGKILL is the worst case (a lost node), with no SIGTERM checkpoint to resume from.
    args, env = run_args(dataset, bucket, "run-c", tmp_path / "local"), subprocess_env(s3.env())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "workloads.trainer_torch", *args]
    with (tmp_path / "stderr.log").open("w") as stderr:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                start_new_session=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if '"event": "checkpoint"' in line:
                    break
        finally:
            kill_job(proc)
    committed = bucket.committed_steps("run-c/ckpt/")
    assert committed and committed[-1] < STEPS, (tmp_path / "stderr.log").read_text()[-4000:]

    proc = torchrun(args, env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    resumed = events(proc.stdout, "resumed")
    assert sorted(e["rank"] for e in resumed) == [0, 1] and {e["step"] for e in resumed} == {committed[-1]}
    model_a, _ = state_dicts(bucket, "run-a", STEPS)
    model_c, _ = state_dicts(bucket, "run-c", STEPS)
    assert all(torch.equal(model_a[key], model_c[key]) for key in model_a)
    weights_a = load_safetensors(bucket.read("run-a/export/model.safetensors"))
    weights_c = load_safetensors(bucket.read("run-c/export/model.safetensors"))
    assert weights_a.keys() == weights_c.keys() and all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)


def test_a_hung_rank_fails_the_job_within_the_collective_timeout(
        s3: S3Server, bucket: Bucket, dataset: str, tmp_path: Path) -> None:
    timeout_s = 5
    args = ["--data", dataset, "--checkpoints", bucket.uri("hang/ckpt"), *TINY, "--max-steps", "1000",
            "--checkpoint-every", "1000", "--local-dir", str(tmp_path / "local"),
            COLLECTIVE_TIMEOUT_FLAG, str(timeout_s), "--sigterm-grace", "2"]
    started = time.monotonic()
    proc = torchrun(args, subprocess_env(s3.env(), **{HANG_ENV: "1:3"}), timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0, "a job with a hung rank must fail, not finish"
    assert [e["step"] for e in events(proc.stdout, "fault_injected")] == [3]
    failed = events(proc.stderr, "collective_timeout")
    assert [(e["rank"], e["timeout_s"]) for e in failed] == [(0, timeout_s)], proc.stderr[-4000:]
    assert (f"error: {COLLECTIVE_TIMEOUT_FLAG}: rank 0 waited more than {timeout_s} s for the other ranks"
            in proc.stderr)
    assert max(e["step"] for e in events(proc.stdout, "step")) <= 5
    assert elapsed < 60, f"the job took {elapsed:.0f} s to fail"


def test_missing_manifest_is_a_clear_error(bucket: Bucket, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    missing = bucket.uri("nothing/manifest.json")
    code = main(["--data", missing, "--checkpoints", bucket.uri("nothing/ckpt"), "--model", "tiny",
                 "--local-dir", str(tmp_path)])
    assert code == 2
    assert f"error: --data: no manifest at {missing} (NoSuchKey)" in capsys.readouterr().err


def test_corrupt_shard_is_a_clear_error(bucket: Bucket, dataset: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bucket.copy_prefix("data/", "corrupt/")
    shard = bytearray(bucket.read("corrupt/train-00001.bin"))
    shard[1000] ^= 0xFF
    bucket.write("corrupt/train-00001.bin", bytes(shard))
    code = main(["--data", bucket.uri("corrupt/manifest.json"), "--checkpoints", bucket.uri("corrupt/ckpt"),
                 *TINY, "--local-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: --data: shard train-00001.bin is corrupt: checksum mismatch" in err
    assert bucket.keys("corrupt/ckpt/") == []


SHORT = (*TINY, "--max-steps", "2", "--warmup-steps", "1")
"""Flags of the in-process runs that fail at their first checkpoint access."""


def test_missing_checkpoints_bucket_is_a_clear_error(dataset: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data", dataset, "--checkpoints", "s3://no-such-ckpt-bucket/run", *SHORT,
                 "--async-checkpoint", "--local-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: --checkpoints: cannot list s3://no-such-ckpt-bucket/run" in err
    assert "Traceback" not in err


def test_failing_checkpoint_upload_is_a_clear_error(dataset: str, bucket: Bucket, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    def denied(self: Any, plan: Any, planner: Any) -> Any:
        raise PermissionError("Access Denied")  # what s3fs raises for a 403 on upload

    monkeypatch.setattr(FsspecWriter, "write_data", denied)
    code = main(["--data", dataset, "--checkpoints", bucket.uri("denied/ckpt"), *SHORT,
                 "--checkpoint-every", "1", "--eval-batches", "0", "--async-checkpoint", "--local-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: --checkpoints: saving {bucket.uri('denied/ckpt/step-000000001')} failed (" in err
    assert "PermissionError: Access Denied" in err and "Traceback" not in err
    assert bucket.committed_steps("denied/ckpt/") == []


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_sigterm_commits_a_checkpoint_at_the_current_step_and_exits(
        s3: S3Server, bucket: Bucket, dataset: str, tmp_path: Path) -> None:
    port = free_port()
    args = ["--data", dataset, "--checkpoints", bucket.uri("term/ckpt"), *TINY, "--max-steps", "100000",
            "--warmup-steps", "5", "--checkpoint-every", "1000", "--metrics-port", str(port), "--async-checkpoint",
            "--local-dir", str(tmp_path / "local")]
    # torchrun's --shutdown-timeout must exceed the time to finish a step and commit (production: >= --sigterm-grace).
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "--shutdown-timeout=300", "-m", "workloads.trainer_torch", *args]
    with (tmp_path / "stderr.log").open("w") as stderr:
        proc = subprocess.Popen(command, cwd=REPO, env=subprocess_env(s3.env()), stdout=subprocess.PIPE,
                                stderr=stderr, text=True, start_new_session=True)
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if '"event": "step"' in line and json.loads(line)["step"] >= 10:
                break
        assert proc.poll() is None, (tmp_path / "stderr.log").read_text()[-4000:]
        metrics = scrape(port)
        proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    stdout = "".join(lines) + rest
    assert proc.returncode != 0, "a preempted run must not look finished"
    preempted = events(stdout, "preempted")
    assert sorted(e["rank"] for e in preempted) == [0, 1]
    step = preempted[0]["step"]
    assert {e["exit_code"] for e in preempted} == {EXIT_PREEMPTED}
    assert step >= 10 and step % 1000
    assert bucket.committed_steps("term/ckpt/") == [step]
    assert json.loads(bucket.read(f"term/ckpt/step-{step:09d}/state.json"))["step"] == step
    assert max(e["step"] for e in events(stdout, "step")) == step
    assert torch.load(io.BytesIO(bucket.read(f"term/ckpt/step-{step:09d}/rng-rank00001.pt")), weights_only=True)
    for name in (names.TRAIN_STEP, names.TRAIN_TOKENS_TOTAL, names.TRAIN_LOSS, names.TRAIN_MFU_RATIO,
                 names.TRAIN_LAST_STEP_TIMESTAMP):
        assert f"\n{name} " in metrics, name
