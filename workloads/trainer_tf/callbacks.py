"""Keras callbacks: the S3-mirrored `BackupAndRestore`, JSON progress lines with metrics, the step watchdog, and the
test-only hang injector."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import tf_keras as keras

from workloads.common.logs import log_event
from workloads.common.uri import S3Uri
from workloads.common.vocab import COLLECTIVE_TIMEOUT_FLAG
from workloads.trainer_tf import backup
from workloads.trainer_tf.config import WorkerRole
from workloads.trainer_tf.telemetry import TrainTelemetry


class MirroredBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose chief also publishes each epoch's backup to `--backup-uri`."""

    def __init__(
        self, backup_dir: Path, backup_uri: S3Uri | None, role: WorkerRole, telemetry: TrainTelemetry | None
    ) -> None:
        """Back up to `backup_dir` every epoch; the chief mirrors it to `backup_uri` when set."""
        super().__init__(backup_dir=str(backup_dir))
        self._local = backup_dir
        self._uri = backup_uri
        self._role = role
        self._telemetry = telemetry

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Save the local backup (every worker takes part), then the chief uploads and commits it."""
        started = time.monotonic()
        super().on_epoch_end(epoch, logs)
        if not self._role.is_chief:
            return
        if self._uri is not None:
            remote = backup.publish(self._local, self._uri, epoch + 1)
            log_event("backup_synced", epoch=epoch + 1, uri=str(remote.uri),
                      seconds=round(time.monotonic() - started, 3))
        if self._telemetry is not None:
            self._telemetry.record_checkpoint(time.monotonic() - started)


class EpochProgress(keras.callbacks.Callback):
    """One JSON line per epoch on every worker, and the chief's training metrics."""

    def __init__(
        self, role: WorkerRole, telemetry: TrainTelemetry | None, *, epochs: int, steps_per_epoch: int,
        global_batch: int,
    ) -> None:
        """Report against `epochs` total epochs of `steps_per_epoch` steps of `global_batch` examples."""
        super().__init__()
        # Batch hooks then receive the raw tensors instead of forcing a device-to-host copy of the
        # logs each step; this callback reads no batch logs.
        self._supports_tf_logs = True
        self._role = role
        self._telemetry = telemetry
        self._epochs = epochs
        self._steps = steps_per_epoch
        self._global_batch = global_batch
        self._epoch = 0
        self._epoch_started = 0.0
        self.first_epoch: int | None = None
        """1-based number of the first epoch this process ran, None until one starts."""
        self.epochs_run = 0
        """Epochs completed by this process (restored epochs are not counted)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Log where training (re)starts the first time an epoch begins."""
        self._epoch = epoch
        self._epoch_started = time.monotonic()
        if self.first_epoch is None:
            self.first_epoch = epoch + 1
            log_event("train_start", start_epoch=epoch + 1, resumed=epoch > 0, epochs=self._epochs,
                      worker=self._role.rank, workers=self._role.num_workers)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Advance the step and example counters."""
        if self._telemetry is not None:
            self._telemetry.record_step(self._epoch * self._steps + batch + 1, self._global_batch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Log the epoch's loss, accuracy and throughput."""
        logs = logs or {}
        seconds = time.monotonic() - self._epoch_started
        loss = float(logs.get("loss", float("nan")))
        self.epochs_run += 1
        log_event(
            "epoch_end",
            epoch=epoch + 1,
            epochs=self._epochs,
            loss=round(loss, 5),
            accuracy=round(float(logs.get("accuracy", float("nan"))), 5),
            seconds=round(seconds, 3),
            examples_per_s=round(self._steps * self._global_batch / seconds, 1) if seconds > 0 else None,
            worker=self._role.rank,
        )
        if self._telemetry is not None:
            self._telemetry.record_epoch(epoch + 1, loss)
            # BackupAndRestore backs up at every epoch end (save_freq="epoch") and runs before this callback, so
            # this epoch's time, its backup included, is the time from one backup to the next.
            self._telemetry.record_checkpoint_interval(seconds)


