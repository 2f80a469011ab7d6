"""OpenAI fields as the API defines them: chat's default budget (the context left, capped, as vLLM; and in the cache
key), errors naming the field the client sent, content required on all but an assistant's message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.servers import RedisServer
from tests.workloads.serve.support import live_server
from workloads.lm.presets import PRESETS
from workloads.lm.tokenizer import ByteTokenizer
from workloads.serve.cache import MISS, STATUS_HEADER


def test_chat_errors_name_the_fields_the_client_sent(model_uri: str) -> None:
    with live_server(model_uri, max_tokens_cap=32) as server, server.client() as client:
        chat: dict[str, Any] = {"model": server.name, "messages": [{"role": "user", "content": "hi"}]}
        over = client.post("/v1/chat/completions", json={**chat, "max_completion_tokens": 33}).json()["error"]
        long = client.post("/v1/chat/completions",
                           json={**chat, "messages": [{"role": "user", "content": "x" * 300}]}).json()["error"]
    assert (over["param"], over["message"]) == ("max_completion_tokens", "max_completion_tokens: must be at most 32 "
                                                                          "(got 33)")
    assert long["param"] == "messages" and long["message"].startswith("messages: this model's context is 256 tokens")


@pytest.mark.parametrize("cap", [40, 1000])
def test_chat_without_max_tokens_runs_to_the_context_or_the_cap_not_16(model_uri: str, cap: int) -> None:
    with live_server(model_uri, max_tokens_cap=cap) as server, server.client() as client:
        reply = client.post("/v1/chat/completions", json={
            "model": server.name, "messages": [{"role": "user", "content": "the"}], "temperature": 0,
            "logit_bias": {str(ByteTokenizer().eos_id): -100},  # no early EOS: the budget alone ends the reply
        }).json()
    context = PRESETS["tiny"].max_seq_len
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == min(cap, context - reply["usage"]["prompt_tokens"])


def test_the_cache_key_holds_the_chat_budget_the_servers_cap_chose(model_uri: str, redis: RedisServer) -> None:
    body = {"messages": [{"role": "user", "content": "the"}], "temperature": 0,
            "logit_bias": {str(ByteTokenizer().eos_id): -100}}
    answers = []
    for cap in (30, 20):  # a restart with a lower cap, on the same Redis
        with live_server(model_uri, redis_url=redis.url, max_tokens_cap=cap) as server, server.client() as client:
            answers.append(client.post("/v1/chat/completions", json={"model": server.name, **body}))
    assert [a.headers[STATUS_HEADER] for a in answers] == [MISS, MISS]
    assert [a.json()["usage"]["completion_tokens"] for a in answers] == [30, 20]


@pytest.mark.parametrize("message", [{"role": "user"}, {"role": "system", "content": None}])
def test_a_message_without_content_is_400_unless_the_assistants(model_uri: str, message: dict[str, Any]) -> None:
    with live_server(model_uri) as server, server.client() as client:
        chat = {"model": server.name, "max_tokens": 2}
        refused = client.post("/v1/chat/completions", json={**chat, "messages": [message]})
        empty_turn = client.post("/v1/chat/completions", json={**chat, "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]})
    error = refused.json()["error"]
    assert (refused.status_code, error["param"]) == (400, "messages[0]")
    assert f"content is required in a {message['role']} message" in error["message"]
    assert empty_turn.status_code == 200
