"""The gateway against a stub upstream that behaves as vLLM does on the points that matter for a proxy: a client that
leaves cancels the upstream's work, and `stream` is decided the way vLLM's pydantic models decide it."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from tests.support.servers import RedisServer, free_port
from tests.workloads.gateway.support import API_KEY, LiveGateway, live_gateway, serve_in_thread
from workloads.common import metrics as names
from workloads.gateway.handlers import CACHE_HEADER

AUTH = {"Authorization": f"Bearer {API_KEY}"}


class _Stream(BaseModel):
    """vLLM's `stream: bool | None = False` (entrypoints/openai/completion/protocol.py), lax like vLLM's models."""

    stream: bool | None = False


@dataclass
class Upstream:
    """What the stub saw: requests started, and those whose client (the gateway) went away before the end."""

    started: threading.Event = field(default_factory=threading.Event)
    abandoned: threading.Event = field(default_factory=threading.Event)
    calls: int = 0


def upstream_app(seen: Upstream) -> FastAPI:
    """A slow OpenAI-like upstream: streams a chunk every 50 ms, or answers after 3 s, for about 3 s."""
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = json.loads(await request.body())
        seen.calls += 1
        seen.started.set()
        if _Stream.model_validate(body).stream:
            async def events() -> AsyncIterator[bytes]:
                try:
                    for index in range(60):
                        yield f'data: {{"choices":[{{"index":0,"text":"{index}"}}]}}\n\n'.encode()
                        await asyncio.sleep(0.05)
                    yield b"data: [DONE]\n\n"
                except asyncio.CancelledError:
                    seen.abandoned.set()
                    raise

            return StreamingResponse(events(), media_type="text/event-stream")
        if body.get("prompt") == "slow":
            for _ in range(60):
                if await request.is_disconnected():
                    seen.abandoned.set()
                    return JSONResponse({"error": {"message": "client left"}}, status_code=499)
                await asyncio.sleep(0.05)
        return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "text": "done", "finish_reason": "stop"}]}

    return app


@pytest.fixture()
def seen() -> Upstream:
    """The stub's record."""
    return Upstream()


@pytest.fixture()
def gateway(seen: Upstream, redis: RedisServer) -> Iterator[LiveGateway]:
    """A gateway with a cache in front of the stub."""
    port = free_port()
    with serve_in_thread(upstream_app(seen), port), live_gateway(f"http://127.0.0.1:{port}",
                                                                 redis_url=redis.url) as gateway:
        yield gateway


def _leave_after_start(gateway: LiveGateway, seen: Upstream, body: dict[str, Any]) -> None:
    """Send `body` and hang up once the upstream has started on it."""
    def call() -> None:
        try:
            with httpx.stream("POST", f"{gateway.url}/v1/completions", json=body, headers=AUTH, timeout=1.0) as reply:
                for _ in reply.iter_raw():
                    return  # the first chunk: leave
        except httpx.TimeoutException:
            pass

    caller = threading.Thread(target=call)
    caller.start()
    assert seen.started.wait(5)
    caller.join(5)


def test_a_client_leaving_a_stream_cancels_the_upstream_request(gateway: LiveGateway, seen: Upstream) -> None:
    _leave_after_start(gateway, seen, {"prompt": "x", "stream": True})
    assert seen.abandoned.wait(2), "the upstream kept generating for a client that left"


def test_a_client_leaving_a_plain_request_cancels_the_upstream_request(gateway: LiveGateway, seen: Upstream) -> None:
    started = time.monotonic()
    _leave_after_start(gateway, seen, {"prompt": "slow", "temperature": 0})
    assert seen.abandoned.wait(2), "the upstream kept generating for a client that left"
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("stream", [1, "true"])
def test_a_stream_asked_for_as_vllm_accepts_it_is_relayed_and_never_cached(gateway: LiveGateway, seen: Upstream,
                                                                          stream: Any) -> None:
    body = {"prompt": "x", "stream": stream, "temperature": 0}
    started = time.monotonic()
    with httpx.stream("POST", f"{gateway.url}/v1/completions", json=body, headers=AUTH, timeout=10) as reply:
        first = next(reply.iter_raw())
        # A relayed stream delivers its first event long before the upstream's last (about 3 s later).
        first_after = time.monotonic() - started
    assert first.startswith(b"data: ")
    assert first_after < 1.5
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert CACHE_HEADER not in reply.headers
    gateway.cache_written()
    assert gateway.metrics().get(names.GATEWAY_CACHE_MISSES_TOTAL, 0) == 0


def test_a_client_hanging_up_mid_body_is_499_not_a_gateway_500(gateway: LiveGateway, seen: Upstream,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {API_KEY}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"prompt\": ".encode())
        time.sleep(0.2)
    requests = f'{names.GATEWAY_REQUESTS_TOTAL}{{route="/v1/completions",status="499"}}'
    deadline = time.monotonic() + 5
    while gateway.metrics().get(requests) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    samples = gateway.metrics()
    assert samples.get(requests) == 1
    assert not any(name.startswith(names.GATEWAY_REQUESTS_TOTAL) and 'status="500"' in name for name in samples)
    assert "unhandled_error" not in capsys.readouterr().out
    assert seen.calls == 0


def keyed_runtime() -> FastAPI:
    """An upstream that, like vLLM started with --api-key (entrypoints/serve/middleware/authenticate.py), answers
    401 `{"error": "Unauthorized"}` to any /v1 request without its key."""
    app = FastAPI()

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if request.headers.get("authorization") != "Bearer sk-runtime":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return await call_next(request)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "m", "object": "model", "created": 1, "owned_by": "vllm"}]}

    return app


def test_an_upstream_refusing_the_gateways_key_is_a_502_not_the_clients_401(
        monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("R5_RUNTIME_KEY", "sk-wrong")
    with serve_in_thread(keyed_runtime(), port):
        with live_gateway(f"http://127.0.0.1:{port}", upstream_api_key_env="R5_RUNTIME_KEY") as gateway:
            # The client's own key is valid: its SDK must not report it as the problem.
            with pytest.raises(openai.InternalServerError, match="refused the gateway's own credentials") as refused:
                gateway.openai().models.list()
            assert refused.value.status_code == 502
            assert "--upstream-api-key-env" in refused.value.message
        monkeypatch.setenv("R5_RUNTIME_KEY", "sk-runtime")
        with live_gateway(f"http://127.0.0.1:{port}", upstream_api_key_env="R5_RUNTIME_KEY") as gateway:
            assert [model.id for model in gateway.openai().models.list()] == ["m"]
