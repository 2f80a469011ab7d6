"""The gateway's Prometheus metrics, under the shared names in `workloads.common.metrics` (the Gateway block).

Each app owns a `CollectorRegistry`, so several gateways can live in one process (tests, benchmarks).
`cache_hits`, `cache_misses` and `cache_errors` are the counters `workloads.serve.cache.ResponseCache` increments.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from workloads.common import metrics as names
from workloads.serve.metrics import LATENCY_BUCKETS

UPSTREAM_ERROR_REASONS: Final = ("connect", "timeout", "protocol", "status", "saturated")
"""`reason` label values: no connection (503), no answer in time (504), a broken answer (502), an upstream 5xx,
and `saturated`: every pooled connection busy (503; the gateway's own limit, not the upstream's fault)."""


class GatewayMetrics:
    """Every metric the gateway exports, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.requests = Counter(names.GATEWAY_REQUESTS_TOTAL, "HTTP requests.", ["route", "status"], registry=reg)
        self.request_duration = Histogram(
            names.GATEWAY_REQUEST_DURATION, "HTTP request latency to the last byte.", ["route", "status"],
            buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.cache_hits = Counter(names.GATEWAY_CACHE_HITS_TOTAL, "Responses served from Redis.", registry=reg)
        self.cache_misses = Counter(
            names.GATEWAY_CACHE_MISSES_TOTAL, "Cacheable requests not found in Redis.", registry=reg
        )
        self.cache_errors = Counter(
            names.GATEWAY_CACHE_ERRORS_TOTAL, "Redis errors and timeouts (the cache failed open).", registry=reg
        )
        self.upstream_errors = Counter(
            names.GATEWAY_UPSTREAM_ERRORS_TOTAL, "Upstream failures by reason.", ["reason"], registry=reg
        )
        self.rate_limited = Counter(
            names.GATEWAY_RATE_LIMITED_TOTAL, "Requests refused by the per-key rate limit.", registry=reg
        )
        for reason in UPSTREAM_ERROR_REASONS:
            # Pre-created at 0 so rate() and alerts see the series before the first failure.
            self.upstream_errors.labels(reason=reason)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(route=route, status=str(status)).inc()
        self.request_duration.labels(route=route, status=str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
