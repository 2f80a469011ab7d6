"""Checkpoints in S3 with an atomic commit marker.

Layout under `--checkpoints`:

    step-000000100/model.pt            rank 0: model state_dict
    step-000000100/optim.pt            rank 0: optimizer + LR scheduler state
    step-000000100/state.json          rank 0: step, data position, run facts
    step-000000100/rng-rank00000.pt    every rank: its own RNG states
    step-000000100/COMMIT              rank 0, LAST: every file's sha256 and size

Every rank uploads its files, then an all-gather (which is also the barrier) tells rank 0 that
all uploads finished and what their checksums are; only then does rank 0 write `COMMIT`.
A step folder without `COMMIT` does not exist for resume, so a crash at any point leaves either
the previous checkpoint or the new one, never half of one. Files are loaded with
`weights_only=True`, so a tampered checkpoint cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import torch
from botocore.exceptions import ClientError

from workloads.common import s3
from workloads.common.hashing import sha256_file
from workloads.common.logs import log_event
from workloads.common.uri import S3Uri
from workloads.trainer_torch import distributed
from workloads.trainer_torch.distributed import DistContext

COMMIT: Final = "COMMIT"
MODEL_FILE: Final = "model.pt"
OPTIM_FILE: Final = "optim.pt"
STATE_FILE: Final = "state.json"
SHARED_FILES: Final = (MODEL_FILE, OPTIM_FILE, STATE_FILE)
_STEP_KEY = re.compile(r"^step-(\d{9})/(.+)$")


class CheckpointError(RuntimeError):
    """A committed checkpoint is unusable or does not match the run; the message names the flag."""


def rng_file(rank: int) -> str:
    """Name of one rank's RNG file."""
    return f"rng-rank{rank:05d}.pt"


def step_name(step: int) -> str:
    """Folder name of the checkpoint at `step` (zero-padded so keys sort by step)."""
    return f"step-{step:09d}"


class _HashingWriter:
    """A write-only file wrapper that hashes bytes as torch.save streams them (no second read)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def save_torch(obj: Any, path: Path) -> dict[str, Any]:
    """torch.save `obj` to `path`; returns its sha256 and size."""
    with path.open("wb") as handle:
        writer = _HashingWriter(handle)
        torch.save(obj, writer)  # type: ignore[arg-type]  # only write/flush are needed
    return {"sha256": writer.digest.hexdigest(), "bytes": writer.size}


@dataclass(frozen=True)
class Listing:
    """Step folders found under the checkpoint prefix."""

    committed: list[int]
    """Steps with a COMMIT marker, ascending."""
    partial: list[int]
    """Steps without one (crashed or in-flight saves), ascending."""


@dataclass(frozen=True)
class Loaded:
    """A checkpoint read back into memory."""

    step: int
    """The step it was taken after."""
    model: dict[str, torch.Tensor]
    """Model state_dict."""
    optim: dict[str, Any]
    """`{"optimizer": ..., "scheduler": ...}` state dicts."""
    state: dict[str, Any]
    """The contents of state.json."""
    rng: dict[str, Any] | None
    """This rank's RNG states, or None when the checkpoint had fewer ranks."""


