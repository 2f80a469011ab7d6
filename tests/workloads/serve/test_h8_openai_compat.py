"""OpenAI/vLLM compatibility of the server's edges: a stream that fails mid-way still ends with `[DONE]`, a corrupt
cache entry is a miss that the fresh answer replaces, and a too-long prompt in a list is named `prompt[i]`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import httpx
import openai
import pytest
from redis import Redis as SyncRedis

from tests.support.servers import RedisServer
from tests.workloads.serve.support import live_server, metric
from workloads.common import metrics as names
from workloads.serve.backends import Backend, BatchSink
from workloads.serve.cache import HIT, MISS, STATUS_HEADER
from workloads.serve.loader import load_backend
from workloads.serve.settings import ServeSettings


class _DiesAfterFirstText:
    """Forwards the first streamed text of a batch, then fails as a model bug would, mid-generation."""

    def __init__(self, sink: BatchSink) -> None:
        self._sink = sink

    def emit(self, index: int, value: object, *, done: bool) -> None:
        self._sink.emit(index, value, done=done)
        raise RuntimeError("the model broke mid-generation")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


class _FailingBackend:
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.info = inner.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run_batch(self, payloads: Sequence[object], sink: BatchSink) -> None:
        self.inner.run_batch(payloads, cast(BatchSink, _DiesAfterFirstText(sink)))


def _failing_loader(settings: ServeSettings) -> Backend:
    return cast(Backend, _FailingBackend(load_backend(settings)))


def _events(body: str) -> list[str]:
    return [block.removeprefix("data: ") for block in body.split("\n\n") if block]


@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
def test_a_stream_that_fails_mid_way_sends_an_error_event_then_done(model_uri: str, route: str) -> None:
    with live_server(model_uri, loader=_failing_loader) as server:
        body: dict[str, Any] = {"model": server.name, "max_tokens": 8, "temperature": 0, "stream": True}
        body |= {"prompt": "the quick"} if route == "/v1/completions" else {
            "messages": [{"role": "user", "content": "hi"}]}
        with server.client() as client:
            response = client.post(route, json=body)
            raw = _events(response.text)
        client_error = None
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=60) as sdk:
            try:
                list(sdk.completions.create(model=server.name, prompt="the quick", max_tokens=8, stream=True))
            except openai.APIError as exc:
                client_error = exc
    assert response.status_code == 200
    # vLLM (entrypoints/openai/completion/serving.py, chat_completion/serving.py): the error event, then [DONE].
    assert raw[-1] == "[DONE]", raw
    assert json.loads(raw[-2])["error"]["type"] == "server_error"
    assert isinstance(client_error, openai.APIError), "the official client must surface the error event"


def test_a_corrupt_cache_entry_is_a_miss_and_the_fresh_answer_replaces_it(model_uri: str,
                                                                          redis: RedisServer) -> None:
    with live_server(model_uri, redis_url=redis.url) as server, \
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=60) as sdk:
        def ask() -> tuple[str, str]:
            answer = sdk.completions.with_raw_response.create(model=server.name, prompt="the quick", max_tokens=6,
                                                              temperature=0)
            return answer.headers[STATUS_HEADER], answer.parse().choices[0].text

        first = ask()
        with SyncRedis.from_url(redis.url) as direct:
            (key,) = direct.keys("modelplane:serve:v1:*")
            direct.set(key, b'{"choices": trunc')
            after_corrupt = ask()
            stored = json.loads(direct.get(key))
            direct.set(key, b'{"object": "an older schema"}')  # valid JSON, not a completion
            after_stale = ask()
        last = ask()
        samples = server.metrics()
    assert [s for s, _ in (first, after_corrupt, after_stale, last)] == [MISS, MISS, MISS, HIT]
    assert {t for _, t in (first, after_corrupt, after_stale, last)} == {first[1]}
    assert stored["choices"][0]["text"] == first[1], "the fresh answer overwrote the corrupt entry"
    assert metric(samples, names.INFERENCE_CACHE_HITS_TOTAL) == 1
    assert metric(samples, names.INFERENCE_CACHE_MISSES_TOTAL) == 3
    assert metric(samples, names.INFERENCE_CACHE_ERRORS_TOTAL) == 0


def test_a_too_long_prompt_in_a_list_is_named_by_its_index(model_uri: str) -> None:
    with live_server(model_uri) as server, \
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=60) as sdk:
        with pytest.raises(openai.BadRequestError) as listed:
            sdk.completions.create(model=server.name, prompt=["hi", "y" * 250], max_tokens=10)
        with pytest.raises(openai.BadRequestError) as single:
            sdk.completions.create(model=server.name, prompt="y" * 250, max_tokens=10)
        ok = httpx.post(f"{server.url}/v1/completions", timeout=60,
                        json={"model": server.name, "prompt": ["hi", "yo"], "max_tokens": 2})
    listed_error = cast(dict[str, Any], listed.value.body)
    assert listed_error["param"] == "prompt[1]"
    assert str(listed_error["message"]).startswith("prompt[1]: this model's context is 256 tokens")
    assert cast(dict[str, Any], single.value.body)["param"] == "prompt"
    assert ok.status_code == 200


def test_a_corrupt_v2_cache_entry_is_a_miss_not_a_500(model_uri: str, redis: RedisServer) -> None:
    body = {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["the"]}]}
    with live_server(model_uri, redis_url=redis.url) as server, server.client() as client:
        first = client.post(f"/v2/models/{server.name}/infer", json=body)
        with SyncRedis.from_url(redis.url) as direct:
            (key,) = direct.keys("modelplane:serve:v1:*")
            direct.set(key, b'{"outputs": 3}')
            second = client.post(f"/v2/models/{server.name}/infer", json=body)
            third = client.post(f"/v2/models/{server.name}/infer", json=body)
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert [r.headers[STATUS_HEADER] for r in (first, second, third)] == [MISS, MISS, HIT]
    assert first.json()["outputs"] == second.json()["outputs"] == third.json()["outputs"]
