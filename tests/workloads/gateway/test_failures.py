"""Failures around the gateway over a real vLLM: Redis dies under load, the upstream dies and comes back."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from tests.support.servers import RedisServer
from tests.support.vllm import VllmServer
from tests.workloads.gateway.support import API_KEY, live_gateway, serve_in_thread, tcp_proxy
from workloads.common import metrics as names
from workloads.demo.devservers import free_port
from workloads.gateway.app import create_app
from workloads.gateway.settings import GatewaySettings


async def _load(url: str, model: str, total: int, concurrency: int, kill_after: int, kill: Any) -> list[str]:
    """`total` requests, half repeats (cacheable) and half sampled; calls `kill()` once `kill_after` have finished."""
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    gate = asyncio.Semaphore(concurrency)
    done: list[str] = []

    async def one(i: int) -> str:
        async with gate:
            sampled = {"temperature": 1.0} if i % 2 else {"temperature": 0}
            answer = await client.completions.create(model=model, prompt=f"load {i % 5}", max_tokens=4, **sampled)
            done.append(answer.id)
            if len(done) == kill_after:
                kill()
            return answer.choices[0].text

    try:
        return await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        await client.close()


def test_redis_killed_mid_load_loses_no_request(vllm: VllmServer, redis: RedisServer) -> None:
    with live_gateway(vllm.base_url, redis_url=redis.url, cache_timeout_ms=200) as gateway:
        for i in range(5):  # the greedy requests of the load find their answers cached until Redis dies
            gateway.openai().completions.create(model=vllm.model, prompt=f"load {i}", max_tokens=4, temperature=0)
        gateway.cache_written()
        texts = asyncio.run(_load(gateway.url, vllm.model, total=48, concurrency=8, kill_after=12,
                                  kill=redis.proc.kill))
        samples = gateway.metrics()
    assert redis.proc.wait(timeout=10) != 0
    assert len(texts) == 48
    assert samples[names.GATEWAY_CACHE_HITS_TOTAL] >= 1
    assert samples[names.GATEWAY_CACHE_ERRORS_TOTAL] >= 1
    assert samples[f'{names.GATEWAY_REQUESTS_TOTAL}{{route="/v1/completions",status="200"}}'] == 5 + 48


def test_the_upstream_killed_gives_json_503_and_service_resumes_when_it_returns(vllm: VllmServer) -> None:
    port = urlsplit(vllm.base_url).port
    assert port is not None
    with tcp_proxy(port) as proxy, live_gateway(f"http://127.0.0.1:{proxy.port}", connect_timeout_s=1) as gateway:
        client = gateway.openai()
        kwargs: dict[str, Any] = {"model": vllm.model, "prompt": "up", "max_tokens": 3, "temperature": 0}
        assert client.completions.create(**kwargs).choices[0].text
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as down:
            client.completions.create(**kwargs)
        with pytest.raises(openai.InternalServerError) as down_streamed:
            client.chat.completions.create(model=vllm.model, messages=[{"role": "user", "content": "up"}],
                                           max_tokens=3, stream=True)
        with pytest.raises(openai.InternalServerError):
            client.models.list()
        assert time.monotonic() - started < 5
        for error in (down.value, down_streamed.value):
            assert error.status_code == 503
            assert error.response.headers["retry-after"] == "1"
            assert error.response.json()["error"]["code"] == "upstream_unavailable"
            assert error.response.json()["error"]["type"] == "server_error"
        proxy.restore()
        assert client.completions.create(**kwargs).choices[0].text
        samples = gateway.metrics()
    assert samples[f'{names.GATEWAY_UPSTREAM_ERRORS_TOTAL}{{reason="connect"}}'] == 3


def test_an_upstream_that_never_answers_gives_json_504_within_the_read_timeout() -> None:
    # A listener that accepts connections (the kernel's backlog) and never reads or answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        upstream = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with live_gateway(upstream, read_timeout_s=0.5) as gateway:
            started = time.monotonic()
            response = httpx.post(f"{gateway.url}/v1/completions", json={"model": "m", "prompt": "x"},
                                  headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
            elapsed = time.monotonic() - started
    assert response.status_code == 504 and elapsed < 5
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_a_drain_that_runs_out_of_time_answers_json_503() -> None:
    # uvicorn cancels what still runs when its graceful-shutdown timeout (1 s here) expires; the request held by a
    # silent upstream must get a JSON 503 the client can retry elsewhere, not uvicorn's plain-text 500.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent.settimeout(30)
        port = free_port()
        app = create_app(GatewaySettings(upstream=f"http://127.0.0.1:{silent.getsockname()[1]}", allow_anonymous=True,
                                         host="127.0.0.1", port=port, rate_limit_rps=0, read_timeout_s=120))
        answers: list[httpx.Response] = []
        with serve_in_thread(app, port) as server:
            client = threading.Thread(target=lambda: answers.append(httpx.post(
                f"http://127.0.0.1:{port}/v1/completions", json={"model": "m", "prompt": "x"}, timeout=60)))
            client.start()
            held, _ = silent.accept()  # the request has reached the upstream and waits for its answer
            with held:
                server.should_exit = True
                client.join(60)
    assert [a.status_code for a in answers] == [503]
    assert answers[0].headers["retry-after"] == "1"
    assert "shut down before this request finished" in answers[0].json()["error"]["message"]


def test_a_full_connection_pool_is_503_saturated_not_an_upstream_failure() -> None:
    def no_free_connection(request: httpx.Request) -> httpx.Response:
        raise httpx.PoolTimeout("no free connection in the pool", request=request)

    app = create_app(GatewaySettings(upstream="http://runtime:8000", allow_anonymous=True, rate_limit_rps=0),
                     transport=httpx.MockTransport(no_free_connection))
    with TestClient(app) as client:
        response = client.post("/v1/completions", json={"model": "m", "prompt": "x"})
        exported = client.get("/metrics").text
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "gateway_saturated"
    # Counted apart, so the upstream-error alert (which leaves `saturated` out) does not page for a busy runtime.
    assert f'{names.GATEWAY_UPSTREAM_ERRORS_TOTAL}{{reason="saturated"}} 1.0' in exported
    assert f'{names.GATEWAY_UPSTREAM_ERRORS_TOTAL}{{reason="connect"}} 0.0' in exported
