"""Real MultiWorkerMirroredStrategy runs: two local worker processes with TF_CONFIG on loopback ports.

Each worker gets a JobSet pod's env and the TF_CONFIG the trainer computes from it, on loopback (cluster.py). One
shared run checks accuracy, export, metrics and logs; a second is SIGKILLed after an epoch and restarted to check
that training resumes from the last backed-up epoch.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.servers import S3Server, free_port
from tests.workloads.files import upload_dir, write_shard
from tests.workloads.trainer_tf.cluster import Event, Worker, run_cli, start_cluster, stop_all, trainer_env
from workloads.common import metrics
from workloads.common import s3 as s3io
from workloads.common.uri import S3Uri
from workloads.trainer_tf.data import load_digits, load_images, split_holdout

pytestmark = pytest.mark.timeout(420)

EPOCHS = 8
SEED = 7
MIN_ACCURACY = 0.90
STARTUP_S = 180.0
"""Generous: two TF imports and the collective handshake on a busy 2-core runner."""


def _epoch_end(epoch: int) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == "epoch_end" and e.get("epoch") == epoch


def _bucket() -> str:
    name = f"tf-{uuid.uuid4().hex[:10]}"
    s3io.client().create_bucket(Bucket=name)
    return name


def _trainer_args(bucket: str, workdir: Path, index: int, epochs: int, *extra: str) -> list[str]:
    return ["--data", "digits", "--epochs", str(epochs), "--batch-size", "64", "--lr", "0.003",
            "--seed", str(SEED), "--backup-dir", str(workdir / f"backup-{index}"),
            "--backup-uri", f"s3://{bucket}/backups/digits", "--export", f"s3://{bucket}/models/digits/", *extra]


def _report(export_uri: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(s3io.get_bytes(S3Uri.parse(export_uri).join("accuracy.json")))
    return report


@dataclass
class ClusterRun:
    """A finished two-worker run."""

    workers: list[Worker]
    exit_codes: list[int]
    bucket: str
    workdir: Path
    metrics_text: str

    @property
    def exported(self) -> Event:
        """The chief's `exported` event."""
        return self.workers[0].named("exported")[0]


