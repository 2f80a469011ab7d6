"""The per-app runtime state and what every route shares: guards (auth, readiness) and the request pipeline.

Both protocols (OpenAI and KServe v2) translate at the same layer: the route turns its request into
engine payloads and a cache identity, `run_request` does cache lookup → submit → wait → cache-put, and
the route's `render` turns engine results back into its protocol's response body.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Receive

from workloads.serve.backends import Backend, InvalidInputError
from workloads.serve.cache import BYPASS, HIT, MISS, CacheStatus, Replay, ResponseCache, cache_key
from workloads.serve.completion import GenerationResult
from workloads.serve.engine import BatchEngine, DeadlineExceededError, QueueFullError, ShuttingDownError, WorkItem
from workloads.serve.errors import ApiError
from workloads.serve.metrics import ServeMetrics
from workloads.serve.settings import ServeSettings


@dataclass
class ServeState:
    """What the routes see: settings, metrics, cache, and the model once it is loaded."""

    settings: ServeSettings
    """Validated settings."""
    metrics: ServeMetrics
    """This app's metrics."""
    cache: ResponseCache | None = None
    """The Redis cache, when --redis-url is set."""
    backend: Backend | None = None
    """The loaded model (None until loaded)."""
    engine: BatchEngine | None = None
    """The batcher (None until the model is loaded and warm)."""
    draining: bool = False
    """True after SIGTERM: readiness fails and new inference requests get 503."""
    load_error: str | None = None
    """Why loading gave up; liveness fails once it is set, so the pod restarts."""
    loaded_at: int = 0
    """Unix time the model became ready."""
    stop_loading: threading.Event = field(default_factory=threading.Event)
    """Set at shutdown to abandon load retries."""
    api_key: str | None = None
    """The API key clients must send, read once at start (`settings.api_key`); None: no authentication."""

    @property
    def ready(self) -> bool:
        """Loaded, warm and not draining."""
        return self.engine is not None and not self.draining


def get_state(request: Request) -> ServeState:
    """The app's `ServeState`."""
    state: ServeState = request.app.state.serve
    return state


_bearer = HTTPBearer(auto_error=False,
                     description="The API key, when the server has --api-key-file or --api-key-env set.")


