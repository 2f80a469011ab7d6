"""The FastAPI application: routes, middleware, and the lifespan that loads, warms and drains the model.

The model loads in a background thread with retries, so `/v2/health/live` answers from the
first moment while `/v2/health/ready` stays 503 until the load and the warm-up are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from fastapi import FastAPI, Response

from workloads.common.logs import log_event
from workloads.serve import routes_openai, routes_v2
from workloads.serve.backends import Backend
from workloads.serve.cache import ResponseCache
from workloads.serve.engine import BatchEngine
from workloads.serve.errors import install_error_handlers
from workloads.serve.loader import Loader, load_backend, load_with_retries
from workloads.serve.metrics import ServeMetrics
from workloads.serve.middleware import ServeMiddleware
from workloads.serve.schemas import InferRequest, InferResponse
from workloads.serve.settings import ServeSettings
from workloads.serve.state import ServeState


async def _load_in_thread(state: ServeState, loader: Loader) -> Backend:
    # A daemon thread rather than the default executor: a load stuck in retries must not block exit.
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Backend] = loop.create_future()

    def settle(result: Backend | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(cast(Backend, result))

    def run() -> None:
        try:
            backend = load_with_retries(state.settings, loader, state.stop_loading)
        except Exception as exc:  # handed to the loop, which reports it
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, backend, None)

    threading.Thread(target=run, name="model-loader", daemon=True).start()
    return await done


async def start_model(state: ServeState, loader: Loader) -> None:
    """Load (with retries), warm up and start batching; on giving up, fail liveness."""
    started = time.monotonic()
    try:
        backend = await _load_in_thread(state, loader)
        settings = state.settings
        engine = BatchEngine(backend, state.metrics, max_batch_size=settings.max_batch_size,
                             max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue)
        await engine.start()
    except Exception as exc:  # any load failure ends in the same place: liveness fails
        state.load_error = f"model load failed: {exc!r}"
        log_event("model_load_failed", error=repr(exc), uri=state.settings.model_uri)
        return
    state.backend, state.engine = backend, engine
    state.loaded_at = int(time.time())
    state.metrics.model_ready.set(1)
    log_event("model_ready", name=backend.info.name, version=backend.info.version,
              seconds=round(time.monotonic() - started, 3))


def begin_drain(state: ServeState) -> None:
    """Fail readiness and refuse new inference (called on SIGTERM, before connections close)."""
    if not state.draining:
        state.draining = True
        state.metrics.model_ready.set(0)
        log_event("draining")


def create_app(settings: ServeSettings, *, loader: Loader = load_backend) -> FastAPI:
    """The server app for `settings`; `loader` makes one load attempt (tests inject other backends)."""
    metrics = ServeMetrics()
    # Read once here, not per request: a file problem fails the start, never a request (rotation: restart).
    state = ServeState(settings=settings, metrics=metrics, api_key=settings.api_key)
    if settings.redis_url:
        state.cache = ResponseCache(
            settings.redis_url, metrics, ttl_s=settings.cache_ttl, max_bytes=settings.cache_max_bytes,
            timeout_s=settings.cache_timeout_ms / 1000.0, backoff_s=settings.cache_backoff_s,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(start_model(state, loader), name="model-start")
        try:
            yield
        finally:
            begin_drain(state)
            state.stop_loading.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if state.engine is not None:
                await state.engine.drain(settings.drain_timeout_s)
            if state.cache is not None:
                await state.cache.close()
            log_event("stopped")

    app = FastAPI(title="modelplane-serve", version="1", lifespan=lifespan,
                  description="OpenAI-compatible completions and chat completions, and KServe v2 inference.")
    app.state.serve = state
    install_error_handlers(app)
    app.include_router(routes_openai.router)
    app.include_router(routes_v2.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app.add_middleware(ServeMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    _document_raw_bodies(app)
    return app


def _document_raw_bodies(app: FastAPI) -> None:
    """Add the schemas of the bodies routes parse themselves (v2 infer) to the published spec's components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in (InferRequest, InferResponse):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
