"""Benchmark: TensorFlow trainer throughput for 1 vs 2 workers, and the cost of a worker restart.

Run in the TensorFlow venv, not in `make test`:
    .venv-tf/bin/python -m pytest tests/bench/test_bench_trainer_tf.py -q -s
Prints one `BENCH {...}` JSON line per figure.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support.servers import S3Server
from tests.workloads.trainer_tf.cluster import Worker, start_cluster, stop_all
from workloads.common import s3 as s3io

pytestmark = pytest.mark.timeout(1200)

EPOCHS = 6
KILL_AFTER = 2


def _bucket() -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    s3io.client().create_bucket(Bucket=name)
    return name


def _args(bucket: str, workdir: Path, index: int) -> list[str]:
    return ["--data", "digits", "--epochs", str(EPOCHS), "--batch-size", "64", "--seed", "0",
            "--backup-dir", str(workdir / f"backup-{index}"), "--backup-uri", f"s3://{bucket}/backups",
            "--export", f"s3://{bucket}/models/digits/"]


def _report(figure: str, **values: object) -> None:
    print("BENCH " + json.dumps({"figure": figure, **values}, sort_keys=True))


def _run(workers: list[Worker]) -> None:
    try:
        assert [worker.finish(timeout=600) for worker in workers] == [0] * len(workers)
    finally:
        stop_all(workers)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_bench_examples_per_second(num_workers: int, s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket()
    started = time.monotonic()
    workers = start_cluster(num_workers, lambda i: _args(bucket, tmp_path, i), s3, tmp_path)
    _run(workers)
    epochs = workers[0].named("epoch_end")
    # Epoch 1 includes tracing and the collective handshake: steady state is epochs 2..N.
    steady = [e["examples_per_s"] for e in epochs[1:]]
    _report("trainer_tf_examples_per_s", workers=num_workers, median=statistics.median(steady),
            per_epoch=steady, first_epoch_s=epochs[0]["seconds"], wall_s=round(time.monotonic() - started, 1))


def test_bench_restart_cost(s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket()
    first = start_cluster(2, lambda i: _args(bucket, tmp_path, i), s3, tmp_path / "run-1")
    try:
        first[1].wait_for(lambda e: e.get("event") == "epoch_end" and e.get("epoch") == KILL_AFTER, timeout=300)
        first[1].kill()
        killed_at = time.time()
        try:
            first[0].proc.wait(timeout=120)
            chief_exit_s = round(time.time() - killed_at, 1)
        except subprocess.TimeoutExpired:
            chief_exit_s = None
    finally:
        stop_all(first)
    relaunched_at = time.time()
    second = start_cluster(2, lambda i: _args(bucket, tmp_path, i), s3, tmp_path / "run-2")
    _run(second)
    completed_before = [e["epoch"] for e in first[0].named("epoch_end")]
    rerun = [e["epoch"] for e in second[0].named("epoch_end")]
    start = second[0].named("train_start")[0]
    _report(
        "trainer_tf_restart",
        killed_after_epoch=KILL_AFTER,
        resumed_at_epoch=start["start_epoch"],
        completed_epochs_redone=len(set(completed_before) & set(rerun)),
        # A failure at a random moment loses on average half an epoch of work since the last backup.
        steady_epoch_s=statistics.median(e["seconds"] for e in second[0].named("epoch_end")[1:]),
        chief_detects_failure_s=chief_exit_s,
        relaunch_to_first_epoch_s=round(start["ts"] - relaunched_at, 1),
    )