def require_api_key(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """401 unless the request carries `Authorization: Bearer <key>` (when a key is configured)."""
    expected = get_state(request).api_key
    if expected is None:
        return
    if credentials is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
    # Constant-time comparison, so response timing does not reveal how much of a guess was right.
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(401, "invalid API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def ready_engine(state: ServeState) -> tuple[Backend, BatchEngine]:
    """The backend and engine, or 503 (with Retry-After) while loading or draining."""
    if state.draining:
        raise ApiError(503, "the server is shutting down; retry on another replica", headers={"Retry-After": "1"})
    if state.engine is None or state.backend is None:
        raise ApiError(503, "the model is still loading; retry shortly", headers={"Retry-After": "5"})
    return state.backend, state.engine


def check_model_name(state: ServeState, name: str, *, param: str | None = None) -> None:
    """404 unless `name` is the served model."""
    if name != state.settings.served_name:
        raise ApiError(404, f"model {name!r} is not served here; this server serves {state.settings.served_name!r}",
                       param=param, code="model_not_found")


def check_model_version(state: ServeState, name: str, version: str) -> None:
    """404 unless `name` is the served model and `version` its version (checked once the model is loaded: the
    version comes with it)."""
    check_model_name(state, name)
    served = state.backend.info.version if state.backend is not None else None
    if served is not None and version != served:
        raise ApiError(404, f"version {version!r} of model {name!r} is not served here; this server serves version "
                            f"{served!r}", code="model_not_found")


def submit(state: ServeState, engine: BatchEngine, payloads: Sequence[object],
           events: asyncio.Queue[tuple[int, object, bool]] | None = None) -> list[WorkItem]:
    """Queue payloads, turning a full queue into 429 and a draining engine into 503.

    A request holding more payloads than the whole queue can never be queued, so it is a 400, not a retryable 429.
    """
    if len(payloads) > engine.max_queue:
        raise ApiError(400, f"the request asks for {len(payloads)} sequences (prompts or rows times n or best_of) "
                            f"but this server queues at most {engine.max_queue}; split it into smaller requests")
    try:
        return engine.submit(payloads, timeout_s=state.settings.request_timeout_s, events=events)
    except QueueFullError as exc:
        raise ApiError(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc
    except ShuttingDownError as exc:
        raise ApiError(503, "the server is shutting down; retry on another replica",
                       headers={"Retry-After": "1"}) from exc


def deadline_error(state: ServeState) -> ApiError:
    """The 504 for a request past --request-timeout-s."""
    return ApiError(504, f"the request did not finish within {state.settings.request_timeout_s} s; "
                         "lower max_tokens or retry later")


def engine_error(state: ServeState, exc: BaseException) -> ApiError | None:
    """The response for an engine failure: 504 past the deadline, 503 when draining, None for a bug (500)."""
    if isinstance(exc, TimeoutError | DeadlineExceededError):
        return deadline_error(state)
    if isinstance(exc, ShuttingDownError):
        return ApiError(503, str(exc), headers={"Retry-After": "1"})
    return None


T = TypeVar("T")
CLIENT_CLOSED = 499
"""Status recorded for a request whose client disconnected before its answer (nginx's "client closed request")."""


async def until_disconnected(receive: Receive) -> None:
    """Return once the client has closed the connection (call only after the request body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(work: Coroutine[Any, Any, T], receive: Receive | None) -> T:
    """`work`'s result, or 499 when the client closes the connection first (`work` is then cancelled)."""
    if receive is None:
        return await work
    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(until_disconnected(receive))
    try:
        await asyncio.wait([task, watcher], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise ApiError(CLIENT_CLOSED, "the client closed the connection before the answer was ready")
        return task.result()
    finally:
        task.cancel()
        watcher.cancel()
        if watcher.done() and not watcher.cancelled():
            watcher.exception()  # a receive that failed also means the client is gone: nothing to log


async def _results(items: Sequence[WorkItem]) -> list[object]:
    return [await item.future for item in items]


async def wait_results(state: ServeState, items: Sequence[WorkItem], receive: Receive | None = None) -> list[object]:
    """Every item's result; 504 at the deadline, 499 when the client leaves first (`receive` given): either way the
    items are dropped from their batch, so no tokens are generated for nobody."""
    remaining = items[0].deadline - time.monotonic() if items else 0.0
    try:
        async with asyncio.timeout(max(remaining, 0.0)):
            return await unless_disconnected(_results(items), receive)
    except (TimeoutError, DeadlineExceededError) as exc:
        raise deadline_error(state) from exc
    except ShuttingDownError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from exc
    finally:
        for item in items:
            if not item.future.done() or item.future.cancelled():
                item.cancelled = True


def bad_request(exc: InvalidInputError) -> ApiError:
    """The 400 for an `InvalidInputError`, its message prefixed with the field at fault."""
    message = f"{exc.param}: {exc}" if exc.param else str(exc)
    return ApiError(400, message, param=exc.param)


def observe_first_tokens(state: ServeState, items: Sequence[WorkItem], results: Sequence[object]) -> None:
    """Record time-to-first-token for every generation among `results`."""
    for item, result in zip(items, results, strict=False):
        if isinstance(result, GenerationResult) and result.first_token_at is not None:
            state.metrics.time_to_first_token.observe(result.first_token_at - item.enqueued_at)


async def run_request(state: ServeState, backend: Backend, engine: BatchEngine, payloads: Sequence[object], *,
                      route: str, cache_request: dict[str, Any] | None, replay: Replay,
                      render: Callable[[list[object]], bytes], receive: Receive | None = None
                      ) -> tuple[bytes, CacheStatus]:
    """One non-streaming request: cache lookup, submit, wait, render, cache-put.

    `cache_request` is the canonical request JSON of a deterministic request (None bypasses the cache); `replay`
    turns a cached body into the answer (an entry it rejects is a miss, overwritten by the model's answer); `receive`
    (the request's, its body read) lets a client that disconnects drop its work (see `wait_results`).
    Returns the response body and its `X-Cache` status: hit, miss, or bypass when Redis was not asked.
    """
    key: str | None = None
    status: CacheStatus = BYPASS
    if state.cache is not None and cache_request is not None:
        key = cache_key(state.settings.served_name, backend.info.digest, route, cache_request)
        cached, status = await state.cache.get(key, replay)
        if cached is not None:
            return cached, HIT
    items = submit(state, engine, payloads)
    results = await wait_results(state, items, receive)
    observe_first_tokens(state, items, results)
    content = render(results)
    if key is not None and status == MISS and state.cache is not None:
        await state.cache.put(key, content)
    return content, status
