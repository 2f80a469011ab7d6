"""The Redis response cache against a real redis-server: hits, what is never cached, and failing open."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from redis import Redis as SyncRedis

from tests.support.servers import RedisServer, redis_server
from tests.workloads.serve.support import live_server, metric
from workloads.common import metrics as names
from workloads.serve.cache import BYPASS, HIT, MISS, STATUS_HEADER


def _greedy(name: str, prompt: str = "the quick", **extra: object) -> dict[str, object]:
    return {"model": name, "prompt": prompt, "max_tokens": 12, "temperature": 0, **extra}


def test_cache_hit_returns_the_same_choices_with_a_fresh_id_and_counts_a_hit(model_uri: str,
                                                                              redis: RedisServer) -> None:
    with live_server(model_uri, redis_url=redis.url) as server, server.client() as client:
        first = client.post("/v1/completions", json=_greedy(server.name))
        # Same request with the defaults spelled out: the canonical form makes it the same key.
        second = client.post("/v1/completions", json=_greedy(server.name, top_p=1.0, n=1, user="someone"))
        samples = server.metrics()
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers[STATUS_HEADER], second.headers[STATUS_HEADER]) == (MISS, HIT)
    fields = ("object", "model", "system_fingerprint", "choices", "usage")
    assert {k: second.json()[k] for k in fields} == {k: first.json()[k] for k in fields}
    assert second.json()["id"] != first.json()["id"], "a hit must not replay the stored id"
    assert second.json()["created"] >= first.json()["created"]
    assert metric(samples, names.INFERENCE_CACHE_HITS_TOTAL) == 1
    assert metric(samples, names.INFERENCE_CACHE_MISSES_TOTAL) == 1
    assert metric(samples, f"{names.INFERENCE_BATCH_SIZE}_count") == 1, "the hit ran no model"


def test_seeded_sampling_is_cached_and_unseeded_sampling_is_not(model_uri: str, redis: RedisServer) -> None:
    with live_server(model_uri, redis_url=redis.url) as server, server.client() as client:
        seeded = [client.post("/v1/completions", json=_greedy(server.name, temperature=1.0, seed=3)) for _ in "ab"]
        unseeded = [client.post("/v1/completions", json=_greedy(server.name, temperature=1.0)) for _ in "ab"]
        streamed = client.post("/v1/completions", json=_greedy(server.name, stream=True))
    assert [r.headers[STATUS_HEADER] for r in seeded] == [MISS, HIT]
    assert [r.headers[STATUS_HEADER] for r in unseeded] == [BYPASS, BYPASS]
    assert streamed.headers[STATUS_HEADER] == BYPASS


def test_errors_and_oversized_bodies_are_never_cached(model_uri: str, redis: RedisServer) -> None:
    with live_server(model_uri, redis_url=redis.url, cache_max_bytes=64, max_tokens_cap=20) as server, \
            server.client() as client:
        too_many = _greedy(server.name, max_tokens=21)
        errors = [client.post("/v1/completions", json=too_many).status_code for _ in "ab"]
        big = [client.post("/v1/completions", json=_greedy(server.name)).headers["x-cache"] for _ in "ab"]
    assert errors == [400, 400]
    assert big == [MISS, MISS], "a body over --cache-max-bytes is served but not stored"
    assert redis_keys(redis) == []


def redis_keys(redis: RedisServer) -> list[bytes]:
    """Every key in the test Redis."""
    with SyncRedis.from_url(redis.url) as client:
        return list(client.keys("*"))


def test_cached_entries_expire_after_the_ttl(model_uri: str, redis: RedisServer) -> None:
    with live_server(model_uri, redis_url=redis.url, cache_ttl=30) as server, server.client() as client:
        client.post("/v1/completions", json=_greedy(server.name))
    with SyncRedis.from_url(redis.url) as direct:
        (key,) = direct.keys("modelplane:serve:v1:*")
        assert 0 < direct.ttl(key) <= 30


async def _burst(server_url: str, name: str, count: int) -> list[int]:
    async with httpx.AsyncClient(base_url=server_url, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/completions", json=_greedy(name, prompt=f"p{i % 3}")) for i in range(count))
        )
    return [r.status_code for r in responses]


def test_killing_redis_mid_test_loses_no_requests(model_uri: str, redis: RedisServer) -> None:
    with live_server(model_uri, redis_url=redis.url, cache_backoff_s=0.2) as server, server.client() as client:
        assert client.post("/v1/completions", json=_greedy(server.name)).headers[STATUS_HEADER] == MISS
        assert client.post("/v1/completions", json=_greedy(server.name)).headers[STATUS_HEADER] == HIT
        redis.proc.kill()
        redis.proc.wait()
        statuses = asyncio.run(_burst(server.url, server.name, 12))
        later = []
        for _ in range(3):
            # Past the backoff the cache tries Redis again, fails fast, and still serves the request.
            time.sleep(0.25)
            later.append(client.post("/v1/completions", json=_greedy(server.name)))
        samples = server.metrics()
    assert statuses == [200] * 12
    assert [r.status_code for r in later] == [200] * 3
    assert {r.headers[STATUS_HEADER] for r in later} == {MISS}
    assert metric(samples, names.INFERENCE_CACHE_ERRORS_TOTAL) >= 4
    assert metric(samples, names.INFERENCE_CACHE_HITS_TOTAL) == 1


def test_answers_during_the_backoff_say_bypass_as_redis_is_not_asked(model_uri: str, redis: RedisServer,
                                                                     tmp_path: Path) -> None:
    with live_server(model_uri, redis_url=redis.url, cache_backoff_s=1.0) as server, server.client() as client:
        def status() -> str:
            answer = client.post("/v1/completions", json=_greedy(server.name))
            assert answer.status_code == 200
            return str(answer.headers["x-cache"])

        before = [status(), status()]
        redis.proc.kill()
        redis.proc.wait()
        # The first call after the outage asks Redis and fails (a miss); the breaker opens, and the next calls
        # within the backoff never ask it.
        outage = [status(), status(), status()]
        errors = metric(server.metrics(), names.INFERENCE_CACHE_ERRORS_TOTAL)
        with redis_server(tmp_path, port=redis.port):
            time.sleep(1.1)
            after = [status(), status()]  # Redis is asked again: the restarted one is empty
    assert before == [MISS, HIT]
    assert outage == [MISS, BYPASS, BYPASS]
    assert errors == 1, "one failed call per backoff window"
    assert after == [MISS, HIT]
