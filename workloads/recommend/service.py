"""`python -m workloads.recommend.service`: top-k recommendations from the exported model and live Redis features.

Routes (JSON errors in OpenAI's shape under /v1, from workloads.serve.errors):
- `GET /v1/recommendations/{user_id}?k=10&exclude_seen=true` and `POST /v1/recommendations`
  `{"user_id": ..., "k": 10, "exclude_seen": true}`: the ranked items with scores, what they were ranked by
  (`source`: model+recent, model, recent or popularity), the state of the live features (`features`: live,
  none, unavailable or off), how many recent items the similarity used (`recent_items`: the newest --recent-items)
  and how many seen items were left out (`excluded_items`: the whole recent list the processor keeps, its
  --recent-items, when exclude_seen). A bad field is a 400 naming it; k above --max-k too.
- `/health` and `/metrics` (`modelplane_recommend_requests_total`, `modelplane_recommend_request_duration_seconds`).

The user's recent items come from the stream processor's Redis (workloads.recommend.features.FeatureStore.user),
read on every request. When Redis fails or is slower than --redis-timeout-ms the answer degrades to the model
alone, says so (`"degraded": true`, `"features": "unavailable"`), and stays a 200. Answers carry
`Cache-Control: no-store`: they change with every event the user sends.
"""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Final, Literal

import redis
import torch
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workloads.common import metrics as names
from workloads.common.logs import log_event
from workloads.common.settings import HTTP_KEEP_ALIVE_S, SettingsError
from workloads.common.vocab import RECOMMENDATIONS_ROUTE
from workloads.recommend import storage
from workloads.recommend.events import Event
from workloads.recommend.features import FeatureStore
from workloads.recommend.model import ExportMismatchError, Recommender
from workloads.recommend.model_settings import ServiceSettings
from workloads.serve.backends import InvalidInputError
from workloads.serve.bodies import parse_json
from workloads.serve.errors import ApiError, install_error_handlers
from workloads.serve.metrics import LATENCY_BUCKETS
from workloads.serve.middleware import ObservedMiddleware

MAX_BODY_BYTES: Final = 64 * 1024
"""Largest POST body: a user id and two scalars fit in far less."""
NO_STORE: Final = {"cache-control": "no-store"}
"""Every recommendation depends on live features, so no cache may keep one."""
FeatureState = Literal["live", "none", "unavailable", "off"]
"""live: features read; none: the user has none (new or expired); unavailable: Redis failed; off: no --redis-url."""


class RecommendationRequest(BaseModel):
    """A request for one user's top-k items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Annotated[str, *Event.model_fields["user_id"].metadata]
    """The user, as in the events (1-128 of letters, digits, `_.:-`)."""
    k: int = Field(10, ge=1)
    """How many items to return, 1..--max-k. Defaults to 10."""
    exclude_seen: bool = True
    """Leave out every item in the user's live recent list (all the processor keeps). Defaults to true."""


class ServiceMetrics:
    """The service's Prometheus series in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        """The registry /metrics serves."""
        self.requests = Counter(names.RECOMMEND_REQUESTS_TOTAL.removesuffix("_total"), "HTTP requests.",
                                ["route", "status"], registry=self.registry)
        """Requests, labelled route and status."""
        self.duration = Histogram(names.RECOMMEND_REQUEST_DURATION, "HTTP request latency.", ["route", "status"],
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        """Latency, labelled route and status."""

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(route=route, status=str(status)).inc()
        self.duration.labels(route=route, status=str(status)).observe(seconds)


class Service:
    """The loaded model and the feature store; `recommend` answers one request."""

    def __init__(self, settings: ServiceSettings, model: Recommender) -> None:
        self.settings = settings
        """The service's settings."""
        self.model = model
        """The loaded export."""
        self.features: FeatureStore | None = None
        """The processor's feature store; None without --redis-url."""
        if settings.redis_url:
            timeout = settings.redis_timeout_ms / 1000
            client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
            # Only `user()` is called: the write-side parameters (cap, TTL, half-life) are never used here.
            self.features = FeatureStore(client, prefix=settings.key_prefix, recent_items=settings.recent_items,
                                         ttl_s=1, half_life_s=1.0)

    def validated(self, raw: dict[str, Any], *, strict: bool) -> RecommendationRequest:
        """The request, or `ApiError(400)` naming the first bad field and the fix.

        `strict` for a JSON body, whose values carry their types (`{"k": true}` is refused, not read as 1); a query
        string's values are all text, so GET is validated in lax mode.
        """
        try:
            request = RecommendationRequest.model_validate(raw, strict=strict)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "body"
            given = "" if error["type"] == "missing" else f" (got {error.get('input')!r})"
            raise ApiError(400, f"{field}: {error['msg']}{given}", param=field) from exc
        if request.k > self.settings.max_k:
            raise ApiError(400, f"k: must be at most {self.settings.max_k}, the service's --max-k (got {request.k})",
                           param="k")
        return request

    def _recent(self, user_id: str) -> tuple[list[str], FeatureState]:
        if self.features is None:
            return [], "off"
        try:
            recent = self.features.user(user_id).recent
        except redis.RedisError as exc:
            log_event("features_unavailable", error=repr(exc))
            return [], "unavailable"
        return recent, "live" if recent else "none"

    def recommend(self, request: RecommendationRequest) -> dict[str, Any]:
        """The answer's JSON body."""
        seen, state = self._recent(request.user_id)
        # The similarity follows the newest --recent-items; exclude_seen leaves out all the processor keeps.
        recent = seen[: self.settings.recent_items]
        excluded = set(seen) if request.exclude_seen else set()
        ranking = self.model.rank(request.user_id, recent, k=request.k, exclude=excluded,
                                  recent_weight=self.settings.recent_weight)
        return {"user_id": request.user_id, "items": [{"item_id": i, "score": round(s, 6)} for i, s in ranking.items],
                "source": ranking.source, "features": state, "recent_items": len(recent),
                "excluded_items": len(excluded), "degraded": state == "unavailable"}


