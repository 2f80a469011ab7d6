"""The S3 backup mirror, export versioning and upload order, and the trainer's metrics, against the test S3 server."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests.support.servers import S3Server
from workloads.common import metrics
from workloads.common import s3 as s3io
from workloads.common.uri import S3Uri
from workloads.trainer_tf import backup
from workloads.trainer_tf.export import next_version, upload_version
from workloads.trainer_tf.telemetry import TrainTelemetry


def _bucket() -> str:
    name = f"backup-{uuid.uuid4().hex[:10]}"
    s3io.client().create_bucket(Bucket=name)
    return name


def _backup_dir(root: Path, epoch: int) -> Path:
    """A directory shaped like tf_keras' BackupAndRestore output, plus a non-chief scratch folder."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "chief").mkdir(parents=True)
    (root / "chief" / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{epoch}"\n')
    (root / "chief" / f"ckpt-{epoch}.index").write_bytes(bytes([epoch]) * 16)
    (root / "workertemp_1").mkdir(exist_ok=True)
    (root / "workertemp_1" / "ckpt-1.index").write_text("scratch")
    return root


def _relative_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_publish_keeps_the_newest_epoch_folder_and_points_latest_at_it(s3: S3Server, tmp_path: Path) -> None:
    uri = S3Uri(_bucket(), "backups/digits")
    backup.publish(_backup_dir(tmp_path / "b", 1), uri, 1)
    backup.publish(_backup_dir(tmp_path / "b", 2), uri, 2)
    keys = s3io.list_keys(S3Uri(uri.bucket, "backups/"))
    assert keys == ["backups/digits/LATEST", "backups/digits/epoch-000002/chief/checkpoint",
                    "backups/digits/epoch-000002/chief/ckpt-2.index"]
    assert backup.latest(uri) == backup.RemoteBackup(epoch=2, uri=uri.join("epoch-000002"))


def test_worker_scratch_folders_are_never_mirrored(s3: S3Server, tmp_path: Path) -> None:
    uri = S3Uri(_bucket(), "b")
    backup.publish(_backup_dir(tmp_path / "b", 3), uri, 3)
    assert not [key for key in s3io.list_keys(S3Uri(uri.bucket, "b/")) if "workertemp" in key]


def test_restore_replaces_the_local_directory_with_the_s3_copy(s3: S3Server, tmp_path: Path) -> None:
    uri = S3Uri(_bucket(), "b")
    backup.publish(_backup_dir(tmp_path / "chief", 4), uri, 4)
    stale = _backup_dir(tmp_path / "worker", 5)
    outcome = backup.prepare_local(stale, uri, distributed=True)
    assert outcome == backup.RestoreOutcome(source="s3", epoch=4)
    assert _relative_files(stale) == {"chief/checkpoint", "chief/ckpt-4.index"}
    assert (stale / "chief" / "ckpt-4.index").read_bytes() == bytes([4]) * 16


def test_empty_local_directory_is_filled_from_s3(s3: S3Server, tmp_path: Path) -> None:
    uri = S3Uri(_bucket(), "b")
    backup.publish(_backup_dir(tmp_path / "chief", 2), uri, 2)
    assert backup.prepare_local(tmp_path / "fresh", uri, distributed=False).source == "s3"
    assert _relative_files(tmp_path / "fresh") == {"chief/checkpoint", "chief/ckpt-2.index"}


def test_multi_worker_run_drops_a_local_backup_that_never_reached_s3(s3: S3Server, tmp_path: Path) -> None:
    uri = S3Uri(_bucket(), "b")
    local = _backup_dir(tmp_path / "b", 1)
    assert backup.prepare_local(local, uri, distributed=True) == backup.RestoreOutcome(source="none", epoch=None)
    assert backup.local_is_empty(local)


def test_single_worker_keeps_its_local_backup_without_s3(tmp_path: Path) -> None:
    local = _backup_dir(tmp_path / "b", 1)
    assert backup.prepare_local(local, None, distributed=False) == backup.RestoreOutcome(source="local", epoch=None)
    assert (local / "chief" / "ckpt-1.index").exists()


def test_clear_removes_the_whole_backup(s3: S3Server, tmp_path: Path) -> None:
    uri = S3Uri(_bucket(), "b")
    backup.publish(_backup_dir(tmp_path / "b", 1), uri, 1)
    assert backup.clear(uri) == 3
    assert backup.latest(uri) is None


def test_a_foreign_latest_pointer_is_reported(s3: S3Server) -> None:
    uri = S3Uri(_bucket(), "b")
    s3io.put_bytes(uri.join("LATEST"), b"yesterday")
    with pytest.raises(backup.BackupError, match="should name an epoch-NNNNNN folder"):
        backup.latest(uri)


def test_next_version_follows_the_highest_numeric_folder(s3: S3Server) -> None:
    bucket = _bucket()
    base = S3Uri(bucket, "models/digits/")
    assert next_version(base) == 1
    for key in ("models/digits/1/saved_model.pb", "models/digits/12/saved_model.pb", "models/digits/notes.txt",
                "models/digits-old/40/saved_model.pb", "models/digits/draft/saved_model.pb"):
        s3io.put_bytes(S3Uri(bucket, key), b"x")
    assert next_version(base) == 13


class _RecordingClient:
    """A real boto3 client that remembers the order of uploads."""

    def __init__(self) -> None:
        self._client = s3io.client()
        self.uploaded: list[str] = []

    def upload_file(self, filename: str, bucket: str, key: str) -> None:
        self.uploaded.append(key)
        self._client.upload_file(filename, bucket, key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_saved_model_pb_is_uploaded_last(s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket()
    local = tmp_path / "3"
    (local / "variables").mkdir(parents=True)
    for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index", "accuracy.json"):
        (local / name).write_text(name)
    recorder = _RecordingClient()
    keys = upload_version(local, S3Uri(bucket, "models/digits/3"), recorder)
    assert recorder.uploaded == keys
    assert keys[-1] == "models/digits/3/saved_model.pb"
    assert sorted(keys) == sorted(f"models/digits/3/{n}" for n in
                                  ("saved_model.pb", "fingerprint.pb", "variables/variables.index", "accuracy.json"))


def test_telemetry_exports_the_shared_training_metric_names() -> None:
    telemetry = TrainTelemetry()
    telemetry.record_step(step=3, examples=64)
    telemetry.record_step(step=4, examples=64)
    telemetry.record_epoch(epoch=2, loss=0.25)
    telemetry.record_checkpoint(0.4)
    text = generate_latest(telemetry.registry).decode()
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert float(samples[metrics.TRAIN_EXAMPLES_TOTAL]) == 128
    assert float(samples[metrics.TRAIN_STEP]) == 4
    assert float(samples[metrics.TRAIN_EPOCH]) == 2
    assert float(samples[metrics.TRAIN_LOSS]) == 0.25
    assert float(samples[metrics.TRAIN_LAST_STEP_TIMESTAMP]) > 0
    assert float(samples[metrics.TRAIN_LAST_CHECKPOINT_TIMESTAMP]) > 0
    assert float(samples[metrics.TRAIN_CHECKPOINT_DURATION + "_count"]) == 1
