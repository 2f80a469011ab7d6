"""Failures around the gateway over a real vLLM: Redis dies under load, the upstream dies and comes back."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tests.support.servers import RedisServer
from tests.support.vllm import VllmServer
from tests.workloads.gateway.support import API_KEY, live_gateway, tcp_proxy
from workloads.common import metrics as names


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
