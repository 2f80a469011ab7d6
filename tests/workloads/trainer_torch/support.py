"""Helpers for the trainer tests: a real corpus, trainer command lines, and reading results back."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import torch
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

from workloads.common.uri import S3Uri
from workloads.trainer_torch.checkpoint import storage_options
from workloads.trainer_torch.prepare import prepare

REPO = Path(__file__).resolve().parents[3]
STDLIB = Path(os.__file__).parent
CORPUS_FILES = ("argparse.py", "dataclasses.py", "functools.py", "typing.py", "os.py")
"""Real text: a few of Python's own stdlib modules (~350k bytes)."""

TINY = ("--model", "tiny", "--seq-len", "64", "--micro-batch", "8", "--lr", "3e-3", "--warmup-steps", "5",
        "--log-every", "5", "--eval-batches", "2")
"""Flags shared by the end-to-end runs: the tiny preset at a short sequence length."""


def make_corpus(folder: Path) -> Path:
    """Copy the corpus files into `folder` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in CORPUS_FILES:
        shutil.copy(STDLIB / name, folder / name)
    return folder


def prepared_dataset(bucket: Bucket, folder: Path, *, shard_tokens: int, val_fraction: float) -> str:
    """The corpus copied into `folder`, prepared into `bucket` under data/; returns the manifest URI."""
    prepare(make_corpus(folder), S3Uri.parse(bucket.uri("data")), shard_tokens=shard_tokens, val_fraction=val_fraction)
    return bucket.uri("data/manifest.json")


def subprocess_env(server_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The parent env plus the S3 test server, one BLAS thread per process, and `extra`.

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 is what the image sets too: with torchrun's shared store a
    restarted worker group can read the previous attempt's gloo/NCCL addresses and fail to connect
    (https://github.com/pytorch/pytorch/issues/135712).
    """
    return {**os.environ, **server_env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **extra}


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, read from /proc (torchrun starts each worker in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited while listing
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_job(proc: subprocess.Popen[str]) -> None:
    """SIGKILL torchrun's agent and every worker at once, as losing the node does (or deleting the pod once its
    grace period is over: first it gets SIGTERM), and reap the agent."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate()


def run_group(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `command` and wait; on timeout kill it and every process it started (torchrun's workers too)."""
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_job(proc)
            raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def torchrun(args: list[str], env: dict[str, str], *, nproc: int = 2, max_restarts: int = 0,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the trainer under `python -m torch.distributed.run --standalone` and wait for it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               f"--max-restarts={max_restarts}", "-m", "workloads.trainer_torch", *args]
    return run_group(command, env, timeout)


def events(stdout: str, name: str | None = None) -> list[dict[str, Any]]:
    """The JSON-line log events in `stdout` (optionally only those called `name`)."""
    found = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if name is None or record.get("event") == name:
                found.append(record)
    return found


@dataclass(frozen=True)
class Bucket:
    """A bucket on the S3 test server."""

    name: str

    @classmethod
    def create(cls, prefix: str) -> Bucket:
        """A new bucket named `prefix-<random>` on the test server (env already points at it)."""
        bucket = cls(f"{prefix}-{uuid.uuid4().hex[:8]}")
        boto3.client("s3").create_bucket(Bucket=bucket.name)
        return bucket

    def uri(self, key: str) -> str:
        """`s3://name/key`."""
        return f"s3://{self.name}/{key}"

    def client(self) -> Any:
        """A boto3 client (env already points at the test server)."""
        return boto3.client("s3")

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        """An object's bytes."""
        body: bytes = self.client().get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def write(self, key: str, body: bytes) -> None:
        """Put an object."""
        self.client().put_object(Bucket=self.name, Key=key, Body=body)

    def copy_prefix(self, source: str, target: str) -> None:
        """Server-side copy of every object under `source` to the same names under `target`."""
        for key in self.keys(source):
            self.client().copy_object(Bucket=self.name, Key=target + key[len(source):],
                                      CopySource={"Bucket": self.name, "Key": key})

    def torch_load(self, key: str) -> Any:
        """torch.load an object (weights only)."""
        return torch.load(io.BytesIO(self.read(key)), weights_only=True)

    def checkpoint(self, folder: str) -> dict[str, Any]:
        """The whole DCP checkpoint in `folder` as full tensors: `{"model": ..., "optim": {"state", "param_groups"}}`."""
        reader = FsspecReader(self.uri(folder.rstrip("/")), **storage_options())
        content: dict[str, Any] = _load_state_dict_from_keys(storage_reader=reader)
        return content

    def committed_steps(self, prefix: str) -> list[int]:
        """Steps under a checkpoint prefix that have a COMMIT marker."""
        return sorted(int(k.split("/")[-2][len("step-"):]) for k in self.keys(prefix) if k.endswith("/COMMIT"))
