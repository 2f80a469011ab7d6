"""Overload and deadlines: a full queue is 429 with Retry-After, a late request is 504, never a 5xx crash."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.workloads.serve.support import LiveServer, live_server, metric
from workloads.common import metrics as names


def _long(server: LiveServer, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": server.name, "prompt": prompt, "max_tokens": 200, "temperature": 0, **extra}


async def _flood(server: LiveServer, count: int, **extra: Any) -> list[httpx.Response]:
    async with server.async_client() as client:
        return list(await asyncio.gather(
            *(client.post("/v1/completions", json=_long(server, f"p{i}", **extra)) for i in range(count))
        ))


def test_more_requests_than_queue_plus_batch_get_429_and_no_5xx(model_uri: str) -> None:
    with live_server(model_uri, max_batch_size=2, max_queue=3, max_wait_ms=50) as server:
        responses = asyncio.run(_flood(server, 20))
        samples = server.metrics()
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 20 - 2 * 5, "at most queue + batch can be admitted per batch"
    assert statuses.count(200) >= 2
    rejected = next(r for r in responses if r.status_code == 429)
    assert int(rejected.headers["retry-after"]) >= 1
    assert "queue is full" in rejected.json()["error"]["message"]
    assert rejected.json()["error"]["type"] == "rate_limit_error"
    assert metric(samples, f'{names.INFERENCE_REQUESTS_TOTAL}{{route="/v1/completions",status="429"}}') \
        == statuses.count(429)
    assert metric(samples, names.INFERENCE_QUEUE_DEPTH) == 0
    assert metric(samples, names.INFERENCE_IN_FLIGHT) == 0


def test_a_request_past_its_deadline_gets_504(model_uri: str) -> None:
    with live_server(model_uri, max_batch_size=1, request_timeout_s=0.25) as server:
        responses = asyncio.run(_flood(server, 4))
        streamed = asyncio.run(_flood(server, 3, stream=True))
        samples = server.metrics()
    statuses = [r.status_code for r in responses + streamed]
    assert set(statuses) <= {200, 504}, statuses
    late = [r for r in responses + streamed if r.status_code == 504]
    assert len(late) >= 4, "requests queued behind a long generation miss their 0.25 s deadline"
    assert all("did not finish within 0.25 s" in r.json()["error"]["message"] for r in late)
    assert metric(samples, names.INFERENCE_IN_FLIGHT) == 0


def test_queue_depth_and_in_flight_are_exported_while_busy(model_uri: str) -> None:
    async def probe(server: LiveServer) -> tuple[float, float]:
        async with server.async_client() as client:
            work = [asyncio.create_task(client.post("/v1/completions", json=_long(server, f"q{i}")))
                    for i in range(6)]
            # Sample until all six have been queued (or 5 s pass): then exactly one runs, five wait.
            deadline = time.monotonic() + 5
            while True:
                samples = server.metrics()
                if metric(samples, names.INFERENCE_QUEUE_DEPTH) == 5 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            await asyncio.gather(*work)
        return metric(samples, names.INFERENCE_QUEUE_DEPTH), metric(samples, names.INFERENCE_IN_FLIGHT)

    with live_server(model_uri, max_batch_size=1, max_wait_ms=0) as server:
        depth, in_flight = asyncio.run(probe(server))
    assert (depth, in_flight) == (5, 6), "max batch 1: one request generates while the other five queue"