@pytest.fixture(scope="module")
def two_workers(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> ClusterRun:
    """Train the CNN on digits with two workers to completion, scraping the chief's metrics mid-run."""
    bucket = _bucket()
    workdir = tmp_path_factory.mktemp("two-workers")
    port = free_port()
    # Both workers get the flag; only the chief may bind it (a second bind would crash worker 1).
    workers = start_cluster(2, lambda i: _trainer_args(bucket, workdir, i, EPOCHS, "--metrics-port", str(port)),
                            s3, workdir)
    try:
        workers[0].wait_for(_epoch_end(2), timeout=STARTUP_S)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            metrics_text = response.read().decode()
        codes = [worker.finish(timeout=300) for worker in workers]
    finally:
        stop_all(workers)
    return ClusterRun(workers=workers, exit_codes=codes, bucket=bucket, workdir=workdir, metrics_text=metrics_text)


def test_both_workers_finish_every_epoch(two_workers: ClusterRun) -> None:
    assert two_workers.exit_codes == [0, 0], two_workers.workers[1].stderr_tail()
    for worker in two_workers.workers:
        assert [e["epoch"] for e in worker.named("epoch_end")] == list(range(1, EPOCHS + 1))
        assert worker.named("train_start")[0]["start_epoch"] == 1
        assert worker.named("train_start")[0]["workers"] == 2
        assert worker.named("config")[0]["worker"] == worker.index, "the rank is the JobSet job index"


def test_workers_train_in_lockstep_on_disjoint_shards(two_workers: ClusterRun) -> None:
    chief, worker = (w.named("epoch_end") for w in two_workers.workers)
    # All-reduced gradients keep the replicas identical, so both see the same loss every epoch.
    assert [e["loss"] for e in chief] == pytest.approx([e["loss"] for e in worker], rel=1e-4)
    assert chief[-1]["loss"] < chief[0]["loss"] / 4


def test_held_out_accuracy_reaches_ninety_percent(two_workers: ClusterRun) -> None:
    report = _report(two_workers.exported["uri"])
    assert report["accuracy"] >= MIN_ACCURACY
    assert report["examples"] == 359
    assert two_workers.exported["accuracy"] == pytest.approx(report["accuracy"], abs=1e-5)


def test_export_is_a_numeric_version_folder_for_tf_serving(two_workers: ClusterRun) -> None:
    assert two_workers.exported["uri"] == f"s3://{two_workers.bucket}/models/digits/1"
    keys = s3io.list_keys(S3Uri(two_workers.bucket, "models/digits/"))
    assert {"models/digits/1/saved_model.pb", "models/digits/1/accuracy.json",
            "models/digits/1/variables/variables.index"} <= set(keys)
    assert all(key.startswith("models/digits/1/") for key in keys)


def test_exported_model_predicts_the_classes_of_the_trained_model(two_workers: ClusterRun, tmp_path: Path) -> None:
    from workloads.trainer_tf.serving import TfSavedModel

    s3io.download_dir(S3Uri.parse(two_workers.exported["uri"]), tmp_path / "1")
    served = TfSavedModel(tmp_path / "1")
    _, heldout = split_holdout(load_digits(), SEED)
    # Raw 0..255 pixels: the exported model rescales them itself.
    classes = np.argmax(served.predict(heldout.images), axis=1)
    report = _report(two_workers.exported["uri"])
    assert classes.tolist() == report["predicted_classes"]
    assert float(np.mean(classes == heldout.labels)) == pytest.approx(report["accuracy"])
    assert [(t.datatype, t.shape) for t in served.inputs] == [("FP32", [-1, 8, 8, 1])]


def test_non_chief_export_scratch_is_cleaned_up(two_workers: ClusterRun) -> None:
    for index in (0, 1):
        leftovers = list((two_workers.workdir / f"tmp-{index}").glob("trainer-tf-export-*"))
        assert leftovers == []
    # The non-chief ran the export (the save contract) but published nothing of its own.
    assert two_workers.workers[1].named("exported") == []


def test_backup_is_cleared_once_the_export_is_published(two_workers: ClusterRun) -> None:
    assert s3io.list_keys(S3Uri(two_workers.bucket, "backups/")) == []


def test_chief_serves_the_shared_training_metrics(two_workers: ClusterRun) -> None:
    def value(name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", two_workers.metrics_text, re.MULTILINE)
        assert match is not None, f"{name} missing from /metrics"
        return float(match.group(1))

    assert value(metrics.TRAIN_EPOCH) >= 2
    # Two epochs of 1,438 training examples in full 64-example batches.
    assert value(metrics.TRAIN_EXAMPLES_TOTAL) >= 2 * (1438 // 64) * 64
    assert value(metrics.TRAIN_LAST_CHECKPOINT_TIMESTAMP) > 0
    assert value(metrics.TRAIN_LAST_STEP_TIMESTAMP) > 0
    assert 0 < value(metrics.TRAIN_LOSS) < 5


def test_stdout_is_json_lines_only(two_workers: ClusterRun) -> None:
    for worker in two_workers.workers:
        assert worker.events and all("event" in e and "ts" in e for e in worker.events)
        assert {"config", "backup_restore", "train_start", "epoch_end", "train_end"} <= {
            e["event"] for e in worker.events
        }


def _resume_cluster(s3: S3Server, bucket: str, workdir: Path, run: str, epochs: int) -> list[Worker]:
    # The backup dirs stay under `workdir`, as an emptyDir survives a container restart.
    return start_cluster(2, lambda i: _trainer_args(bucket, workdir, i, epochs), s3, workdir / run)


def test_killed_worker_set_resumes_from_the_last_backed_up_epoch(s3: S3Server, tmp_path: Path) -> None:
    epochs, kill_after = 6, 2
    bucket = _bucket()
    first = _resume_cluster(s3, bucket, tmp_path, "run-1", epochs)
    try:
        first[1].wait_for(_epoch_end(kill_after), timeout=STARTUP_S)
        first[1].kill()
        # The chief loses its peer mid-collective; give it the time a pod gets to notice, then kill it too.
        try:
            first[0].proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            first[0].kill()
    finally:
        stop_all(first)
    synced = [e["epoch"] for e in first[0].named("backup_synced")]
    assert synced and synced[-1] == kill_after, f"chief backed up epochs {synced}, expected to stop at {kill_after}"

    second = _resume_cluster(s3, bucket, tmp_path, "run-2", epochs)
    try:
        codes = [worker.finish(timeout=300) for worker in second]
    finally:
        stop_all(second)
    assert codes == [0, 0], second[0].stderr_tail()
    for worker in second:
        assert worker.named("backup_restore")[0] | {"ts": 0} == {
            "event": "backup_restore", "source": "s3", "epoch": kill_after, "worker": worker.index, "ts": 0
        }
        start = worker.named("train_start")[0]
        assert (start["start_epoch"], start["resumed"]) == (kill_after + 1, True)
        assert [e["epoch"] for e in worker.named("epoch_end")] == list(range(kill_after + 1, epochs + 1))
    assert _report(second[0].named("exported")[0]["uri"])["accuracy"] >= MIN_ACCURACY


def test_one_epoch_from_s3_image_records(s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket()
    digits = load_digits()
    for index, start in enumerate(range(0, 600, 200)):
        write_shard(tmp_path / "records" / f"shard-{index}.npz", digits.images[start:start + 200],
                    digits.labels[start:start + 200], digits.class_names)
    upload_dir(tmp_path / "records", S3Uri(bucket, "records"))
    assert len(load_images(f"s3://{bucket}/records/")) == 600
    result = run_cli(["--data", f"s3://{bucket}/records/", "--epochs", "1", "--backup-dir", str(tmp_path / "b"),
                      "--export", f"s3://{bucket}/models/records-cnn/"], trainer_env(s3, tmp_path / "tmp"),
                     timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["examples"] for e in events if e["event"] == "config"] == [600]
    assert [e["epoch"] for e in events if e["event"] == "epoch_end"] == [1]
    report = _report(f"s3://{bucket}/models/records-cnn/1")
    assert report["examples"] == 120 and report["class_names"] == [str(i) for i in range(10)]
