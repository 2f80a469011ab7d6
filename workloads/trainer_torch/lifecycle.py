"""Preemption handling (SIGTERM with a grace period) and the test-only fault injector.

Spot capacity gives a two-minute notice, which reaches the pod as SIGTERM (torchrun forwards it
to every worker). The handler only sets a flag: the step in flight finishes, the ranks agree
to stop through the per-step all-reduce, a checkpoint is committed, and the process exits with
`EXIT_PREEMPTED`. If that takes longer than `--sigterm-grace`, a watchdog exits with
`EXIT_GRACE_EXPIRED` instead of waiting for SIGKILL; the uncommitted checkpoint is ignored on
resume. Both codes are >= 128, which Kubeflow's `restartPolicy: ExitCode` treats as retryable.
https://www.kubeflow.org/docs/components/trainer/legacy-v1/user-guides/pytorch/
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Final

from workloads.common.logs import log_event

EXIT_PREEMPTED: Final = 143
"""Stopped on SIGTERM after committing a checkpoint (128 + SIGTERM, the conventional code)."""
EXIT_GRACE_EXPIRED: Final = 142
"""The grace period ran out before the checkpoint committed (128 + SIGALRM: a timer fired)."""
FAULT_ENV: Final = "MODELPLANE_FAULT_SIGKILL"
"""Test-only: `RANK:STEP:MARKER_FILE` makes that rank SIGKILL itself after STEP, once per marker file."""
HANG_ENV: Final = "MODELPLANE_FAULT_HANG"
"""Test-only: `RANK:STEP` makes that rank stop answering collectives after STEP, as a deadlocked rank would."""


class StopSignal:
    """Remembers a SIGTERM/SIGINT and arms a watchdog that bounds the time left to checkpoint."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.requested = False
        self.signal_name = ""
        """Name of the signal that asked to stop (empty when asked by a peer rank or not at all)."""
        self._watchdog: threading.Timer | None = None

    def install(self) -> None:
        """Route SIGTERM and SIGINT to `request` (main thread only)."""
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # No logging here: the handler can interrupt a write to stdout, and re-entering it raises.
        if not self.requested:
            self.signal_name = signal.Signals(signum).name
            self.request()

    def request(self) -> None:
        """Ask the loop to checkpoint and stop; start the grace-period watchdog."""
        self.requested = True
        self._watchdog = threading.Timer(self.grace_s, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def disarm(self) -> None:
        """The checkpoint committed in time: cancel the watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _expire(self) -> None:
        log_event("grace_expired", grace_s=self.grace_s, exit_code=EXIT_GRACE_EXPIRED)
        os._exit(EXIT_GRACE_EXPIRED)


class FaultInjector:
    """SIGKILLs this rank after a given step, once (a marker file survives the restart), or hangs it after a step."""

    def __init__(self, rank: int, spec: str | None, hang: str | None = None) -> None:
        self.step: int | None = None
        self.marker: Path | None = None
        self.hang_step: int | None = None
        if spec:
            target_rank, step, marker = spec.split(":", 2)
            if int(target_rank) == rank:
                self.step, self.marker = int(step), Path(marker)
        if hang:
            target_rank, step = hang.split(":", 1)
            if int(target_rank) == rank:
                self.hang_step = int(step)

    @classmethod
    def from_env(cls, rank: int) -> FaultInjector:
        """The injector configured by `MODELPLANE_FAULT_SIGKILL` and `MODELPLANE_FAULT_HANG`, inert when unset."""
        return cls(rank, os.environ.get(FAULT_ENV), os.environ.get(HANG_ENV))

    def after_step(self, step: int) -> None:
        """Hang, or kill the process hard if this is the configured step and the marker does not exist yet."""
        if self.hang_step == step:
            log_event("fault_injected", step=step, fault="hang")
            # Sleeps through signals too: only the SIGTERM watchdog (or SIGKILL) ends it, as with a stuck rank.
            threading.Event().wait()
        if self.step != step or self.marker is None or self.marker.exists():
            return
        self.marker.write_text(str(step))
        log_event("fault_injected", step=step, signal="SIGKILL")
        os.kill(os.getpid(), signal.SIGKILL)
