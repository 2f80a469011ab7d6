"""The proxied OpenAI routes: admission, body checks, the response cache, and streaming relayed as it arrives.

Order per request: API key (401), rate limit (429), body size (413), body text (400: not UTF-8, not JSON, a lone
surrogate, not an object), then the cache (deterministic, non-streamed requests only, kept per API key), then the
upstream.
The upstream gets the client's bytes unchanged; the gateway parses them only to check them and to key the cache.
A client that hangs up before its answer cancels the upstream request (its connection is closed, so the runtime
stops generating); a stream is relayed chunk by chunk and stops the same way.
Recommendations (`/v1/recommendations`, served by workloads.recommend.service) pass the same admission and body
checks but never the cache (see `Gateway.recommend`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import httpx
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from workloads.gateway.auth import ApiKeys, RateLimiter
from workloads.gateway.upstream import PASSED_RESPONSE_HEADERS, Upstream
from workloads.serve.backends import InvalidInputError
from workloads.serve.bodies import parse_json
from workloads.serve.cache import BYPASS, HIT, MISS, CacheStatus, ResponseCache, cache_key
from workloads.serve.errors import ApiError
from workloads.serve.state import until_disconnected

_T = TypeVar("_T")

CACHE_HEADER: Final = "x-modelplane-cache"
"""Response header on cacheable requests: `hit` (served from Redis, upstream not called), `miss`, or `bypass` (Redis
not asked: the cache is backing off after an error); see workloads.serve.cache."""
CLIENT_CLOSED_REQUEST: Final = 499
"""Status recorded (nginx's convention) for a request whose client hung up before its answer; nobody receives it."""
EVENT_STREAM: Final = "text/event-stream"
"""Content type of a streamed (SSE) upstream answer: relayed as it arrives, never cached."""
CACHE_VERSION_PREFIX: Final = "gateway:"
"""Prefixes --cache-version in keys, so gateway entries never collide with the server's own in a shared Redis."""


@dataclass
class Gateway:
    """What the route handlers share: settings-derived limits and the gateway's clients."""

    keys: ApiKeys
    """The accepted API keys."""
    limiter: RateLimiter
    """The per-key token buckets."""
    upstream: Upstream
    """The runtime's client."""
    cache: ResponseCache | None
    """The Redis response cache; None without --redis-url."""
    cache_version: str
    """--cache-version, part of every cache key."""
    max_body_bytes: int
    """--max-body-bytes."""
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    """Cache writes still running; held so the event loop does not drop them (it keeps only weak references)."""

    @property
    def pending_cache_writes(self) -> int:
        """Cache writes started and not yet finished."""
        return len(self._pending)

    def admit(self, request: Request) -> str:
        """Check the API key, then take a rate-limit token; the caller's id, or `ApiError` 401 or 429."""
        caller = self.keys.identify(request.headers.get("authorization"))
        self.limiter.check(caller)
        return caller

    async def read_body(self, request: Request) -> bytes:
        """The request body, or `ApiError(413)` past --max-body-bytes (checked while reading, not only declared)."""
        declared = request.headers.get("content-length", "")
        limit = self.max_body_bytes
        too_large = ApiError(413, f"request body is larger than the gateway's limit of {limit} bytes", param="body")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        except ClientDisconnect as exc:
            # Not a gateway failure (no 500 in the metrics, no bug logged): nobody is left to answer.
            raise ApiError(CLIENT_CLOSED_REQUEST, "the client hung up before sending the whole body") from exc
        return b"".join(chunks)

    async def generate(self, request: Request, route: str) -> Response:
        """Proxy one completion or chat completion request to the upstream, through the cache when deterministic.

        Whether the answer streams is the upstream's call, read from its `Content-Type`: vLLM's request models are
        lax pydantic (`stream: bool | None`, entrypoints/openai/completion/protocol.py), so `"stream": 1` or
        `"true"` streams too, and such a stream must be relayed as it arrives, never buffered or cached.
        """
        caller = self.admit(request)
        raw = await self.read_body(request)
        body = _checked_body(raw)
        key = None
        status: CacheStatus = BYPASS
        if self.cache is not None and body.get("stream") in (None, False) and is_deterministic(body):
            model = body.get("model")
            # Per caller: one API key's answers (and whether a prompt was asked at all) never reach another key.
            key = cache_key(model if isinstance(model, str) else "",
                            f"{CACHE_VERSION_PREFIX}{self.cache_version}:{caller}", route, body)
            # An entry that no longer replays is a miss (ResponseCache.get): answered anew, and the answer replaces it.
            cached, status = await self.cache.get(key, _replay)
            if cached is not None:
                return Response(cached, media_type="application/json", headers={CACHE_HEADER: HIT})
        response = await _unless_client_leaves(request, self.upstream.send("POST", route, raw, stream=True))
        if response is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        headers = _passed_headers(response.headers)
        if response.headers.get("content-type", "").startswith(EVENT_STREAM) and response.status_code < 400:
            # Proxies (nginx) must not buffer the events either.
            headers |= {"cache-control": "no-cache", "x-accel-buffering": "no"}
            # The background close also runs when the client leaves before the first chunk, when the relay's own
            # `finally` never does; without it that pooled upstream connection would leak.
            return StreamingResponse(self.upstream.relay(response, route), headers=headers,
                                     background=BackgroundTask(response.aclose))
        content = await _unless_client_leaves(request, self.upstream.read(response))
        if content is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        if key is not None and self.cache is not None:
            # Redis not asked (backing off): bypass, and nothing to store.
            headers[CACHE_HEADER] = status
            if response.status_code == 200 and status == MISS:
                # Stored after answering: the client does not wait for Redis (put never raises; it fails open).
                task = asyncio.create_task(self.cache.put(key, content))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
        return Response(content, status_code=response.status_code, headers=headers)

    async def recommend(self, request: Request) -> Response:
        """Proxy one recommendation request (GET with its query, or POST with its JSON body), never cached.

        The cache is bypassed rather than keyed by a feature version: a recommendation reads the user's live
        features, which every event changes, so a version would have to be read from Redis before each call (a
        round trip per request for hits that last until the user's next event) and a replayed answer would be
        stale for a user who is active, the only user who asks. The service marks its answers `no-store` too.
        """
        self.admit(request)
        path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        if request.url.query:
            path += "?" + request.url.query
        raw = None
        if request.method == "POST":
            raw = await self.read_body(request)
            _checked_body(raw)
        response = await self.upstream.send(request.method, path, raw)
        headers = _passed_headers(response.headers) | {"cache-control": "no-store"}
        return Response(response.content, status_code=response.status_code, headers=headers)

    async def models(self, request: Request) -> Response:
        """The upstream's model list, unchanged."""
        self.admit(request)
        response = await self.upstream.send("GET", "/v1/models")
        return Response(response.content, status_code=response.status_code, headers=_passed_headers(response.headers))


async def _unless_client_leaves(request: Request, work: Coroutine[Any, Any, _T]) -> _T | None:
    """`work`'s result, or None when the client hung up first: `work` is then cancelled, which closes its upstream
    connection, and vLLM aborts a request whose connection closes (entrypoints/utils.py `with_cancellation` runs the
    same race), so a client that gives up stops the generation instead of leaving it to run to max_tokens."""
    task = asyncio.ensure_future(work)
    left = asyncio.ensure_future(until_disconnected(request.receive))
    try:
        await asyncio.wait((task, left), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the gateway's own drain gave up on this request
        task.cancel()
        left.cancel()
        raise
    left.cancel()
    if task.done():
        return task.result()
    task.cancel()
    outcome = (await asyncio.gather(task, return_exceptions=True))[0]
    if isinstance(outcome, httpx.Response):  # it finished before the cancel landed: nobody will read it
        await outcome.aclose()
    return None


def _checked_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; `ApiError(400)` naming the field for bad text, bad JSON or a non-object."""
    try:
        body = parse_json(raw)
    except InvalidInputError as exc:
        raise ApiError(400, f"{exc.param}: {exc}", param=exc.param) from exc
    if not isinstance(body, dict):
        raise ApiError(400, f"body: must be a JSON object (got a JSON {type(body).__name__})", param="body")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, f"model: must be a string naming a model from /v1/models (got {json.dumps(model)[:80]})",
                       param="model")
    return body


def is_deterministic(body: dict[str, Any]) -> bool:
    """True when the answer is a function of the request: temperature 0 (greedy) or a fixed integer seed."""
    seed, temperature = body.get("seed"), body.get("temperature")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return True
    return isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0


def _replay(cached: bytes) -> bytes:
    """A cached body with a fresh `id` (same prefix: `cmpl-`, `chatcmpl-`) and `created`; ValueError if unreadable."""
    data = json.loads(cached)
    if not isinstance(data, dict):
        raise ValueError(f"a cached answer must be a JSON object, not a JSON {type(data).__name__}")
    prefix = str(data.get("id", "cmpl")).split("-", 1)[0]
    data["id"] = f"{prefix}-{uuid.uuid4().hex}"
    data["created"] = int(time.time())
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _passed_headers(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in PASSED_RESPONSE_HEADERS if name in headers}
