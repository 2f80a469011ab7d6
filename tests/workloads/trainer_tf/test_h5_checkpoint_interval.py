"""The TF trainer exports the interval it expects between backups (its last epoch's time), for TrainingCheckpointStale."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from workloads.common import metrics
from workloads.trainer_tf import callbacks
from workloads.trainer_tf.callbacks import EpochProgress
from workloads.trainer_tf.config import WorkerRole
from workloads.trainer_tf.telemetry import TrainTelemetry

CHIEF = WorkerRole(num_workers=1, rank=0, task_type="chief", task_index=0, distributed=False)


def _interval(telemetry: TrainTelemetry) -> float:
    value = telemetry.registry.get_sample_value(metrics.TRAIN_CHECKPOINT_EXPECTED_INTERVAL)
    assert value is not None
    return value


def test_expected_backup_interval_is_the_last_epochs_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 1300.0, 1300.5, 3100.5])
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: next(clock))
    telemetry = TrainTelemetry()
    progress = EpochProgress(CHIEF, telemetry, epochs=3, steps_per_epoch=10, global_batch=32)
    # Exported as 0 before the first epoch ends: the rule then falls back to its fixed 30 minutes.
    assert f"\n{metrics.TRAIN_CHECKPOINT_EXPECTED_INTERVAL} 0.0" in "\n" + generate_latest(telemetry.registry).decode()
    progress.on_epoch_begin(0)
    progress.on_epoch_end(0, {"loss": 0.5})
    assert _interval(telemetry) == 1200.0
    progress.on_epoch_begin(1)
    progress.on_epoch_end(1, {"loss": 0.4})
    assert _interval(telemetry) == 1800.0

