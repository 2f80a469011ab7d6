"""Flags and `TF_CONFIG` for the TensorFlow trainer, validated before TensorFlow is imported.

Every problem is collected and reported at once, naming the flag or variable, the value and the fix.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.common.s3 import S3Uri, S3UriError

DIGITS = "digits"
"""The `--data` value for scikit-learn's shipped 8x8 digits images."""

SUPPORTED_TASK_TYPES = ("chief", "worker")
"""`TF_CONFIG` task types this trainer runs: MultiWorkerMirroredStrategy has no parameter servers."""


class ConfigError(ValueError):
    """A flag, environment variable or precondition is wrong; the message names it and the fix."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Validated trainer settings."""

    data: str
    """`digits`, or an `s3://BUCKET/PREFIX` of `.npz` image-record shards (see `records`)."""
    epochs: int
    """Total epochs to train, counting epochs restored from a backup. Valid values: >= 1."""
    batch_size: int
    """Global batch size, split across all workers. Valid values: >= the number of workers."""
    lr: float
    """Adam learning rate. Valid values: > 0."""
    backup_dir: Path
    """Local directory for `BackupAndRestore` (an emptyDir or PVC in the cluster)."""
    backup_uri: S3Uri | None
    """Where the chief mirrors the backup at each epoch end. Defaults to None (local backup only)."""
    export: S3Uri
    """Model base path `s3://BUCKET/models/NAME/`; each run adds a numeric version under it."""
    seed: int
    """Seed for the weights, the shuffle and the held-out split."""
    metrics_port: int
    """Port for the chief's Prometheus `/metrics`. Defaults to 0 (off). Valid values: 0..65535."""

    @property
    def model_name(self) -> str:
        """The model name: the last segment of `--export`."""
        return self.export.key.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class WorkerRole:
    """This process's place in the cluster described by `TF_CONFIG`."""

    num_workers: int
    """How many processes train together (chief plus workers)."""
    rank: int
    """0 for the chief, then the workers in order; used to pick this worker's data shard."""
    task_type: str
    """`chief` or `worker`; `worker` with no `TF_CONFIG`."""
    task_index: int
    """The index of this task within its type."""
    distributed: bool
    """True when `TF_CONFIG` is set, so MultiWorkerMirroredStrategy is used."""

    @property
    def is_chief(self) -> bool:
        """True for the process that writes backups, metrics and the export."""
        return self.rank == 0


def build_parser() -> argparse.ArgumentParser:
    """The trainer's command-line flags."""
    parser = argparse.ArgumentParser(
        prog="python -m workloads.trainer_tf",
        description="Train a small Keras CNN on images under MultiWorkerMirroredStrategy and export it for TF Serving.",
    )
    parser.add_argument("--data", default=DIGITS, help="'digits' or s3://BUCKET/PREFIX of .npz image-record shards")
    parser.add_argument("--epochs", type=int, default=10, help="total epochs, including restored ones")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size across all workers")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--backup-dir", type=Path, required=True, help="local BackupAndRestore directory")
    parser.add_argument("--backup-uri", default=None, help="optional s3:// prefix the chief mirrors backups to")
    parser.add_argument("--export", required=True, help="model base path s3://BUCKET/models/NAME/")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and the held-out split")
    parser.add_argument("--metrics-port", type=int, default=0, help="chief's Prometheus port; 0 turns it off")
    return parser


def _parse_uri(value: str, flag: str, problems: list[str]) -> S3Uri | None:
    try:
        return S3Uri.parse(value, flag=flag)
    except S3UriError as exc:
        problems.append(str(exc))
        return None


