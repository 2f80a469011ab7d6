"""The step watchdog behind --collective-timeout: a step that outlives it ends the worker with a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.workloads.trainer_tf.cluster import REPO_ROOT
from workloads.common.vocab import COLLECTIVE_TIMEOUT_FLAG

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
