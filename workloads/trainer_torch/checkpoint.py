"""Sharded checkpoints on S3 (torch.distributed.checkpoint) with an atomic commit marker.

Layout under `--checkpoints`:

    step-000000100/.metadata            DCP: where each tensor slice lives
    step-000000100/__0_0.distcp ...     DCP: rank 0's shards of model and optimizer state (UPLOAD_THREADS files)
    step-000000100/state.json           rank 0: step, data position, LR scheduler, run facts
    step-000000100/rng-rank00000.pt     every rank: its own RNG states
    step-000000100/COMMIT               rank 0, LAST: every file's size

DCP writes straight to S3 through torch's `FsspecWriter` over s3fs. Its save ends by gathering
every rank's write results on rank 0, which then writes `.metadata`; so when the save returns
on rank 0, every rank's shards (and its RNG file, written before) are in S3, and only then
does rank 0 write `COMMIT`. A step folder without `COMMIT` does not exist for resume, so a
crash at any point (an async upload included) leaves the previous checkpoint as the newest.
Before writing a step, rank 0 empties its folder: a crashed save's files (another world size's
shards or RNG files) would otherwise be listed in the new `COMMIT`.

Storage failures (S3 errors, s3fs's OSErrors, DCP's CheckpointException) surface as
`CheckpointError` naming `--checkpoints`, which the entry point reports and exits 2 on. A background
save's failure is logged (`checkpoint_failed`) as it happens and raised by the next save or `wait`.

Resharding: DCP records each tensor's global shape and the slice each file holds, so a
checkpoint loads at any world size, under ddp or fsdp. The data position (`consumed`) counts
windows of the one global sample stream (`data.rank_start`), which does not depend on the
world size; a resumed run continues that stream with its own ranks. RNG states are per rank:
a rank with no file in the checkpoint reseeds from (seed + step, rank).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from botocore.exceptions import BotoCoreError, ClientError
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_saver import AsyncSaveResponse

from workloads.common import s3
from workloads.common.logs import log_event
from workloads.common.uri import S3Uri
from workloads.trainer_torch import distributed
from workloads.trainer_torch.distributed import DistContext

COMMIT: Final = "COMMIT"
"""The marker rank 0 writes last (JSON: step, every file's size); only folders holding it are checkpoints."""
STATE_FILE: Final = "state.json"
"""Rank 0's JSON: step, data position, LR scheduler and the run facts a resume checks."""
DCP_METADATA: Final = ".metadata"
"""The file DCP writes last on the coordinator; its presence marks the sharded format."""
UPLOAD_THREADS: Final = 4
"""Files (and parallel S3 uploads) per rank and checkpoint: one stream per rank leaves most bandwidth unused."""
_STEP_KEY = re.compile(r"^step-(\d{9})/(.+)$")


class CheckpointError(RuntimeError):
    """Checkpoint storage failed, or a checkpoint is unusable or does not match the run; names the flag."""


_STORAGE_ERRORS = (CheckpointException, OSError, ClientError, BotoCoreError)
"""What S3 (boto3), s3fs and DCP raise when storage fails; CheckpointException is a BaseException."""


def _cause(exc: BaseException) -> str:
    """The first underlying error of a DCP CheckpointException (its own text is every rank's traceback)."""
    if isinstance(exc, CheckpointException) and exc.failures:
        rank, (first, _) = min(exc.failures.items(), key=lambda item: item[0])
        return f"rank {rank}: {type(first).__name__}: {first}"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _storage(action: str, uri: S3Uri) -> Iterator[None]:
    """Turn a storage failure inside into a CheckpointError naming --checkpoints, `uri` and the fix."""
    try:
        yield
    except _STORAGE_ERRORS as exc:
        raise CheckpointError(
            f"--checkpoints: {action} {uri} failed ({_cause(exc)}); check that the bucket exists and that the "
            "credentials may list, read and write it (s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject), "
            "or point --checkpoints at another prefix") from exc


def rng_file(rank: int) -> str:
    """Name of one rank's RNG file."""
    return f"rng-rank{rank:05d}.pt"


def step_name(step: int) -> str:
    """Folder name of the checkpoint at `step` (zero-padded so keys sort by step)."""
    return f"step-{step:09d}"


def storage_options() -> dict[str, Any]:
    """s3fs options for DCP: the endpoint from `AWS_ENDPOINT_URL` (MinIO, the test server), else AWS's own."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Listing:
    """Step folders found under the checkpoint prefix."""

    committed: list[int]
    """Steps with a COMMIT marker, ascending."""
    partial: list[int]
    """Steps without one (crashed or in-flight saves), ascending."""


class Checkpointer:
    """Saves, finds, loads and prunes checkpoints under one S3 prefix. Every rank holds one."""

    def __init__(self, root: S3Uri, ctx: DistContext, *, keep_last: int, async_save: bool = False,
                 client: Any | None = None, timeout_s: int | None = None,
                 on_commit: Callable[[float], None] | None = None) -> None:
        """`on_commit`, on rank 0: called with the seconds from a save's start to its COMMIT, once that is written
        (for an async save, from the background thread after the upload)."""
        self.root = root
        self.on_commit = on_commit
        self.ctx = ctx
        self.keep_last = keep_last
        self.client = client or s3.client()
        self._pending: Future[None] | None = None
        self._pending_step = 0
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="ckpt-commit") if async_save else None
        # Background saves run collectives from another thread: they get their own gloo group, so they never
        # interleave with the training loop's collectives (and NCCL-only groups cannot run them at all). They wait
        # for peers as long as the loop's do (--collective-timeout; None: torch's default), not torch's 30 minutes.
        timeout = timedelta(seconds=timeout_s) if timeout_s is not None else None
        self._group = dist.new_group(backend="gloo", timeout=timeout) if async_save and distributed.active() else None

    def step_uri(self, step: int, name: str = "") -> S3Uri:
        """URI of the step folder, or of one file in it."""
        return self.root.join(step_name(step), name)

    def _prefix(self) -> str:
        return self.root.key.rstrip("/") + "/" if self.root.key.strip("/") else ""

    def _objects(self, prefix: str) -> dict[str, int]:
        """Size of every object under `prefix`, by key."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.root.bucket, Prefix=prefix)
            return {obj["Key"]: int(obj["Size"]) for page in pages for obj in page.get("Contents", [])}
        except ClientError as exc:
            raise CheckpointError(f"--checkpoints: cannot list {self.root} ({exc}); check the bucket and the "
                                  "role's s3:ListBucket permission") from exc

    def listing(self) -> Listing:
        """Committed and partial steps under the prefix."""
        prefix = self._prefix()
        files: dict[int, set[str]] = {}
        for key in self._objects(prefix):
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

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, state: dict[str, Any],
             rng: dict[str, Any]) -> float:
        """Write this rank's shards and files; rank 0 commits once all are in S3. Returns seconds the caller waited.

        Synchronous saves commit before returning. Async saves return once the state is copied to host
        memory; the upload and the commit run in the background, and the next save (or `wait`) waits for them.
        """
        started = time.perf_counter()
        self.wait()
        with _storage("saving", self.step_uri(step)):
            self._save(step, model, optimizer, state, rng, started)
        return time.perf_counter() - started

    def _save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
              rng: dict[str, Any], started: float) -> None:
        if self.ctx.is_main:
            self._delete_step(step)  # a crashed save's files must not reach this save's COMMIT
        distributed.barrier()
        s3.put_bytes(self.step_uri(step, rng_file(self.ctx.rank)), _torch_bytes(rng), self.client)
        if self.ctx.is_main:
            s3.put_bytes(self.step_uri(step, STATE_FILE), json.dumps(state, indent=2, sort_keys=True).encode(),
                         self.client)
        model_state, optim_state = get_state_dict(model, optimizer)
        # S3 objects are durable once written; fsync does not apply to them.
        writer = FsspecWriter(str(self.step_uri(step)), sync_files=False, thread_count=UPLOAD_THREADS,
                              **storage_options())
        content = {"model": model_state, "optim": optim_state}
        if self._committer is None:
            dcp.save(content, storage_writer=writer, no_dist=not distributed.active())
            self._commit(step, started)
        else:
            upload = dcp.async_save(content, storage_writer=writer, process_group=self._group,
                                    no_dist=not distributed.active())
            if isinstance(upload, AsyncSaveResponse):  # only with a zero-overhead stager, which we do not pass
                upload = upload.upload_completion
            self._pending = self._committer.submit(self._commit_after, upload, step, time.perf_counter())
            self._pending_step = step

    def _commit_after(self, upload: Future[Any], step: int, started: float) -> None:
        try:
            upload.result()
            self._commit(step, started)
        except BaseException as exc:
            # Logged now, not only when the next save (maybe hours later) re-raises it from `wait`.
            log_event("checkpoint_failed", rank=self.ctx.rank, step=step, error=_cause(exc))
            raise

    def _commit(self, step: int, started: float) -> None:
        """Rank 0: list the step's files with their sizes into COMMIT, then prune."""
        if not self.ctx.is_main:
            return
        folder = self.step_uri(step).key + "/"
        files = {key[len(folder):]: {"bytes": size} for key, size in self._objects(folder).items()}
        marker = {"step": step, "files": files, "committed_at": round(time.time(), 3)}
        s3.put_bytes(self.step_uri(step, COMMIT), json.dumps(marker, indent=2, sort_keys=True).encode(), self.client)
        seconds = time.perf_counter() - started
        log_event("checkpoint_committed", step=step, upload_s=round(seconds, 3), uri=str(self.step_uri(step)))
        if self.on_commit is not None:
            self.on_commit(seconds)
        self.prune()

    def wait(self) -> None:
        """Block until the background save in flight (if any) is uploaded and committed; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            with _storage("saving", self.step_uri(self._pending_step)):
                pending.result()

    def close(self) -> None:
        """Finish the background save in flight, then release its gloo group and thread; every rank calls it.

        Runs from `finally`, possibly while another error unwinds: the save's own error is logged, not raised.
        """
        try:
            self.wait()
        except CheckpointError as exc:
            log_event("checkpoint_failed", rank=self.ctx.rank, error=str(exc))
        if self._committer is not None:
            self._committer.shutdown(wait=True, cancel_futures=True)
            self._committer = None
        if self._group is not None:
            dist.destroy_process_group(self._group)
            self._group = None

    def read_state(self, step: int) -> dict[str, Any]:
        """The state.json of the committed checkpoint at `step` (to check it fits the run before loading)."""
        with _storage("reading", self.step_uri(step, STATE_FILE)):
            state: dict[str, Any] = json.loads(s3.get_bytes(self.step_uri(step, STATE_FILE), self.client))
        return state

    def load(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Verify the checkpoint at `step` against its COMMIT and restore model and optimizer in place.

        Returns this rank's RNG states, or None when the checkpoint was saved by fewer ranks.
        """
        with _storage("loading", self.step_uri(step)):
            return self._load(step, model, optimizer)

    def _load(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        marker = json.loads(s3.get_bytes(self.step_uri(step, COMMIT), self.client))
        files: dict[str, dict[str, Any]] = marker["files"]
        if DCP_METADATA not in files:
            raise CheckpointError(f"--checkpoints: {self.step_uri(step)} is in the pre-DCP format (one model.pt); "
                                  "this trainer reads only sharded checkpoints: start a new --checkpoints prefix")
        problem = self._verify(step, files) if self.ctx.is_main else None
        problem = distributed.broadcast_object(problem)
        if problem:
            raise CheckpointError(problem)
        own = rng_file(self.ctx.rank)
        rng = None
        if own in files:
            rng = torch.load(io.BytesIO(s3.get_bytes(self.step_uri(step, own), self.client)), weights_only=True)
        model_state, optim_state = get_state_dict(model, optimizer)
        content: dict[str, Any] = {"model": model_state, "optim": optim_state}
        reader = FsspecReader(str(self.step_uri(step)), **storage_options())
        dcp.load(content, storage_reader=reader, no_dist=not distributed.active())
        set_state_dict(model, optimizer, model_state_dict=content["model"], optim_state_dict=content["optim"])
        return rng

    def _verify(self, step: int, files: dict[str, dict[str, Any]]) -> str | None:
        """A message naming the first file that is missing or differs in size from COMMIT, else None."""
        folder = self.step_uri(step).key + "/"
        found = {key[len(folder):]: size for key, size in self._objects(folder).items()}
        for name, entry in sorted(files.items()):
            if found.get(name) != entry["bytes"]:
                return (f"--checkpoints: {self.step_uri(step, name)} does not match its COMMIT (COMMIT says "
                        f"{entry['bytes']} bytes, found {found.get(name)}); delete {self.step_uri(step, COMMIT)} "
                        "to fall back to an older checkpoint")
        return None

    def prune(self) -> None:
        """Keep the newest `keep_last` committed checkpoints; drop older ones and stale partial folders."""
        listing = self.listing()
        if not listing.committed:
            return
        newest = listing.committed[-1]
        doomed = listing.committed[: -self.keep_last] + [s for s in listing.partial if s < newest]
        for step in doomed:
            self._delete_step(step)
        if doomed:
            log_event("checkpoints_pruned", steps=doomed, kept=listing.committed[-self.keep_last:])

    def _delete_step(self, step: int) -> None:
        """Delete one step folder, its COMMIT first: a folder half-deleted by a crash is then merely partial."""
        s3.retrying(self.client.delete_object)(Bucket=self.root.bucket, Key=self.step_uri(step, COMMIT).key)
        s3.delete_prefix(S3Uri(self.root.bucket, self.step_uri(step).key + "/"), self.client)
