"""Train the CNN under `tf.distribute`, evaluate it on the held-out split and export it for TF Serving.

Keras 2 (`tf_keras`) is used rather than Keras 3: Keras 3's `fit` fails under
MultiWorkerMirroredStrategy (https://github.com/keras-team/keras/issues/20585), while tf_keras keeps
TensorFlow's documented multi-worker contract for `BackupAndRestore` and saving.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.trainer_tf import backup
from workloads.trainer_tf.callbacks import CollectiveWatchdog, EpochProgress, HangInjector, MirroredBackupAndRestore
from workloads.trainer_tf.config import TrainSettings, WorkerRole
from workloads.trainer_tf.data import HOLDOUT_FRACTION, split_holdout
from workloads.trainer_tf.export import REPORT_NAME, AccuracyReport, next_version, upload_version
from workloads.trainer_tf.records import ImageSet
from workloads.trainer_tf.telemetry import TrainTelemetry

PREDICT_BATCH = 512
"""Examples per forward pass when evaluating the held-out split."""

BACKUP_CHIEF_DIR = "chief"
"""Sub-folder tf_keras' BackupAndRestore keeps the restorable checkpoint in."""

SAVED_EPOCH_VARIABLE = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
"""Checkpoint key of the 0-based epoch index tf_keras' BackupAndRestore saved last."""


def make_strategy(role: WorkerRole) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when `TF_CONFIG` is set (it reads it itself), else the default strategy.

    No `CommunicationOptions(timeout_seconds=...)`: TF 2.21 holds a sleeping thread per collective for the whole
    timeout (its docstring: "should only be used for debugging"; measured here: +15 threads per step, so about
    steps/s x 15 x `--collective-timeout` threads). `CollectiveWatchdog` bounds the steps instead.
    """
    if role.distributed:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def build_model(input_shape: tuple[int, ...], num_classes: int, lr: float) -> keras.Model:
    """A small CNN over uint8-range pixels that outputs class probabilities."""
    inputs = keras.Input(shape=input_shape, name="images")
    # Rescaling lives in the model so the exported signature takes raw 0..255 pixel values.
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="image_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def train_dataset(train: ImageSet, role: WorkerRole, batch_size: int, seed: int) -> tf.data.Dataset:
    """This worker's shard of the training split, shuffled, repeated and batched at the global batch size.

    Each worker keeps every `num_workers`-th example (an explicit shard, so auto-sharding is off);
    tf.distribute then splits each global batch across the replicas. Repeating and a fixed
    `steps_per_epoch` keep every worker at the same step count, which the collectives require.
    """
    dataset = tf.data.Dataset.from_tensor_slices((train.images, train.labels))
    dataset = dataset.shard(role.num_workers, role.rank)
    shard_size = int(dataset.cardinality().numpy())
    dataset = dataset.shuffle(shard_size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def predict_classes(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The model's class for each image, computed locally (no collectives)."""
    chunks = [
        np.argmax(model(images[start:start + PREDICT_BATCH].astype(np.float32), training=False).numpy(), axis=1)
        for start in range(0, len(images), PREDICT_BATCH)
    ]
    return np.concatenate(chunks).astype(np.int64)


def local_backup_epoch(backup_dir: Path) -> int:
    """Epochs completed in the local BackupAndRestore checkpoint; 0 when there is none."""
    checkpoint = tf.train.latest_checkpoint(str(backup_dir / BACKUP_CHIEF_DIR))
    if checkpoint is None:
        return 0
    return int(tf.train.load_variable(checkpoint, SAVED_EPOCH_VARIABLE)) + 1


def gather_ints(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """`value` from every replica of every worker, in replica order."""
    if strategy.num_replicas_in_sync == 1:
        return [value]
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda _: tf.constant([value], dtype=tf.int64)
    )
    return [int(v) for v in strategy.gather(per_replica, axis=0).numpy()]


