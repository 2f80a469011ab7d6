"""Settings and `TF_CONFIG` for the TensorFlow trainer, validated before TensorFlow is imported.

Built on `workloads.common.settings`: every field is a flag (`--batch-size`) and a variable
(`MODELPLANE_TF_TRAIN_BATCH_SIZE`); a flag wins over the env. Every problem is collected and reported
at once as one `SettingsError`, naming the flag or variable, the value and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from workloads.common.settings import S3UriSetting, SettingsError, WorkloadSettings
from workloads.common.uri import S3Uri, s3_uri_problem
from workloads.common.vocab import TF_TRAIN_ENV_PREFIX

DIGITS = "digits"
"""The `--data` value for scikit-learn's shipped 8x8 digits images."""

SUPPORTED_TASK_TYPES = ("chief", "worker")
"""`TF_CONFIG` task types this trainer runs: MultiWorkerMirroredStrategy has no parameter servers."""


class TrainSettings(WorkloadSettings):
    """Train a small Keras CNN on images under MultiWorkerMirroredStrategy and export it for TF Serving."""

    env_prefix: ClassVar[str] = TF_TRAIN_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.trainer_tf"

    data: str = DIGITS
    """`digits` (scikit-learn's 8x8 images), or an s3://BUCKET/PREFIX of `.npz` image-record shards (see `records`).
    Defaults to digits."""
    epochs: int = Field(10, ge=1)
    """Total epochs to train, counting epochs restored from a backup. Defaults to 10."""
    batch_size: int = Field(64, ge=1)
    """Global batch size, split across all workers; at least the number of workers. Defaults to 64."""
    lr: float = Field(3e-3, gt=0)
    """Adam learning rate. Defaults to 3e-3."""
    backup_dir: Path
    """Local directory for `BackupAndRestore` (an emptyDir or PVC in the cluster). Required."""
    backup_uri: S3UriSetting | None = None
    """s3:// prefix the chief mirrors the backup to at each epoch end. Defaults to none (local backup only)."""
    export: S3UriSetting
    """Model base path s3://BUCKET/models/NAME/; each run adds a numeric version under it. Required."""
    seed: int = 0
    """Seed for the weights, the shuffle and the held-out split. Defaults to 0."""
    metrics_port: int = Field(0, ge=0, le=65535)
    """Port of the chief's Prometheus /metrics; 0 turns it off. Defaults to 0."""
    collective_timeout: int = Field(1800, ge=1)
    """Seconds a training step may take, waiting in its gradient all-reduce for the other workers, before this worker
    exits 1, so a hung worker fails the job instead of holding the others; must exceed the longest wait of one worker
    for another in a step (the first step traces the model; the step after an epoch end waits for the chief's backup
    upload). Defaults to 1800."""

    @field_validator("data")
    @classmethod
    def _check_data(cls, value: str) -> str:
        if value == DIGITS:
            return value
        if not value.startswith("s3://"):
            raise ValueError(f"expected '{DIGITS}' or an s3://BUCKET/PREFIX of .npz image-record shards")
        problem = s3_uri_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("backup_dir")
    @classmethod
    def _check_backup_dir(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError("must be a directory path")
        return value

    @field_validator("export")
    @classmethod
    def _check_export(cls, value: S3Uri) -> S3Uri:
        name = value.key.rstrip("/").rsplit("/", 1)[-1]
        if not name:
            raise ValueError("expected s3://BUCKET/models/NAME/ with a model NAME")
        if name.isdigit():
            # TF Serving reads numeric children of the base path as versions, so a numeric NAME is ambiguous.
            raise ValueError("the model NAME must not be a number, TF Serving reads those as versions")
        return value

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


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> TrainSettings:
    """Settings from flags over `MODELPLANE_TF_TRAIN_*` env; raises `SettingsError` listing every problem."""
    return TrainSettings.parse(argv, environ)


def _check_cluster(cluster: Any) -> dict[str, list[str]]:
    if not isinstance(cluster, dict) or not cluster:
        raise SettingsError('TF_CONFIG: "cluster" must be a non-empty object of task type to address list '
                          f'(got {cluster!r})')
    for task_type, addresses in cluster.items():
        if task_type not in SUPPORTED_TASK_TYPES:
            raise SettingsError(f'TF_CONFIG: cluster task type {task_type!r} is not supported; '
                              f'MultiWorkerMirroredStrategy uses {list(SUPPORTED_TASK_TYPES)}')
        if not isinstance(addresses, list) or not addresses or not all(
            isinstance(a, str) and ":" in a for a in addresses
        ):
            raise SettingsError(f'TF_CONFIG: cluster["{task_type}"] must be a non-empty list of "host:port" '
                              f'strings (got {addresses!r})')
    if len(cluster.get("chief", [])) > 1:
        raise SettingsError(f'TF_CONFIG: cluster["chief"] must have at most one address (got {cluster["chief"]!r})')
    return cluster


def parse_tf_config(raw: str | None) -> WorkerRole:
    """This process's role from the `TF_CONFIG` JSON; a single worker when it is unset or empty."""
    if raw is None or not raw.strip():
        return WorkerRole(num_workers=1, rank=0, task_type="worker", task_index=0, distributed=False)
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"TF_CONFIG: not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(spec, dict):
        raise SettingsError(f'TF_CONFIG: expected a JSON object with "cluster" and "task" (got {type(spec).__name__})')
    if "cluster" not in spec or "task" not in spec:
        missing = [key for key in ("cluster", "task") if key not in spec]
        raise SettingsError(f'TF_CONFIG: missing {", ".join(repr(k) for k in missing)}; expected '
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}')
    cluster = _check_cluster(spec["cluster"])
    task = spec["task"]
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise SettingsError(f'TF_CONFIG: "task" must be an object with "type" and "index" (got {task!r})')
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise SettingsError(f'TF_CONFIG: task type {task_type!r} is not in cluster (has {sorted(cluster)})')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise SettingsError(f'TF_CONFIG: task index {index!r} is out of range for {len(cluster[task_type])} '
                          f'{task_type!r} task(s)')
    chiefs = len(cluster.get("chief", []))
    rank = index if task_type == "chief" else chiefs + index
    num_workers = chiefs + len(cluster.get("worker", []))
    return WorkerRole(num_workers=num_workers, rank=rank, task_type=task_type, task_index=index, distributed=True)


def check_batch_size(config: TrainSettings, role: WorkerRole) -> None:
    """Each worker needs at least one example per step of the global batch."""
    if config.batch_size < role.num_workers:
        raise SettingsError(f"--batch-size: must be at least the number of workers in TF_CONFIG "
                          f"({role.num_workers}) so every worker gets examples (got {config.batch_size})")