async def _json_body(request: Request) -> dict[str, Any]:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"body: larger than {MAX_BODY_BYTES} bytes; send only user_id, k and exclude_seen",
                           param="body")
        chunks.append(chunk)
    try:
        body = parse_json(b"".join(chunks))
    except InvalidInputError as exc:
        raise ApiError(400, f"{exc.param}: {exc}", param=exc.param) from exc
    if not isinstance(body, dict):
        raise ApiError(400, f"body: must be a JSON object such as {{\"user_id\": \"u1\", \"k\": 10}} "
                       f"(got a JSON {type(body).__name__})", param="body")
    return body


def load_model(settings: ServiceSettings) -> Recommender:
    """The export at --model-uri (downloaded first when it is on S3)."""
    scratch = Path(settings.download_dir or tempfile.mkdtemp(prefix="recommender-"))
    folder = storage.local_copy(settings.model_uri, scratch)
    model = Recommender.load(folder)
    log_event("model_loaded", uri=settings.model_uri, users=len(model.users), items=len(model.items),
              evaluation=model.metrics)
    return model


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service for `settings`; the model loads at startup, before the first request is accepted."""
    metrics = ServiceMetrics()
    holder: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            model = await run_in_threadpool(load_model, settings)
        except ExportMismatchError as exc:
            log_event("model_invalid", uri=settings.model_uri, error=str(exc))
            raise
        holder["service"] = Service(settings, model)
        yield

    app = FastAPI(title="modelplane recommendation service", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(ObservedMiddleware, observe=metrics.observe_request, component="recommendation service")

    async def answer(raw: dict[str, Any], *, strict: bool) -> Response:
        service = holder["service"]
        body = await run_in_threadpool(service.recommend, service.validated(raw, strict=strict))
        return JSONResponse(body, headers=NO_STORE)

    @app.get(RECOMMENDATIONS_ROUTE + "/{user_id}")
    async def recommend_get(user_id: str, request: Request) -> Response:
        """Top-k items for the user in the path; `k` and `exclude_seen` from the query."""
        return await answer({**request.query_params, "user_id": user_id}, strict=False)

    @app.post(RECOMMENDATIONS_ROUTE)
    async def recommend_post(request: Request) -> Response:
        """Top-k items for the body's `user_id`."""
        return await answer(await _json_body(request), strict=True)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and readiness: the model is loaded (uvicorn accepts nothing before)."""
        model = holder["service"].model
        return {"status": "ok", "users": len(model.users), "items": len(model.items)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus exposition of the service's metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _ignore(sig: int, frame: FrameType | None) -> None:
    """A no-op SIGTERM handler: uvicorn re-raises the signal after draining; this makes that exit 0."""


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM; exit 0 after draining, 2 on bad settings, 3 (uvicorn's startup failure) when the model
    does not load."""
    try:
        settings = ServiceSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, timeout_graceful_shutdown=settings.drain_timeout_s, lifespan="on",
                            timeout_keep_alive=HTTP_KEEP_ALIVE_S)
    signal.signal(signal.SIGTERM, _ignore)
    log_event("starting", host=settings.host, port=settings.port, model_uri=settings.model_uri)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
