"""The gateway in front of a real vLLM (CPU), driven with the official `openai` client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import RedisServer
from tests.support.vllm import VllmServer
from tests.workloads.gateway.support import API_KEY, LiveGateway, live_gateway, upstream_requests
from workloads.common import metrics as names
from workloads.gateway.handlers import CACHE_HEADER
from workloads.serve.cache import HIT, MISS

PROMPT = "The quick brown fox"


@pytest.fixture()
def gateway(vllm: VllmServer, redis: RedisServer) -> Iterator[LiveGateway]:
    """A gateway with the cache on, in front of the session's vLLM."""
    with live_gateway(vllm.base_url, redis_url=redis.url) as gateway:
        yield gateway


def direct(vllm: VllmServer) -> openai.OpenAI:
    """The official client talking to vLLM itself."""
    return openai.OpenAI(base_url=f"{vllm.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def settled_upstream_requests(vllm: VllmServer, at_least: float) -> float:
    """vLLM's finished-request count once it reaches `at_least` (vLLM records it just after answering)."""
    deadline = time.monotonic() + 10
    count = upstream_requests(vllm)
    while count < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        count = upstream_requests(vllm)
    return count


def test_completions_through_the_gateway_match_a_direct_call(vllm: VllmServer, gateway: LiveGateway) -> None:
    kwargs: dict[str, Any] = {"model": vllm.model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    via = gateway.openai().completions.create(**kwargs)
    ref = direct(vllm).completions.create(**kwargs)
    assert via.object == "text_completion"
    assert via.choices[0].text == ref.choices[0].text
    assert via.usage == ref.usage and via.usage is not None and via.usage.completion_tokens == 8


def test_chat_completions_through_the_gateway_match_a_direct_call(vllm: VllmServer, gateway: LiveGateway) -> None:
    kwargs: dict[str, Any] = {"model": vllm.model, "max_tokens": 8, "temperature": 0,
                              "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    via = gateway.openai().chat.completions.create(**kwargs)
    ref = direct(vllm).chat.completions.create(**kwargs)
    assert via.object == "chat.completion"
    assert via.choices[0].message.role == "assistant"
    assert via.choices[0].message.content == ref.choices[0].message.content


def _events(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> list[Any]:
    """The SSE events of a streamed request, with the per-request `id` and `created` blanked."""
    events: list[Any] = []
    with client.stream("POST", url, json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            event = data if data == "[DONE]" else json.loads(data)
            if isinstance(event, dict):
                event |= {"id": "", "created": 0}
            events.append(event)
    return events


@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
def test_streaming_passes_through_unchanged(vllm: VllmServer, gateway: LiveGateway, route: str) -> None:
    body: dict[str, Any] = {"model": vllm.model, "max_tokens": 12, "temperature": 0, "stream": True}
    body |= {"prompt": PROMPT} if route == "/v1/completions" else {"messages": [{"role": "user", "content": PROMPT}]}
    with httpx.Client() as client:
        via = _events(client, f"{gateway.url}{route}", body, {"Authorization": f"Bearer {API_KEY}"})
        ref = _events(client, f"{vllm.base_url}{route}", body, {})
    assert via == ref
    assert via[-1] == "[DONE]" and len(via) >= 12


def test_the_openai_client_streams_through_the_gateway(vllm: VllmServer, gateway: LiveGateway) -> None:
    client = gateway.openai()
    kwargs: dict[str, Any] = {"model": vllm.model, "max_tokens": 10, "temperature": 0,
                              "messages": [{"role": "user", "content": "Tell me"}]}
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                       client.chat.completions.create(stream=True, **kwargs) if chunk.choices)
    assert streamed == client.chat.completions.create(**kwargs).choices[0].message.content


def test_models_lists_the_upstream_model(vllm: VllmServer, gateway: LiveGateway) -> None:
    assert [model.id for model in gateway.openai().models.list()] == [vllm.model]


def test_a_cache_hit_skips_the_upstream_and_gets_a_fresh_id(vllm: VllmServer, gateway: LiveGateway) -> None:
    client = gateway.openai()
    kwargs: dict[str, Any] = {"model": vllm.model, "prompt": "cache me", "max_tokens": 6, "temperature": 0}
    before = upstream_requests(vllm)
    first = client.completions.with_raw_response.create(**kwargs)
    gateway.cache_written()
    after_first = settled_upstream_requests(vllm, before + 1)
    time.sleep(1.1)  # so a replayed `created` would differ
    second = client.completions.with_raw_response.create(**kwargs)
    time.sleep(0.3)
    assert (after_first - before, upstream_requests(vllm) - after_first) == (1, 0)
    assert (first.headers[CACHE_HEADER], second.headers[CACHE_HEADER]) == (MISS, HIT)
    one, two = first.parse(), second.parse()
    assert two.choices == one.choices
    assert two.id != one.id and two.id.startswith("cmpl-")
    assert two.created > one.created
    samples = gateway.metrics()
    assert (samples[names.GATEWAY_CACHE_HITS_TOTAL], samples[names.GATEWAY_CACHE_MISSES_TOTAL]) == (1, 1)


def test_the_cache_key_covers_the_messages(vllm: VllmServer, gateway: LiveGateway) -> None:
    client = gateway.openai()
    answers = []
    for text in ("first question", "second question", "first question"):
        answers.append(client.chat.completions.with_raw_response.create(
            model=vllm.model, max_tokens=4, temperature=0, messages=[{"role": "user", "content": text}]))
        gateway.cache_written()
    assert [answer.headers[CACHE_HEADER] for answer in answers] == [MISS, MISS, HIT]


def test_a_fixed_seed_makes_a_sampled_request_cacheable(vllm: VllmServer, gateway: LiveGateway) -> None:
    client = gateway.openai()
    answers = []
    for _ in range(2):
        answers.append(client.completions.with_raw_response.create(
            model=vllm.model, prompt="seeded", max_tokens=4, temperature=0.9, seed=7))
        gateway.cache_written()
    assert [answer.headers[CACHE_HEADER] for answer in answers] == [MISS, HIT]


def test_sampled_requests_without_a_seed_always_reach_the_upstream(vllm: VllmServer, gateway: LiveGateway) -> None:
    client = gateway.openai()
    before = upstream_requests(vllm)
    answers = [client.completions.with_raw_response.create(
        model=vllm.model, prompt="random", max_tokens=4, temperature=1.0) for _ in range(2)]
    assert all(CACHE_HEADER not in answer.headers for answer in answers)
    assert settled_upstream_requests(vllm, before + 2) - before == 2


def test_upstream_validation_errors_reach_the_client_as_bad_requests(vllm: VllmServer, gateway: LiveGateway) -> None:
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        gateway.openai().completions.create(model=vllm.model, prompt="x", max_tokens=-1)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        gateway.openai().completions.create(model="no-such-model", prompt="x", max_tokens=1)
