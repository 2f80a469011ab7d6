"""The Redis response cache: deterministic requests only, and it fails open.

The key is sha256 over the model name, the model version (from the export's manifest, so new
weights never serve old answers), the route and the canonical JSON of the validated request
(defaults filled in, keys sorted), so equivalent requests share an entry. Only successful
response bodies are stored, and only up to `--cache-max-bytes`.

Any Redis error or timeout is counted and the request is served uncached; the cache then skips
Redis for `--cache-backoff-s` seconds (a simple circuit breaker), so an outage costs one
short timeout per backoff window instead of one per request.

An entry that no longer reads (corrupt, truncated, or from an older response schema) is counted and reported as a
miss, not a hit: the model answers, and its answer overwrites the entry.

Each answer says where it came from (the server's `X-Cache`, the gateway's `x-modelplane-cache`): `hit`, `miss`
(Redis was asked and had no entry, or failed on this request) or `bypass` (Redis was not asked: the request is not
cacheable, or the cache is backing off after an error).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, Final, Literal, NamedTuple, Protocol

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from workloads.common.logs import log_event

KEY_PREFIX: Final = "modelplane:serve:v1:"
STATUS_HEADER: Final = "X-Cache"
"""The server's response header giving the answer's CacheStatus (the gateway has its own, handlers.CACHE_HEADER)."""
CacheStatus = Literal["hit", "miss", "bypass"]
"""Where an answer came from, as its cache header says."""
HIT: Final[CacheStatus] = "hit"
"""The answer is the cached body."""
MISS: Final[CacheStatus] = "miss"
"""Redis was asked and had no entry (or failed on this request): the model answered."""
BYPASS: Final[CacheStatus] = "bypass"
"""Redis was not asked (a request that is never cached, or the cache backing off): the model answered."""


Replay = Callable[[bytes], bytes]
"""Turns a stored body into the one to send (e.g. with a fresh id); raises ValueError when the entry does not read."""


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


class Lookup(NamedTuple):
    """A cache lookup's outcome: the cached body (on a hit) and the status the cache header reports."""

    body: bytes | None
    """The cached response body; None unless `status` is hit."""
    status: CacheStatus
    """hit, miss, or bypass when Redis was not asked (backing off)."""


class ResponseCache:
    """Get/set response bodies in Redis with short timeouts, a size bound and a circuit breaker."""

    def __init__(self, url: str, metrics: CacheMetrics, *, ttl_s: int, max_bytes: int, timeout_s: float,
                 backoff_s: float) -> None:
        # One immediate retry, on a fresh connection (within the hard bound in get/put): after a Redis restart every
        # pooled connection is dead once, and without it each one tripped the breaker in turn (the soak, tests/soak).
        self._redis: Redis = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1),
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

    async def get(self, key: str, replay: Replay | None = None) -> Lookup:
        """The cached body, as `replay` makes it when given (hit); no body on a miss, an error or an entry `replay`
        rejects (miss), or while backing off (bypass)."""
        if not self.available:
            return Lookup(None, BYPASS)
        try:
            # A hard bound on top of the socket timeouts: connection setup and pool waits count too.
            async with asyncio.timeout(self._timeout_s * 2):
                value = await self._redis.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip("get", exc)
            return Lookup(None, MISS)
        if value is None:
            self._metrics.cache_misses.inc()
            return Lookup(None, MISS)
        try:
            body = value if isinstance(value, bytes) else str(value).encode("utf-8")
            if replay is not None:
                body = replay(body)
        except ValueError as exc:  # json, pydantic and UTF-8 decoding errors are all ValueErrors
            self._metrics.cache_misses.inc()
            log_event("cache_entry_unreadable", key=key, error=repr(exc)[:300])
            return Lookup(None, MISS)
        self._metrics.cache_hits.inc()
        return Lookup(body, HIT)

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
