"""The Redis response cache: deterministic requests only, and it fails open.

The key is sha256 over the model name, the model version (from the export's manifest, so new
weights never serve old answers), the route and the canonical JSON of the validated request
(defaults filled in, keys sorted), so equivalent requests share an entry. Only successful
response bodies are stored, and only up to `--cache-max-bytes`.

Any Redis error or timeout is counted and the request is served uncached; the cache then skips
Redis for `--cache-backoff-s` seconds (a simple circuit breaker), so an outage costs one
short timeout per backoff window instead of one per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any, Final, Protocol

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from workloads.common.logs import log_event

KEY_PREFIX: Final = "modelplane:serve:v1:"


def cache_key(model: str, version: str, route: str, request: dict[str, Any]) -> str:
    """Redis key of a response: prefix + sha256(model, version, route, canonical request JSON)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256("\n".join((model, version, route, canonical)).encode("utf-8")).hexdigest()
    return KEY_PREFIX + digest


class CacheMetrics(Protocol):
    """The three counters a cache moves: the server and the gateway each export them under their own names."""

    cache_hits: Counter
    cache_misses: Counter
    cache_errors: Counter


class ResponseCache:
    """Get/set response bodies in Redis with short timeouts, a size bound and a circuit breaker."""

    def __init__(self, url: str, metrics: CacheMetrics, *, ttl_s: int, max_bytes: int, timeout_s: float,
                 backoff_s: float) -> None:
        # No client-side retries: a failed call is counted and skipped, never retried on the request path.
        self._redis: Redis = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._metrics = metrics
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        self._open_until = 0.0

    @property
    def available(self) -> bool:
        """False while backing off after an error."""
        return time.monotonic() >= self._open_until

    def _trip(self, operation: str, exc: BaseException) -> None:
        self._metrics.cache_errors.inc()
        self._open_until = time.monotonic() + self._backoff_s
        log_event("cache_error", operation=operation, error=repr(exc), backoff_s=self._backoff_s)

    async def get(self, key: str) -> bytes | None:
        """The cached body, or None on a miss, an error or while backing off."""
        if not self.available:
            return None
        try:
            # A hard bound on top of the socket timeouts: connection setup and pool waits count too.
            async with asyncio.timeout(self._timeout_s * 2):
                value = await self._redis.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip("get", exc)
            return None
        if value is None:
            self._metrics.cache_misses.inc()
            return None
        self._metrics.cache_hits.inc()
        return value if isinstance(value, bytes) else str(value).encode("utf-8")

    async def put(self, key: str, body: bytes) -> None:
        """Store `body` for the TTL, unless it is over the size bound or Redis is unavailable."""
        if len(body) > self._max_bytes or not self.available:
            return
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                await self._redis.set(key, body, ex=self._ttl_s)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip("set", exc)

    async def close(self) -> None:
        """Close the connection pool."""
        try:
            await self._redis.aclose()
        except (RedisError, OSError) as exc:
            log_event("cache_close_error", error=repr(exc))