def _check_export(uri: S3Uri, problems: list[str]) -> None:
    name = uri.key.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        problems.append(f"--export: expected s3://BUCKET/models/NAME/ with a model NAME (got '{uri}')")
    elif name.isdigit():
        # TF Serving reads numeric children of the base path as versions, so a numeric NAME is ambiguous.
        problems.append(f"--export: the model NAME must not be a number, TF Serving reads those as versions "
                        f"(got '{uri}')")


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse and validate flags; raise `ConfigError` listing every problem."""
    args = build_parser().parse_args(argv)
    problems: list[str] = []
    if args.data != DIGITS and not args.data.startswith("s3://"):
        problems.append(f"--data: expected '{DIGITS}' or an s3://BUCKET/PREFIX of .npz image-record shards "
                        f"(got {args.data!r})")
    elif args.data != DIGITS:
        _parse_uri(args.data, "--data", problems)
    if args.epochs < 1:
        problems.append(f"--epochs: must be at least 1 (got {args.epochs})")
    if args.batch_size < 1:
        problems.append(f"--batch-size: must be at least 1 (got {args.batch_size})")
    if not args.lr > 0:
        problems.append(f"--lr: must be greater than 0 (got {args.lr})")
    if not 0 <= args.metrics_port <= 65535:
        problems.append(f"--metrics-port: must be 0 (off) or a TCP port 1..65535 (got {args.metrics_port})")
    if args.backup_dir.exists() and not args.backup_dir.is_dir():
        problems.append(f"--backup-dir: must be a directory path (got '{args.backup_dir}')")
    backup_uri = _parse_uri(args.backup_uri, "--backup-uri", problems) if args.backup_uri else None
    export = _parse_uri(args.export, "--export", problems)
    if export is not None:
        _check_export(export, problems)
    if problems or export is None:
        raise ConfigError("; ".join(problems))
    return TrainConfig(
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        backup_dir=args.backup_dir,
        backup_uri=backup_uri,
        export=export,
        seed=args.seed,
        metrics_port=args.metrics_port,
    )


def _check_cluster(cluster: Any) -> dict[str, list[str]]:
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError('TF_CONFIG: "cluster" must be a non-empty object of task type to address list '
                          f'(got {cluster!r})')
    for task_type, addresses in cluster.items():
        if task_type not in SUPPORTED_TASK_TYPES:
            raise ConfigError(f'TF_CONFIG: cluster task type {task_type!r} is not supported; '
                              f'MultiWorkerMirroredStrategy uses {list(SUPPORTED_TASK_TYPES)}')
        if not isinstance(addresses, list) or not addresses or not all(
            isinstance(a, str) and ":" in a for a in addresses
        ):
            raise ConfigError(f'TF_CONFIG: cluster["{task_type}"] must be a non-empty list of "host:port" '
                              f'strings (got {addresses!r})')
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f'TF_CONFIG: cluster["chief"] must have at most one address (got {cluster["chief"]!r})')
    return cluster


def parse_tf_config(raw: str | None) -> WorkerRole:
    """This process's role from the `TF_CONFIG` JSON; a single worker when it is unset or empty."""
    if raw is None or not raw.strip():
        return WorkerRole(num_workers=1, rank=0, task_type="worker", task_index=0, distributed=False)
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(spec, dict):
        raise ConfigError(f'TF_CONFIG: expected a JSON object with "cluster" and "task" (got {type(spec).__name__})')
    if "cluster" not in spec or "task" not in spec:
        missing = [key for key in ("cluster", "task") if key not in spec]
        raise ConfigError(f'TF_CONFIG: missing {", ".join(repr(k) for k in missing)}; expected '
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}')
    cluster = _check_cluster(spec["cluster"])
    task = spec["task"]
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(f'TF_CONFIG: "task" must be an object with "type" and "index" (got {task!r})')
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise ConfigError(f'TF_CONFIG: task type {task_type!r} is not in cluster (has {sorted(cluster)})')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise ConfigError(f'TF_CONFIG: task index {index!r} is out of range for {len(cluster[task_type])} '
                          f'{task_type!r} task(s)')
    chiefs = len(cluster.get("chief", []))
    rank = index if task_type == "chief" else chiefs + index
    num_workers = chiefs + len(cluster.get("worker", []))
    return WorkerRole(num_workers=num_workers, rank=rank, task_type=task_type, task_index=index, distributed=True)


def check_batch_size(config: TrainConfig, role: WorkerRole) -> None:
    """Each worker needs at least one example per step of the global batch."""
    if config.batch_size < role.num_workers:
        raise ConfigError(f"--batch-size: must be at least the number of workers in TF_CONFIG "
                          f"({role.num_workers}) so every worker gets examples (got {config.batch_size})")
