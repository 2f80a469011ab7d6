"""Run `python -m workloads.trainer_tf` as real processes: one worker, or a MultiWorkerMirroredStrategy cluster.

Each process's JSON-line stdout is parsed as it arrives, so a test can act on a log line (kill a
worker after epoch k) while training runs. Shared by the tests and `tests/bench/test_bench_trainer_tf.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.support.servers import S3Server, free_port
from workloads.common.vocab import JOBSET_ENV
from workloads.trainer_tf.jobset import jobset_tf_config

REPO_ROOT = Path(__file__).resolve().parents[3]
"""The repository root: the working directory of every trainer process."""

Event = dict[str, Any]


def trainer_env(server: S3Server, tmpdir: Path | None = None) -> dict[str, str]:
    """Environment for a trainer process: the test S3 server, quiet TF logs and one thread per op pool."""
    env = {**os.environ, **server.env(), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           # Two workers share a 2-core runner: one thread per pool avoids oversubscribing it.
           }
    env.pop("TF_CONFIG", None)
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return env


def jobset_env(replicas: int, index: int, name: str = "digits") -> dict[str, str]:
    """The JobSet variables of worker `index` in a JobSet `name` of `replicas` workers, as the downward API sets them."""
    name_var, job_var, replicas_var, index_var = JOBSET_ENV  # declared in this order
    return {name_var: name, job_var: "worker", replicas_var: str(replicas), index_var: str(index)}


def tf_config(ports: list[int], index: int) -> str:
    """`TF_CONFIG` for worker `index`: what the trainer computes from its JobSet variables, each JobSet hostname
    (resolvable only in the cluster) swapped for the loopback port that worker listens on."""
    computed = jobset_tf_config(jobset_env(len(ports), index))
    assert computed is not None
    spec = json.loads(computed)
    spec["cluster"]["worker"] = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps(spec)


@dataclass
class Worker:
    """One trainer process and the JSON events it has printed so far."""

    index: int
    proc: subprocess.Popen[str]
    stderr_path: Path
    events: list[Event] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _eof: bool = False

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith("{"):
                with self._cond:
                    self.events.append(json.loads(line))
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def start_reader(self) -> None:
        """Parse stdout on a daemon thread."""
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """The first event matching `predicate`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = next((event for event in self.events if predicate(event)), None)
                if match is not None:
                    return match
                if self._eof:
                    raise AssertionError(f"worker {self.index} closed stdout (exit {self.proc.poll()}) without the "
                                         f"event; stderr tail:\n{self.stderr_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"worker {self.index}: no matching event within {timeout}s; "
                                         f"stderr tail:\n{self.stderr_tail()}")
                self._cond.wait(min(remaining, 0.5))

    def named(self, name: str) -> list[Event]:
        """Every event called `name`, in order."""
        with self._cond:
            return [event for event in self.events if event.get("event") == name]

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines of stderr, for failure messages."""
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def finish(self, timeout: float) -> int:
        """Wait for exit and return the exit code; kill on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise AssertionError(f"worker {self.index} did not finish in {timeout}s; "
                                 f"stderr:\n{self.stderr_tail()}") from exc

    def kill(self) -> None:
        """SIGKILL the process, as a node loss or OOM kill would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def start_worker(args: list[str], env: dict[str, str], logdir: Path, index: int = 0) -> Worker:
    """Start one `python -m workloads.trainer_tf` process with `args`."""
    logdir.mkdir(parents=True, exist_ok=True)
    stderr_path = logdir / f"worker-{index}.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workloads.trainer_tf", *args],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    worker = Worker(index=index, proc=proc, stderr_path=stderr_path)
    worker.start_reader()
    return worker


def start_cluster(
    num_workers: int, args_for: Callable[[int], list[str]], server: S3Server, workdir: Path
) -> list[Worker]:
    """Start `num_workers` processes as the pods of a JobSet, on fresh loopback ports; worker 0 is the chief."""
    ports = [free_port() for _ in range(num_workers)]
    workers = []
    for index in range(num_workers):
        env = trainer_env(server, workdir / f"tmp-{index}")
        if num_workers > 1:
            # A JobSet pod's env, plus the loopback TF_CONFIG that wins over it (the JobSet hostnames do not resolve).
            env.update(jobset_env(num_workers, index), TF_CONFIG=tf_config(ports, index))
        workers.append(start_worker(args_for(index), env, workdir / "logs", index))
    return workers


def stop_all(workers: list[Worker]) -> None:
    """SIGKILL every worker still running (test cleanup)."""
    for worker in workers:
        worker.kill()


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the trainer to completion and capture its output."""
    return subprocess.run([sys.executable, "-m", "workloads.trainer_tf", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
