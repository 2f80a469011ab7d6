"""The gateway's edges against stub upstreams: a relayed stream that breaks mid-way still ends with `[DONE]`, and a
corrupt cache entry is a miss (in the header and the metrics) that the upstream's fresh answer replaces."""

from __future__ import annotations

import json

import httpx
from redis import Redis as SyncRedis

from tests.support.servers import RedisServer, free_port
from tests.workloads.gateway.support import API_KEY, live_gateway, serve_in_thread
from tests.workloads.gateway.test_cache_backoff import _upstream
from tests.workloads.gateway.test_stub_upstream import CHUNK_1, Stub, stub_app
from workloads.common import metrics as names
from workloads.gateway.handlers import CACHE_HEADER
from workloads.serve.cache import HIT, MISS


def test_a_stream_broken_mid_way_ends_with_an_error_event_then_done() -> None:
    stub = Stub(mode="broken")
    stub.release.set()
    port = free_port()
    with serve_in_thread(stub_app(stub), port), live_gateway(f"http://127.0.0.1:{port}") as gateway:
        response = httpx.post(f"{gateway.url}/v1/completions", json={"prompt": "x", "stream": True},
                              headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert response.content.startswith(CHUNK_1)
    events = [block.removeprefix("data: ") for block in response.text.split("\n\n") if block]
    # As vLLM ends a failed stream (entrypoints/openai/completion/serving.py): the error event, then [DONE].
    assert events[-1] == "[DONE]", events
    assert json.loads(events[-2])["error"]["code"] == "upstream_error"


def test_a_corrupt_cache_entry_is_a_miss_and_the_fresh_answer_replaces_it(redis: RedisServer) -> None:
    calls: list[int] = []
    port = free_port()
    with serve_in_thread(_upstream(calls), port), \
            live_gateway(f"http://127.0.0.1:{port}", redis_url=redis.url) as gateway, \
            gateway.openai() as client, SyncRedis.from_url(redis.url) as direct:
        def status() -> str:
            answer = client.completions.with_raw_response.create(model="m", prompt="the", max_tokens=2,
                                                                  temperature=0)
            assert answer.parse().choices[0].text == "a fox"
            gateway.cache_written()
            return answer.headers[CACHE_HEADER]

        first = status()
        (key,) = direct.keys("*")
        direct.set(key, b"\xff not json")
        corrupt = status()
        replaced = json.loads(direct.get(key))
        last = status()
        samples = gateway.metrics()
    assert [first, corrupt, last] == [MISS, MISS, HIT]
    assert replaced["choices"][0]["text"] == "a fox", "the upstream's answer overwrote the corrupt entry"
    assert len(calls) == 2
    assert samples[names.GATEWAY_CACHE_HITS_TOTAL] == 1
    assert samples[names.GATEWAY_CACHE_MISSES_TOTAL] == 2
    assert samples.get(names.GATEWAY_CACHE_ERRORS_TOTAL, 0) == 0