def check_restore_agrees(strategy: tf.distribute.Strategy, config: TrainSettings) -> int:
    """The epoch every worker restores; `SettingsError` when they differ (training would deadlock)."""
    epochs = gather_ints(strategy, local_backup_epoch(config.backup_dir))
    if len(set(epochs)) > 1:
        raise SettingsError(f"--backup-dir: workers would restore different epochs {epochs}; set --backup-uri so "
                          "every worker restores the chief's copy, or put --backup-dir on a shared volume")
    return epochs[0]


def export_model(model: keras.Model, config: TrainSettings, role: WorkerRole, report: AccuracyReport) -> str | None:
    """Every worker exports (saving may run collectives); only the chief keeps and uploads its copy."""
    scratch = Path(tempfile.mkdtemp(prefix="trainer-tf-export-"))
    try:
        local = scratch / str(report.version)
        model.export(str(local))
        if not role.is_chief:
            return None
        (local / REPORT_NAME).write_text(report.to_json())
        target = config.export.join(str(report.version))
        upload_version(local, target)
        return str(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _evaluate(model: keras.Model, heldout: ImageSet) -> tuple[float, np.ndarray]:
    predicted = predict_classes(model, heldout.images)
    return float(np.mean(predicted == heldout.labels)), predicted


def run(config: TrainSettings, role: WorkerRole, data: ImageSet) -> None:
    """Train, evaluate and export; the chief also serves metrics and publishes backups."""
    keras.utils.disable_interactive_logging()  # Keras' progress prints would break the JSON-line stdout.
    hang = HangInjector.from_env(role.rank)
    strategy = make_strategy(role)
    telemetry = TrainTelemetry() if role.is_chief else None
    if telemetry is not None and config.metrics_port:
        telemetry.serve(config.metrics_port)
    outcome = backup.prepare_local(config.backup_dir, config.backup_uri, role.distributed)
    restored = check_restore_agrees(strategy, config)
    log_event("backup_restore", source=outcome.source, epoch=restored, worker=role.rank)
    train, heldout = split_holdout(data, config.seed)
    steps = max(1, len(train) // config.batch_size)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(tuple(train.images.shape[1:]), train.num_classes, config.lr)
    progress = EpochProgress(role, telemetry, epochs=config.epochs, steps_per_epoch=steps,
                             global_batch=config.batch_size)
    callbacks: list[keras.callbacks.Callback] = [
        MirroredBackupAndRestore(config.backup_dir, config.backup_uri, role, telemetry), progress]
    if hang is not None:
        callbacks.append(hang)  # before the watchdog: see HangInjector
    started = time.monotonic()
    # The `with` disarms the watchdog even when `fit` raises (Keras then skips `on_train_end`).
    with CollectiveWatchdog(config.collective_timeout, role) as watchdog:
        model.fit(train_dataset(train, role, config.batch_size, config.seed), epochs=config.epochs,
                  steps_per_epoch=steps, callbacks=[*callbacks, watchdog], verbose=0)
    log_event("train_end", first_epoch=progress.first_epoch, epochs_run=progress.epochs_run,
              seconds=round(time.monotonic() - started, 3), worker=role.rank)
    accuracy, predicted = _evaluate(model, heldout)
    version = next_version(config.export) if role.is_chief else 0
    report = AccuracyReport(
        accuracy=accuracy, examples=len(heldout), model=config.model_name, version=version, data=config.data,
        seed=config.seed, holdout_fraction=HOLDOUT_FRACTION, epochs=config.epochs,
        class_names=list(heldout.class_names), predicted_classes=predicted.tolist(),
    )
    export_uri = export_model(model, config, role, report)
    if role.is_chief:
        if config.backup_uri is not None:
            # The run is complete: a later job with the same --backup-uri must start fresh, not "resume".
            backup.clear(config.backup_uri)
        log_event("exported", uri=export_uri, version=version, accuracy=round(accuracy, 5), examples=len(heldout))
