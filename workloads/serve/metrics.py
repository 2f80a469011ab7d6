"""The server's Prometheus metrics, under the shared names in `workloads.common.metrics`.

Each app owns a `CollectorRegistry`, so several apps can live in one process (tests, benchmarks)
without colliding in the global registry.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from workloads.common import metrics as names

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds: from a cache hit (~1 ms) to a long generation (~1 min)."""
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Batch sizes up to the --max-batch-size limit."""


class ServeMetrics:
    """Every metric the server exports, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.requests = Counter(names.INFERENCE_REQUESTS_TOTAL, "HTTP requests.", ["route", "status"], registry=reg)
        self.request_duration = Histogram(
            names.INFERENCE_REQUEST_DURATION, "HTTP request latency.", ["route", "status"],
            buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.time_to_first_token = Histogram(
            names.INFERENCE_TIME_TO_FIRST_TOKEN, "Time from arrival to the first generated token.",
            buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.generated_tokens = Counter(names.INFERENCE_GENERATED_TOKENS_TOTAL, "Tokens generated.", registry=reg)
        self.batch_size = Histogram(
            names.INFERENCE_BATCH_SIZE, "Size of each executed batch.", buckets=BATCH_BUCKETS, registry=reg
        )
        self.queue_depth = Gauge(names.INFERENCE_QUEUE_DEPTH, "Requests waiting for a batch slot.", registry=reg)
        self.in_flight = Gauge(names.INFERENCE_IN_FLIGHT, "Requests accepted and not yet answered.", registry=reg)
        self.cache_hits = Counter(names.INFERENCE_CACHE_HITS_TOTAL, "Responses served from Redis.", registry=reg)
        self.cache_misses = Counter(
            names.INFERENCE_CACHE_MISSES_TOTAL, "Cacheable requests not found in Redis.", registry=reg
        )
        self.cache_errors = Counter(
            names.INFERENCE_CACHE_ERRORS_TOTAL, "Redis errors and timeouts (the cache failed open).", registry=reg
        )
        self.model_ready = Gauge(names.INFERENCE_MODEL_READY, "1 once the model is loaded and warm.", registry=reg)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(route=route, status=str(status)).inc()
        self.request_duration.labels(route=route, status=str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
