"""File helpers only the workload tests need: uploading a folder to S3 and writing an image-record shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workloads.common import s3
from workloads.common.uri import S3Uri
from workloads.trainer_tf.records import encode_shard


def upload_dir(local: Path, uri: S3Uri) -> list[str]:
    """Upload every file under `local` to `uri`, keeping relative paths. Returns the keys."""
    client = s3.client()
    keys = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        target = uri.join(path.relative_to(local).as_posix())
        s3.upload_file(path, target, client)
        keys.append(target.key)
    return keys


def write_shard(path: Path, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> Path:
    """Write one `.npz` image-record shard file (see workloads.trainer_tf.records) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_shard(images, labels, class_names))
    return path
