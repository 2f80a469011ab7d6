"""API keys and the per-key rate limit, through the official client over a real vLLM."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import RedisServer
from tests.support.vllm import VllmServer
from tests.workloads.gateway.support import API_KEY, live_gateway
from workloads.common import metrics as names
from workloads.gateway.auth import ANONYMOUS, ApiKeys, RateLimiter
from workloads.gateway.handlers import CACHE_HEADER
from workloads.serve.cache import HIT, MISS
from workloads.serve.errors import ApiError

SECOND_KEY = "sk-second-caller"


def test_a_wrong_key_is_an_authentication_error(vllm: VllmServer) -> None:
    with live_gateway(vllm.base_url) as gateway:
        with pytest.raises(openai.AuthenticationError, match="invalid API key") as wrong:
            gateway.openai(api_key="sk-wrong").completions.create(model=vllm.model, prompt="x", max_tokens=1)
        with pytest.raises(openai.AuthenticationError):
            gateway.openai(api_key="sk-wrong").models.list()
    assert wrong.value.status_code == 401
    assert wrong.value.code == "invalid_api_key"
    assert wrong.value.response.headers["www-authenticate"] == "Bearer"


def test_a_missing_key_is_401_in_openais_error_shape(vllm: VllmServer) -> None:
    with live_gateway(vllm.base_url) as gateway:
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": vllm.model, "messages": []})
        health, metrics = httpx.get(f"{gateway.url}/health"), httpx.get(f"{gateway.url}/metrics")
    assert response.status_code == 401
    assert response.json() == {"error": {
        "message": "no API key: send `Authorization: Bearer KEY` (the openai client's api_key)",
        "type": "authentication_error", "param": None, "code": "invalid_api_key"}}
    assert (health.status_code, metrics.status_code) == (200, 200)


def test_the_rate_limit_is_429_with_retry_after_per_key(vllm: VllmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_MORE_KEYS", SECOND_KEY)
    # 0.01/s refills one token per 100 s, so however slow the machine, the third request finds the bucket empty
    # (refilling is tested on a fake clock below).
    with live_gateway(vllm.base_url, rate_limit_rps=0.01, rate_limit_burst=2,
                      api_keys_env="GATEWAY_TEST_MORE_KEYS") as gateway:
        client = gateway.openai()
        for _ in range(2):
            client.completions.create(model=vllm.model, prompt="x", max_tokens=1)
        with pytest.raises(openai.RateLimitError, match="rate limit exceeded") as limited:
            client.completions.create(model=vllm.model, prompt="x", max_tokens=1)
        # Another key has its own bucket.
        assert gateway.openai(api_key=SECOND_KEY).completions.create(model=vllm.model, prompt="x", max_tokens=1)
        samples = gateway.metrics()
    assert limited.value.status_code == 429
    assert 90 <= int(limited.value.response.headers["retry-after"]) <= 100
    assert limited.value.code == "rate_limit_exceeded"
    assert samples[names.GATEWAY_RATE_LIMITED_TOTAL] == 1


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.acquire("k") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    now[0] = 0.25
    assert limiter.acquire("k") == pytest.approx(0.25)
    now[0] = 100.0
    assert [limiter.acquire("k") for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]
    assert RateLimiter(0, 1).acquire("k") == 0.0


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    limiter = RateLimiter(0.1, 1, clock=lambda: 0.0)
    limiter.check("k")
    with pytest.raises(ApiError) as limited:
        limiter.check("k")
    assert (limited.value.status, limited.value.headers) == (429, {"Retry-After": "10"})


def test_anonymous_callers_share_one_identity_only_when_allowed() -> None:
    assert ApiKeys([API_KEY], allow_anonymous=True).identify(None) == ANONYMOUS
    keys = ApiKeys([API_KEY], allow_anonymous=False)
    for header in (None, "", "Bearer ", f"Basic {API_KEY}", API_KEY):
        with pytest.raises(ApiError, match="no API key"):
            keys.identify(header)
    assert keys.identify(f"Bearer {API_KEY}") == keys.identify(f"bearer  {API_KEY} ")
    assert API_KEY not in keys.identify(f"Bearer {API_KEY}")


def test_cached_answers_are_kept_per_api_key(vllm: VllmServer, redis: RedisServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_MORE_KEYS", SECOND_KEY)
    with live_gateway(vllm.base_url, redis_url=redis.url, api_keys_env="GATEWAY_TEST_MORE_KEYS") as gateway:
        kwargs: dict[str, Any] = {"model": vllm.model, "prompt": "per key", "max_tokens": 4, "temperature": 0}
        sources = []
        for key in (API_KEY, SECOND_KEY, API_KEY):
            answer = gateway.openai(api_key=key).completions.with_raw_response.create(**kwargs)
            sources.append(answer.headers[CACHE_HEADER])
            gateway.cache_written()
    # The second key asks what the first asked: it must not learn that, nor get the first key's answer.
    assert sources == [MISS, MISS, HIT]