EXIT_COLLECTIVE_TIMEOUT = 1
"""A training step outlived --collective-timeout: a failure like any other, for the job's restart policy."""


class CollectiveWatchdog(keras.callbacks.Callback):
    """Ends the process when one training step (its gradient all-reduce waits for every worker) outlives the timeout.

    One monitor thread for the whole run: a hung or dead peer blocks the all-reduce, so the step never ends, and
    the worker exits with a message naming --collective-timeout instead of holding its node until someone notices.
    """

    def __init__(self, timeout_s: int, role: WorkerRole) -> None:
        """Watch every training step for `timeout_s` seconds."""
        super().__init__()
        self._supports_tf_logs = True  # the hooks read no logs, so Keras need not copy them to the host each step
        self._timeout_s = timeout_s
        self._role = role
        self._deadline: float | None = None
        self._done = False
        self._cond = threading.Condition()
        threading.Thread(target=self._watch, name="collective-watchdog", daemon=True).start()

    def __enter__(self) -> CollectiveWatchdog:
        """Watch the `fit` inside the `with` block."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop watching however `fit` ended: an exception skips `on_train_end` and may leave a step's clock running."""
        self.stop()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Start the step's clock."""
        with self._cond:
            self._deadline = time.monotonic() + self._timeout_s
            self._cond.notify()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """The step finished in time."""
        with self._cond:
            self._deadline = None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Stop watching (evaluation and export are not steps)."""
        self.stop()

    def stop(self) -> None:
        """End the monitor thread; a step in flight is no longer timed."""
        with self._cond:
            self._done = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._done:
                remaining = None if self._deadline is None else self._deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            else:
                return
        print(f"error: {COLLECTIVE_TIMEOUT_FLAG}: worker {self._role.rank} waited more than {self._timeout_s} s for a "
              f"training step, whose gradient all-reduce waits for every worker; a worker is hung or dead (see its "
              f"log), or slower than that, then raise {COLLECTIVE_TIMEOUT_FLAG}", file=sys.stderr, flush=True)
        log_event("collective_timeout", stream=sys.stderr, worker=self._role.rank, timeout_s=self._timeout_s)
        os._exit(EXIT_COLLECTIVE_TIMEOUT)


HANG_ENV: Final = "MODELPLANE_TF_FAULT_HANG"
"""Test-only: `INDEX:STEP` makes worker INDEX stop responding, alive, before its STEP-th training step (1-based,
counted in this process); unset, nothing is injected."""


class HangInjector(keras.callbacks.Callback):
    """Test-only: blocks one worker before a given step, as a deadlocked worker would, so its peers' watchdogs fire.

    The process stays alive (its TF heartbeats keep answering) but never enters the step, so the other workers wait
    in that step's all-reduce. Listed before `CollectiveWatchdog`, whose clock therefore never starts on the hung
    worker: only the healthy workers time out, which is the path under test.
    """

    def __init__(self, step: int) -> None:
        """Hang before the `step`-th training step this process runs."""
        super().__init__()
        self._supports_tf_logs = True  # reads no logs
        self._step = step
        self._started = 0

    @classmethod
    def from_env(cls, rank: int, environ: Mapping[str, str] | None = None) -> HangInjector | None:
        """The injector `MODELPLANE_TF_FAULT_HANG` asks for on worker `rank`; None when unset or for another worker."""
        spec = (os.environ if environ is None else environ).get(HANG_ENV)
        if not spec:
            return None
        index, step = spec.split(":", 1)
        return cls(int(step)) if int(index) == rank else None

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Block forever once the configured step is next."""
        self._started += 1
        if self._started == self._step:
            log_event("fault_injected", step=self._step, fault="hang")
            threading.Event().wait()  # never set: only a signal from outside ends the process
