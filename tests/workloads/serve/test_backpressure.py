"""Overload and deadlines: a full queue is 429 with Retry-After, a late request is 504, never a 5xx crash.

Every test holds generation behind a `Gate`, so what is queued, refused or late depends on the test,
not on how fast the machine generates.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.workloads.serve.support import Gate, LiveServer, live_server, metric, wait_until_submitted
from workloads.common import metrics as names


def _long(server: LiveServer, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": server.name, "prompt": prompt, "max_tokens": 200, "temperature": 0, **extra}


async def _flood(server: LiveServer, count: int, **extra: Any) -> list[httpx.Response]:
    async with server.async_client() as client:
        return list(await asyncio.gather(
            *(client.post("/v1/completions", json=_long(server, f"p{i}", **extra)) for i in range(count))
        ))


async def _flood_then_open(server: LiveServer, gate: Gate, count: int, refused: int) -> list[httpx.Response]:
    """Send `count` requests while generation is held; open the gate once `refused` of them have answered."""
    async with server.async_client() as client:
        work = [asyncio.create_task(client.post("/v1/completions", json=_long(server, f"p{i}"))) for i in range(count)]
        async with asyncio.timeout(60):
            while sum(task.done() for task in work) < refused:
                await asyncio.sleep(0.01)
        gate.open()
        return list(await asyncio.gather(*work))


def test_more_requests_than_queue_plus_batch_get_429_and_no_5xx(model_uri: str) -> None:
    gate = Gate()
    with live_server(model_uri, loader=gate.loader(), max_batch_size=2, max_queue=3, max_wait_ms=50) as server:
        # While the gate holds the first batch (at most 2) the queue takes 3 more: at least 15 of 20 are refused.
        responses = asyncio.run(_flood_then_open(server, gate, 20, refused=15))
        samples = server.metrics()
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 15, "only the running batch and the queue are admitted"
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
    gate = Gate()
    with live_server(model_uri, loader=gate.loader(), max_batch_size=1, request_timeout_s=0.25) as server:
        try:
            responses = asyncio.run(_flood(server, 4))
            streamed = asyncio.run(_flood(server, 3, stream=True))
        finally:
            gate.open()
        samples = server.metrics()
    statuses = [r.status_code for r in responses + streamed]
    assert statuses == [504] * 7, "generation is held past every request's 0.25 s deadline"
    assert all("did not finish within 0.25 s" in r.json()["error"]["message"] for r in responses + streamed)
    assert metric(samples, names.INFERENCE_IN_FLIGHT) == 0


def test_queue_depth_and_in_flight_are_exported_while_busy(model_uri: str) -> None:
    async def probe(server: LiveServer, gate: Gate) -> dict[str, float]:
        async with server.async_client() as client:
            work = [asyncio.create_task(client.post("/v1/completions", json=_long(server, f"q{i}")))
                    for i in range(6)]
            try:
                samples = await asyncio.to_thread(wait_until_submitted, server, 6)
            finally:
                gate.open()
            await asyncio.gather(*work)
        return samples

    gate = Gate()
    with live_server(model_uri, loader=gate.loader(), max_batch_size=1, max_wait_ms=0) as server:
        samples = asyncio.run(probe(server, gate))
    assert (metric(samples, names.INFERENCE_QUEUE_DEPTH), metric(samples, names.INFERENCE_IN_FLIGHT)) == (5, 6), \
        "max batch 1: one request generates while the other five queue"