class Checkpointer:
    """Saves, finds, loads and prunes checkpoints under one S3 prefix. Every rank holds one."""

    def __init__(self, root: S3Uri, local_dir: Path, ctx: DistContext, *, keep_last: int,
                 client: Any | None = None) -> None:
        self.root = root
        self.ctx = ctx
        self.keep_last = keep_last
        self.client = client or s3.client()
        run_key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        self.stage_dir = local_dir / "checkpoints" / run_key

    def step_uri(self, step: int, name: str = "") -> S3Uri:
        """URI of the step folder, or of one file in it."""
        return self.root.join(step_name(step), name)

    def _prefix(self) -> str:
        return self.root.key.rstrip("/") + "/" if self.root.key.strip("/") else ""

    def listing(self) -> Listing:
        """Committed and partial steps under the prefix."""
        prefix = self._prefix()
        files: dict[int, set[str]] = {}
        try:
            keys = s3.list_keys(S3Uri(self.root.bucket, prefix), self.client)
        except ClientError as exc:
            raise CheckpointError(f"--checkpoints: cannot list {self.root} ({exc}); check the bucket and the "
                                  "role's s3:ListBucket permission") from exc
        for key in keys:
            match = _STEP_KEY.match(key[len(prefix):])
            if match:
                files.setdefault(int(match.group(1)), set()).add(match.group(2))
        committed = sorted(step for step, names in files.items() if COMMIT in names)
        partial = sorted(step for step, names in files.items() if COMMIT not in names)
        return Listing(committed=committed, partial=partial)

    def latest(self) -> int | None:
        """The newest committed step, decided by rank 0 and shared with every rank."""
        step = None
        if self.ctx.is_main:
            committed = self.listing().committed
            step = committed[-1] if committed else None
        result: int | None = distributed.broadcast_object(step)
        return result

    def save(self, step: int, *, model: dict[str, torch.Tensor], optim: dict[str, Any], state: dict[str, Any],
             rng: dict[str, Any]) -> float:
        """Write and upload this rank's files, then (rank 0) commit and prune. Returns seconds taken."""
        started = time.perf_counter()
        stage = self.stage_dir / f"save-{step_name(step)}"
        stage.mkdir(parents=True, exist_ok=True)
        written: dict[str, dict[str, Any]] = {}
        # Two threads: one file uploads while the next is serialized; boto3 parallelises the parts.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ckpt-upload") as pool:
            uploads: list[Future[None]] = []

            def put(name: str, write: Any) -> None:
                path = stage / name
                written[name] = write(path)
                uploads.append(pool.submit(self._upload, path, self.step_uri(step, name)))

            if self.ctx.is_main:
                put(MODEL_FILE, lambda p: save_torch(model, p))
                put(OPTIM_FILE, lambda p: save_torch(optim, p))
                put(STATE_FILE, lambda p: _write_json(state, p))
            put(rng_file(self.ctx.rank), lambda p: save_torch(rng, p))
            for upload in uploads:
                upload.result()
        # The all-gather doubles as the barrier: when it returns, every rank's files are in S3.
        manifest: dict[str, dict[str, Any]] = {}
        for files in distributed.all_gather_object(written):
            manifest.update(files)
        if self.ctx.is_main:
            marker = {"step": step, "files": manifest, "committed_at": round(time.time(), 3)}
            s3.put_bytes(self.step_uri(step, COMMIT), json.dumps(marker, indent=2, sort_keys=True).encode(),
                         self.client)
            self.prune()
        shutil.rmtree(stage, ignore_errors=True)
        return time.perf_counter() - started

    def _upload(self, path: Path, uri: S3Uri) -> None:
        s3.upload_file(path, uri, self.client)
        path.unlink()

    def load(self, step: int, device: torch.device) -> Loaded:
        """Download (once per node) and verify the checkpoint at `step`, then read it on every rank."""
        marker = json.loads(s3.get_bytes(self.step_uri(step, COMMIT), self.client))
        files: dict[str, dict[str, Any]] = marker["files"]
        stage = self.stage_dir / f"load-{step_name(step)}"
        if self.ctx.is_local_main:
            for name in SHARED_FILES:
                self._fetch(step, name, files, stage)
        distributed.barrier()
        own = rng_file(self.ctx.rank)
        rng = None
        if own in files:
            self._fetch(step, own, files, stage)
            rng = torch.load(stage / own, weights_only=True)
        loaded = Loaded(
            step=step,
            model=torch.load(stage / MODEL_FILE, map_location=device, weights_only=True),
            optim=torch.load(stage / OPTIM_FILE, map_location=device, weights_only=True),
            state=json.loads((stage / STATE_FILE).read_text()),
            rng=rng,
        )
        distributed.barrier()
        if self.ctx.is_local_main:
            shutil.rmtree(stage, ignore_errors=True)
        return loaded

    def _fetch(self, step: int, name: str, files: dict[str, dict[str, Any]], stage: Path) -> None:
        uri = self.step_uri(step, name)
        if name not in files:
            raise CheckpointError(f"--checkpoints: {self.step_uri(step, COMMIT)} does not list {name}")
        s3.download_file(uri, stage / name, self.client)
        actual = sha256_file(stage / name)
        if actual != files[name]["sha256"]:
            raise CheckpointError(f"--checkpoints: {uri} failed its checksum (COMMIT says {files[name]['sha256']}, "
                                  f"got {actual}); delete {self.step_uri(step, COMMIT)} to fall back to an older one")

    def prune(self) -> None:
        """Keep the newest `keep_last` committed checkpoints; drop older ones and stale partial folders."""
        listing = self.listing()
        if not listing.committed:
            return
        newest = listing.committed[-1]
        doomed = listing.committed[: -self.keep_last] + [s for s in listing.partial if s < newest]
        for step in doomed:
            # The marker goes first: a checkpoint half-deleted by a crash is then merely partial.
            s3.retrying(self.client.delete_object)(Bucket=self.root.bucket, Key=self.step_uri(step, COMMIT).key)
            s3.delete_prefix(S3Uri(self.root.bucket, self.step_uri(step).key + "/"), self.client)
        if doomed:
            log_event("checkpoints_pruned", steps=doomed, kept=listing.committed[-self.keep_last:])


def _write_json(data: dict[str, Any], path: Path) -> dict[str, Any]:
    payload = json.dumps(data, indent=2, sort_keys=True).encode()
    path.write_bytes(payload)
    return {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
