"""After a Redis restart the response cache comes back within one backoff window (against a real redis-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from tests.support.servers import redis_server
from workloads.serve.cache import ResponseCache


class _Metrics:
    """The three counters a cache moves, in a private registry."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.cache_hits = Counter("hits", "hits", registry=registry)
        self.cache_misses = Counter("misses", "misses", registry=registry)
        self.cache_errors = Counter("errors", "errors", registry=registry)


def test_a_restart_costs_one_backoff_window_not_one_per_pooled_connection(tmp_path: Path) -> None:
    # Every pooled connection is dead once after a restart. Without a retry on a fresh connection each of them tripped
    # the breaker in turn, and the cache stayed off for minutes under load (the soak, tests/soak).
    async def windows_with_errors() -> int:
        metrics = _Metrics()
        with redis_server(tmp_path) as first:
            cache = ResponseCache(first.url, metrics, ttl_s=60, max_bytes=1 << 20, timeout_s=0.5, backoff_s=0.2)
            await asyncio.gather(*(cache.get(f"warm{i}") for i in range(32)))  # 32 pooled connections
            port = first.port
        with redis_server(tmp_path, port):
            await asyncio.sleep(0.25)  # past any backoff
            windows = 0
            for n in range(1, 13):
                before = metrics.cache_errors._value.get()
                await asyncio.gather(*(cache.get(f"k{n}-{j}") for j in range(n)))
                windows += metrics.cache_errors._value.get() > before
                await asyncio.sleep(0.25)
            return windows

    assert asyncio.run(windows_with_errors()) == 0
