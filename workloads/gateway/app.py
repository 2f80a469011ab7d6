"""The gateway's FastAPI app: the proxied `/v1` routes, `/health`, `/metrics`, and JSON errors for everything.

Metrics and the last-resort JSON 500 live in a plain ASGI layer (not `BaseHTTPMiddleware`, which buffers
streaming responses), timed to the last byte so streamed requests count their whole duration.
Routes are declared with a raw `Request`: the gateway checks bodies itself (`workloads.gateway.handlers`) and
passes them upstream unchanged, so there is no request model and no OpenAPI spec of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response

from workloads.common.logs import log_event
from workloads.common.vocab import RECOMMENDATIONS_ROUTE
from workloads.gateway.auth import ApiKeys, RateLimiter
from workloads.gateway.handlers import Gateway
from workloads.gateway.metrics import GatewayMetrics
from workloads.gateway.settings import GatewaySettings
from workloads.gateway.upstream import Upstream
from workloads.serve.cache import ResponseCache
from workloads.serve.errors import install_error_handlers
from workloads.serve.middleware import ObservedMiddleware

COMPLETIONS = "/v1/completions"
CHAT_COMPLETIONS = "/v1/chat/completions"
MODELS = "/v1/models"


def create_app(settings: GatewaySettings, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The gateway for `settings`; `transport` replaces the upstream connection (tests, benchmarks)."""
    metrics = GatewayMetrics()
    upstream = Upstream(settings.upstream, metrics, api_key=settings.upstream_api_key,
                        connect_timeout_s=settings.connect_timeout_s, read_timeout_s=settings.read_timeout_s,
                        max_connections=settings.max_connections, transport=transport)
    cache = None
    if settings.redis_url:
        cache = ResponseCache(settings.redis_url, metrics, ttl_s=settings.cache_ttl,
                              max_bytes=settings.cache_max_bytes, timeout_s=settings.cache_timeout_ms / 1000,
                              backoff_s=settings.cache_backoff_s)
    gateway = Gateway(keys=ApiKeys(settings.api_keys, allow_anonymous=settings.allow_anonymous),
                      limiter=RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst,
                                          refused=metrics.rate_limited), upstream=upstream,
                      cache=cache, cache_version=settings.cache_version, max_body_bytes=settings.max_body_bytes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log_event("gateway_started", upstream=settings.upstream, cache=bool(cache),
                  rate_limit_rps=settings.rate_limit_rps)
        yield
        await upstream.close()
        if cache is not None:
            await cache.close()

    app = FastAPI(title="modelplane gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(ObservedMiddleware, observe=metrics.observe_request, component="gateway")

    @app.post(COMPLETIONS)
    async def completions(request: Request) -> Response:
        """OpenAI completions, proxied (and cached when deterministic)."""
        return await gateway.generate(request, COMPLETIONS)

    @app.post(CHAT_COMPLETIONS)
    async def chat_completions(request: Request) -> Response:
        """OpenAI chat completions, proxied (and cached when deterministic)."""
        return await gateway.generate(request, CHAT_COMPLETIONS)

    @app.get(MODELS)
    async def models(request: Request) -> Response:
        """The upstream's model list."""
        return await gateway.models(request)

    @app.get(RECOMMENDATIONS_ROUTE + "/{user_id}")
    async def recommendation(request: Request) -> Response:
        """A user's top-k items from the recommendation service (workloads.recommend.service), never cached."""
        return await gateway.recommend(request)

    @app.post(RECOMMENDATIONS_ROUTE)
    async def recommendations(request: Request) -> Response:
        """Top-k items for the body's user from the recommendation service, never cached."""
        return await gateway.recommend(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness and readiness: the gateway serves (the upstream's state shows in each request's answer)."""
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus exposition of the gateway's metrics."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
