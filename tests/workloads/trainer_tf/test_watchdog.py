"""The step watchdog behind --collective-timeout: a step that outlives it ends the worker with a clear error, in
its own process, after `fit` raised, and in a real two-worker run where the other worker hangs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.servers import S3Server
from tests.workloads.trainer_tf.cluster import REPO_ROOT, start_cluster, stop_all
from workloads.common import s3 as s3io
from workloads.common.vocab import COLLECTIVE_TIMEOUT_FLAG
from workloads.trainer_tf.callbacks import HANG_ENV, HangInjector

TIMEOUT_S = 2
"""The watchdog's limit in this test."""

WORKER = f"""
import time
from workloads.trainer_tf.callbacks import CollectiveWatchdog
from workloads.trainer_tf.config import parse_tf_config

watchdog = CollectiveWatchdog({TIMEOUT_S}, parse_tf_config(None))
watchdog.on_train_batch_begin(0)
watchdog.on_train_batch_end(0)
time.sleep({TIMEOUT_S} * 1.5)  # between steps (epoch-end backups, evaluation) nothing is watched
print("idle past the timeout", flush=True)
watchdog.on_train_batch_begin(1)
time.sleep(60)  # a step stuck in its all-reduce
print("not reached", flush=True)
"""
"""A worker that finishes one step, idles past the timeout, then hangs in the next step."""


def test_a_step_that_outlives_the_timeout_ends_the_worker_naming_the_flag() -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", WORKER], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["idle past the timeout"]
    assert f"error: {COLLECTIVE_TIMEOUT_FLAG}: worker 0 waited more than {TIMEOUT_S} s for a training step" \
        in result.stderr
    event = json.loads(next(line for line in result.stderr.splitlines() if line.startswith("{")))
    assert (event["event"], event["worker"], event["timeout_s"]) == ("collective_timeout", 0, TIMEOUT_S)
    assert elapsed < 50, "the watchdog must end the process, not the step's own sleep"


FIT_RAISES = f"""
import tempfile
import time

from workloads.trainer_tf import train
from workloads.trainer_tf.config import parse_args, parse_tf_config
from workloads.trainer_tf.data import load_digits

def fail_in_step(self, batch, logs=None):
    raise RuntimeError("a step failed")  # after the watchdog started this step's clock

train.EpochProgress.on_train_batch_end = fail_in_step
scratch = tempfile.mkdtemp()
config = parse_args(["--epochs", "1", "--backup-dir", scratch + "/backup", "--export", "s3://unused/models/m/",
                     "--collective-timeout", "{TIMEOUT_S}"])
try:
    train.run(config, parse_tf_config(None), load_digits())
except RuntimeError as exc:
    print("fit raised:", exc, flush=True)
time.sleep({TIMEOUT_S} * 2)  # past the step's deadline, outside fit
print("still running", flush=True)
"""
"""Real `train.run` whose `fit` raises mid-step (Keras skips `on_train_end`), then outlives the timeout."""


def test_fit_raising_mid_step_disarms_the_watchdog() -> None:
    result = subprocess.run([sys.executable, "-c", FIT_RAISES], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert COLLECTIVE_TIMEOUT_FLAG not in result.stderr
    assert [line for line in result.stdout.splitlines() if not line.startswith("{")] == [
        "fit raised: a step failed", "still running"]


def test_hang_injector_is_inert_unless_set_for_this_worker() -> None:
    assert HangInjector.from_env(0, {}) is None
    assert HangInjector.from_env(0, {HANG_ENV: "1:3"}) is None
    assert HangInjector.from_env(1, {HANG_ENV: "1:3"}) is not None


CLUSTER_TIMEOUT_S = 5
"""--collective-timeout of the two-worker run. Steps 1 and 2 (tracing included) took 0.65 s on 2 idle cores and 1.3 s
with both cores busy, so a healthy step never reaches it; the run fails about 9 s after start."""
HANG_STEP = 3
"""The hung worker stops before this step, once the first (tracing) steps have passed under the watchdog."""


@pytest.mark.timeout(120)
def test_a_hung_worker_fails_the_other_within_the_collective_timeout(
        s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HANG_ENV, f"1:{HANG_STEP}")  # both workers inherit it; only worker 1 acts on it
    bucket = f"hang-{uuid.uuid4().hex[:10]}"
    s3io.client().create_bucket(Bucket=bucket)
    started = time.monotonic()
    workers = start_cluster(2, lambda i: [
        "--data", "digits", "--epochs", "1", "--batch-size", "64", "--backup-dir", str(tmp_path / f"backup-{i}"),
        "--export", f"s3://{bucket}/models/digits/", COLLECTIVE_TIMEOUT_FLAG, str(CLUSTER_TIMEOUT_S),
    ], s3, tmp_path)
    try:
        chief, hung = workers
        hung.wait_for(lambda e: e.get("event") == "fault_injected", timeout=60)
        hung_at = time.monotonic()
        code = chief.finish(timeout=CLUSTER_TIMEOUT_S + 30)
        waited = time.monotonic() - hung_at
        assert hung.proc.poll() is None, "the hung worker is alive but stuck; only its peer's watchdog ends the run"
    finally:
        stop_all(workers)
    stderr = chief.stderr_path.read_text()
    assert code == 1, stderr[-3000:]
    assert (f"error: {COLLECTIVE_TIMEOUT_FLAG}: worker 0 waited more than {CLUSTER_TIMEOUT_S} s for a training step"
            in stderr)
    assert [e["step"] for e in hung.named("fault_injected")] == [HANG_STEP]
    assert CLUSTER_TIMEOUT_S - 2 < waited < CLUSTER_TIMEOUT_S + 15, f"the chief exited {waited:.1f} s after the hang"
    assert time.monotonic() - started < 60
