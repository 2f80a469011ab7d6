"""Mirror the local `BackupAndRestore` directory to S3, and bring it back on start.

Layout under `--backup-uri`:

    LATEST              text naming the newest complete backup, e.g. "epoch-000005"
    epoch-000005/...    the files of the chief's backup directory after epoch 5

The chief uploads a whole epoch folder and only then rewrites `LATEST` (a single PUT, so it is
atomic), so `LATEST` always names a complete backup; older folders are deleted afterwards.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads.common import s3
from workloads.common.uri import S3Uri

LATEST = "LATEST"
"""The pointer object naming the newest complete backup folder."""

WORKER_TEMP_PREFIX = "workertemp_"
"""tf_keras writes non-chief copies to `workertemp_<task>` folders and deletes them; never mirrored."""

_FOLDER = re.compile(r"^epoch-(\d{6,})$")


class BackupError(RuntimeError):
    """The S3 backup is not in the layout this module writes."""


@dataclass(frozen=True)
class RemoteBackup:
    """A complete backup in S3."""

    epoch: int
    """Epochs completed when it was taken."""
    uri: S3Uri
    """The backup's folder."""


@dataclass(frozen=True)
class RestoreOutcome:
    """What the local backup directory holds after `prepare_local`."""

    source: str
    """`s3` (downloaded), `local` (kept as found) or `none` (training starts from scratch)."""
    epoch: int | None
    """Epochs completed in the restored backup, when known (S3 backups record it)."""


def folder_name(epoch: int) -> str:
    """The S3 folder name of the backup taken after `epoch` epochs."""
    return f"epoch-{epoch:06d}"


def latest(uri: S3Uri, client: Any | None = None) -> RemoteBackup | None:
    """The newest complete backup under `uri`, or None when there is none."""
    client = client or s3.client()
    pointer = uri.join(LATEST)
    if not s3.exists(pointer, client):
        return None
    name = s3.get_bytes(pointer, client).decode("utf-8").strip()
    match = _FOLDER.match(name)
    if match is None:
        raise BackupError(f"--backup-uri: '{pointer}' should name an epoch-NNNNNN folder (got {name!r})")
    return RemoteBackup(epoch=int(match.group(1)), uri=uri.join(name))


def _local_files(local: Path) -> list[Path]:
    return sorted(
        path for path in local.rglob("*")
        if path.is_file() and not any(part.startswith(WORKER_TEMP_PREFIX) for part in path.relative_to(local).parts)
    )


def local_is_empty(local: Path) -> bool:
    """True when `local` holds no backup files."""
    return not local.exists() or not _local_files(local)


def publish(local: Path, uri: S3Uri, epoch: int, client: Any | None = None) -> RemoteBackup:
    """Upload `local` as the backup after `epoch` epochs, point `LATEST` at it and drop older folders."""
    client = client or s3.client()
    target = uri.join(folder_name(epoch))
    for path in _local_files(local):
        s3.upload_file(path, target.join(path.relative_to(local).as_posix()), client)
    s3.put_bytes(uri.join(LATEST), folder_name(epoch).encode("utf-8"), client)
    prefix = uri.key.rstrip("/") + "/" if uri.key else ""
    stale = {
        key[len(prefix):].split("/", 1)[0]
        for key in s3.list_keys(S3Uri(uri.bucket, prefix), client)
        if "/" in key[len(prefix):]
    }
    for name in sorted(stale - {folder_name(epoch)}):
        if _FOLDER.match(name):
            s3.delete_prefix(S3Uri(uri.bucket, uri.join(name).key + "/"), client)
    return RemoteBackup(epoch=epoch, uri=target)


def _clear_local(local: Path) -> None:
    if local.exists():
        shutil.rmtree(local)
    local.mkdir(parents=True, exist_ok=True)


def restore(local: Path, remote: RemoteBackup, client: Any | None = None) -> None:
    """Replace the contents of `local` with the S3 backup `remote`."""
    _clear_local(local)
    s3.download_dir(remote.uri, local, client or s3.client())


def clear(uri: S3Uri, client: Any | None = None) -> int:
    """Delete the whole S3 backup (after a finished run). Returns how many objects went."""
    return s3.delete_prefix(S3Uri(uri.bucket, uri.key.rstrip("/") + "/" if uri.key else ""), client)


def prepare_local(local: Path, uri: S3Uri | None, distributed: bool) -> RestoreOutcome:
    """Make `local` hold the backup every worker will restore from.

    With `--backup-uri`, the S3 copy wins over a local one: every worker must restore the same
    epoch or the collectives deadlock, and the chief's local copy can be one epoch ahead of S3 when
    it died between the local save and the upload, while other workers hold no local copy at all
    (tf_keras keeps the backup on the chief only). For the same reason a multi-worker run drops a
    local backup that never reached S3.
    """
    if uri is not None:
        remote = latest(uri)
        if remote is not None:
            restore(local, remote)
            return RestoreOutcome(source="s3", epoch=remote.epoch)
        if distributed and not local_is_empty(local):
            _clear_local(local)
    if local_is_empty(local):
        return RestoreOutcome(source="none", epoch=None)
    return RestoreOutcome(source="local", epoch=None)
