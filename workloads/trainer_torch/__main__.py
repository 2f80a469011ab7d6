"""Entry point: `torchrun --nproc_per_node N -m workloads.trainer_torch --data s3://... --checkpoints s3://...`.

Exit codes: 0 done; 2 invalid flags or data, checkpoint storage that fails (`CheckpointError`), or a run whose
memory estimate exceeds the device (each problem on stderr, naming its flag and the fix);
143 stopped on SIGTERM with a committed checkpoint; 142 the SIGTERM grace period ran out; 1 a collective waited
longer than `--collective-timeout` for another rank (a hung or dead rank: the job fails and its restart policy
decides), or any other failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import torch
from botocore.exceptions import ClientError

from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.common.uri import S3UriError
from workloads.common.vocab import COLLECTIVE_TIMEOUT_FLAG
from workloads.trainer_torch import distributed
from workloads.trainer_torch.checkpoint import CheckpointError
from workloads.trainer_torch.config import TrainSettings, parse_config
from workloads.trainer_torch.data import DataError
from workloads.trainer_torch.train import Trainer

EXIT_COLLECTIVE_TIMEOUT = 1
"""A collective outlived --collective-timeout: a failure like any other, for the job's restart policy to retry."""


def _fail(rank: int, errors: list[str]) -> int:
    for message in errors:
        print(f"error: {message}", file=sys.stderr, flush=True)
    log_event("error", stream=sys.stderr, rank=rank, errors=errors)
    return 2


def _collective_timeout(rank: int, timeout_s: int, exc: RuntimeError) -> None:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"error: {COLLECTIVE_TIMEOUT_FLAG}: rank {rank} waited more than {timeout_s} s for the other ranks in a "
          f"collective ({detail}); a rank is hung or dead (see its log), or slower than that, then raise "
          f"{COLLECTIVE_TIMEOUT_FLAG}", file=sys.stderr, flush=True)
    log_event("collective_timeout", stream=sys.stderr, rank=rank, timeout_s=timeout_s, error=detail)
    sys.stderr.flush()


def _memory_problem(cfg: TrainSettings, device: torch.device) -> str | None:
    """The up-front fit check: GPUs train in bf16 within their total memory; CPUs are checked only on request."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return cfg.memory_problem(f"{device} ({props.name})", props.total_memory, "bf16")
    return cfg.memory_problem(str(device), None, "fp32")


def main(argv: Sequence[str] | None = None) -> int:
    """Validate flags, join the process group, train; returns the exit code."""
    ctx = distributed.context_from_env()
    try:
        cfg = parse_config(argv, world_size=ctx.world_size)
    except SettingsError as exc:
        return _fail(ctx.rank, exc.errors)
    problem = _memory_problem(cfg, ctx.device)
    if problem:
        return _fail(ctx.rank, [problem])
    try:
        distributed.init(ctx, cfg.collective_timeout)
        return Trainer(cfg, ctx).run()
    except (DataError, CheckpointError, S3UriError) as exc:
        return _fail(ctx.rank, [str(exc)])
    except ClientError as exc:
        return _fail(ctx.rank, [f"S3 request failed ({exc}); check --data, --checkpoints, --export and credentials"])
    except RuntimeError as exc:
        if not distributed.is_collective_timeout(exc):
            raise
        _collective_timeout(ctx.rank, cfg.collective_timeout, exc)
        # The group is broken: destroying it can block or abort the process (gloo's pending work, seen as SIGABRT
        # under load), so leave at once with the documented code, skipping the teardown in `finally`.
        sys.stdout.flush()
        os._exit(EXIT_COLLECTIVE_TIMEOUT)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
