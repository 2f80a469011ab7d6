"""POST /v1/completions over real HTTP: correct text, batching-invariant, streaming, OpenAI shapes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.workloads.serve.support import Gate, LiveServer, live_server, metric, reference_greedy, wait_until_submitted
from workloads.common import metrics as names
from workloads.lm.model import GPT

CASES = [("the", 30), ("the quick brown", 12), ("a lazy cat sleeps in the", 40), ("x", 5), ("sun. the quick", 25),
         ("over the lazy dog. a", 18)]


def _completion(server: LiveServer, prompt: str | list[str], max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": server.name, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra}


def test_greedy_completion_equals_a_direct_reference_generation(model_uri: str, tiny_model: GPT) -> None:
    with live_server(model_uri) as server, server.client() as client:
        response = client.post("/v1/completions", json=_completion(server, "the quick", 24))
    assert response.status_code == 200
    body = response.json()
    expected_text, expected_reason = reference_greedy(tiny_model, "the quick", 24)
    assert body["choices"] == [{"text": expected_text, "index": 0, "logprobs": None, "finish_reason": expected_reason}]
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["model"] == server.name == "tiny-lm"
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 24, "total_tokens": 34}


async def _concurrently(server: LiveServer, cases: list[tuple[str, int]], gate: Gate) -> list[str]:
    """Send every case at once; generation is held until all of them are in the server, so they must batch."""
    async with server.async_client() as client:
        work = [asyncio.create_task(client.post("/v1/completions", json=_completion(server, p, n))) for p, n in cases]
        try:
            await asyncio.to_thread(wait_until_submitted, server, len(cases))
        finally:
            gate.open()
        responses = await asyncio.gather(*work)
    assert [r.status_code for r in responses] == [200] * len(cases)
    return [r.json()["choices"][0]["text"] for r in responses]


def test_batched_greedy_output_equals_unbatched_for_concurrent_prompts(model_uri: str) -> None:
    with live_server(model_uri, max_batch_size=1, max_wait_ms=0) as server, server.client() as client:
        unbatched = [client.post("/v1/completions", json=_completion(server, p, n)).json()["choices"][0]["text"]
                     for p, n in CASES]
        assert metric(server.metrics(), f"{names.INFERENCE_BATCH_SIZE}_sum") == len(CASES)
    gate = Gate()
    with live_server(model_uri, loader=gate.loader(), max_batch_size=8, max_wait_ms=200) as server:
        batched = asyncio.run(_concurrently(server, CASES, gate))
        samples = server.metrics()
    assert batched == unbatched
    assert metric(samples, f"{names.INFERENCE_BATCH_SIZE}_count") < len(CASES), "concurrent requests shared batches"
    assert metric(samples, names.INFERENCE_GENERATED_TOKENS_TOTAL) >= sum(n for _, n in CASES)


def _events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line.startswith("data: ")]


def test_streaming_yields_openai_chunks_then_done(model_uri: str, tiny_model: GPT) -> None:
    request = {"prompt": "a lazy", "max_tokens": 30, "temperature": 0, "stream": True,
               "stream_options": {"include_usage": True}}
    with live_server(model_uri) as server, server.client() as client, \
            client.stream("POST", "/v1/completions", json={"model": server.name, **request}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.read().decode())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" and c["model"] == "tiny-lm" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert all(c["choices"][0]["finish_reason"] is None for c in text_chunks[:-1])
    assert text_chunks[-1]["choices"][0]["finish_reason"] == "length"
    streamed = "".join(c["choices"][0]["text"] for c in text_chunks)
    assert streamed == reference_greedy(tiny_model, "a lazy", 30)[0]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 30
    assert len(text_chunks) > 5, "tokens arrive as they are generated, not in one piece"


def test_list_prompts_get_one_choice_each_in_order(model_uri: str, tiny_model: GPT) -> None:
    prompts = ["the", "a lazy cat"]
    with live_server(model_uri) as server, server.client() as client:
        body = client.post("/v1/completions", json=_completion(server, prompts, 10)).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert [c["text"] for c in body["choices"]] == [reference_greedy(tiny_model, p, 10)[0] for p in prompts]
    assert body["usage"]["completion_tokens"] == 20


def test_stop_sequence_and_echo(model_uri: str, tiny_model: GPT) -> None:
    full = reference_greedy(tiny_model, "the", 40)[0]
    stop = full[8:12]
    with live_server(model_uri) as server, server.client() as client:
        body = client.post("/v1/completions", json=_completion(server, "the", 40, stop=[stop], echo=True)).json()
    assert body["choices"][0]["text"] == "the" + full[: full.find(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"


def test_seeded_sampling_repeats_and_unseeded_sampling_varies(model_uri: str) -> None:
    with live_server(model_uri) as server, server.client() as client:
        def sample(**extra: Any) -> str:
            payload = {"model": server.name, "prompt": "the", "max_tokens": 30, "temperature": 1.5, **extra}
            text: str = client.post("/v1/completions", json=payload).json()["choices"][0]["text"]
            return text

        assert sample(seed=7) == sample(seed=7)
        assert len({sample() for _ in range(4)}) > 1


def test_models_list_names_the_served_model(model_uri: str) -> None:
    with live_server(model_uri, model_name="tiny-chat") as server, server.client() as client:
        body = client.get("/v1/models").json()
        response = client.post("/v1/completions", json=_completion(server, "the", 3))
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny-chat"]
    assert response.json()["model"] == "tiny-chat"
