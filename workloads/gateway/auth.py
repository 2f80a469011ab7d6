"""API keys and the per-key rate limit.

Keys arrive as `Authorization: Bearer KEY` (what the `openai` client sends). Each configured key is compared in
constant time, so response timing does not reveal how much of a guess was right.

The rate limit is a token bucket per key held in this process: each replica enforces `--rate-limit-rps` on its own,
so a key's cluster-wide rate is up to replicas x rps. That keeps Redis off the hot path; a shared limit would need
a Redis script per request and a policy for when Redis is down.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from prometheus_client import Counter

from workloads.serve.errors import ApiError

ANONYMOUS: Final = "anonymous"
"""Caller identity (and rate-limit bucket) of every request when --allow-anonymous is on and no key is sent."""


class ApiKeys:
    """The accepted keys; `identify` turns an Authorization header into a caller id or raises 401."""

    def __init__(self, keys: Iterable[str], *, allow_anonymous: bool) -> None:
        # Only digests are kept: the caller id derived from one is safe to log, and equal lengths compare in
        # constant time.
        self._digests = tuple(hashlib.sha256(key.encode("utf-8")).digest() for key in keys)
        self._allow_anonymous = allow_anonymous

    def identify(self, authorization: str | None) -> str:
        """The caller's id (a short digest of its key, or `anonymous`); `ApiError(401)` for a missing or wrong key."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if not token or scheme.lower() != "bearer":
            if self._allow_anonymous:
                return ANONYMOUS
            raise _unauthorized("no API key: send `Authorization: Bearer KEY` (the openai client's api_key)")
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found = None
        for known in self._digests:
            if hmac.compare_digest(digest, known):
                found = known
        if found is None:
            raise _unauthorized("invalid API key: use a key from the gateway's key file or key variable")
        return found.hex()[:12]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller: `rate` tokens a second up to `burst`; each request takes one. rate 0 = no limit."""

    def __init__(self, rate: float, burst: int, *, refused: Counter | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._refused = refused
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, caller: str) -> float:
        """Take a token for `caller`: 0.0 when granted, else the seconds until one is available."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.setdefault(caller, _Bucket(self._burst, now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def check(self, caller: str) -> None:
        """Take a token or raise `ApiError(429)` with `Retry-After` in whole seconds (at least 1), counted in `refused`."""
        wait = self.acquire(caller)
        if wait > 0:
            if self._refused is not None:
                self._refused.inc()
            raise ApiError(429, f"rate limit exceeded: {self._rate:g} requests/s with bursts of {self._burst:g} per "
                                f"API key; retry after {wait:.2f} s", code="rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
