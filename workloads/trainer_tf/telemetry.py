"""Prometheus metrics of the TensorFlow trainer, under the shared names in `workloads.common.metrics`.

Each trainer owns a private registry, so tests (and two trainers in one process) never collide on
the global one; the chief serves it on `--metrics-port`.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from workloads.common import metrics

CHECKPOINT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Histogram buckets for saving plus uploading one backup, in seconds."""


class TrainTelemetry:
    """The trainer's gauges and counters, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create the metrics on `registry` (a fresh one when None)."""
        self.registry = registry or CollectorRegistry()
        self.epoch = Gauge(metrics.TRAIN_EPOCH, "Last completed epoch.", registry=self.registry)
        self.step = Gauge(metrics.TRAIN_STEP, "Last completed optimizer step.", registry=self.registry)
        self.loss = Gauge(metrics.TRAIN_LOSS, "Training loss of the last completed epoch.", registry=self.registry)
        self.examples = Counter(
            metrics.TRAIN_EXAMPLES_TOTAL, "Examples consumed across all workers.", registry=self.registry
        )
        self.last_step_time = Gauge(
            metrics.TRAIN_LAST_STEP_TIMESTAMP, "Unix time of the last completed step.", registry=self.registry
        )
        self.last_checkpoint_time = Gauge(
            metrics.TRAIN_LAST_CHECKPOINT_TIMESTAMP, "Unix time of the last committed backup.", registry=self.registry
        )
        # Exported as 0 until the first epoch ends: the checkpoint alert reads 0 as "not known".
        self.checkpoint_interval = Gauge(
            metrics.TRAIN_CHECKPOINT_EXPECTED_INTERVAL, "Seconds expected between two backups at the measured epoch "
            "time.", registry=self.registry
        )
        self.checkpoint_duration = Histogram(
            metrics.TRAIN_CHECKPOINT_DURATION,
            "Time to save and upload one backup.",
            buckets=CHECKPOINT_BUCKETS,
            registry=self.registry,
        )

    def serve(self, port: int) -> None:
        """Serve `/metrics` on all interfaces at `port` from a daemon thread."""
        # All interfaces: Prometheus scrapes the pod IP from another pod.
        start_http_server(port, addr="0.0.0.0", registry=self.registry)

    def record_step(self, step: int, examples: int) -> None:
        """A step of `examples` global examples finished."""
        self.step.set(step)
        self.examples.inc(examples)
        self.last_step_time.set(time.time())

    def record_epoch(self, epoch: int, loss: float) -> None:
        """`epoch` epochs are complete, the last with mean training loss `loss`."""
        self.epoch.set(epoch)
        self.loss.set(loss)

    def record_checkpoint_interval(self, seconds: float) -> None:
        """The trainer now expects a backup every `seconds` (its last epoch's time, backup included)."""
        self.checkpoint_interval.set(seconds)

    def record_checkpoint(self, seconds: float) -> None:
        """A backup was committed after taking `seconds`."""
        self.checkpoint_duration.observe(seconds)
        self.last_checkpoint_time.set(time.time())
