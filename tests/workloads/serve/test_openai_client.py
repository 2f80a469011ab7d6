"""Our server driven by the official `openai` Python client: completions, chat, streaming, models, errors."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import openai
import pytest
import torch
from openai.types.chat import ChatCompletionMessageParam

from tests.support.servers import RedisServer
from tests.workloads.serve.support import Gate, LiveServer, live_server, reference_greedy, wait_until_submitted
from workloads.lm.model import GPT
from workloads.lm.presets import PRESETS
from workloads.lm.tokenizer import ByteTokenizer
from workloads.serve.cache import HIT, MISS, STATUS_HEADER
from workloads.serve.generation import allowed_tokens

CHAT: list[ChatCompletionMessageParam] = [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": "the quick"}]
"""A conversation; our export's template renders it as the text below (after BOS)."""
CHAT_PROMPT = "<|system|>\nbe brief\n<|user|>\nthe quick\n<|assistant|>\n"


@pytest.fixture(scope="module")
def server(model_uri: str) -> Iterator[LiveServer]:
    """A server for the whole module."""
    with live_server(model_uri, max_tokens_cap=64) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    """The official client, without retries (so a 429 surfaces as an exception)."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_models_list_names_the_served_model(server: LiveServer, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [server.name]


def test_greedy_completion_matches_the_reference(server: LiveServer, client: openai.OpenAI,
                                                 tiny_model: GPT) -> None:
    response = client.completions.create(model=server.name, prompt="the quick", max_tokens=12, temperature=0)
    assert response.choices[0].text == reference_greedy(tiny_model, "the quick", 12)[0]
    assert response.id.startswith("cmpl-")
    assert response.usage is not None and response.usage.completion_tokens == 12


def test_n_seeded_choices_are_distinct_and_repeatable(server: LiveServer, client: openai.OpenAI) -> None:
    def texts() -> list[str]:
        response = client.completions.create(model=server.name, prompt=["the", "a"], n=3, max_tokens=16,
                                             temperature=1.5, seed=11)
        assert [c.index for c in response.choices] == list(range(6))
        return [c.text for c in response.choices]

    first = texts()
    assert first == texts()
    assert len(set(first[:3])) > 1, "each of the n choices samples its own stream"


def test_completion_logprobs_are_the_models_log_softmax(server: LiveServer, client: openai.OpenAI,
                                                        tiny_model: GPT) -> None:
    response = client.completions.create(model=server.name, prompt="the lazy", max_tokens=6, temperature=0,
                                         logprobs=3)
    choice = response.choices[0]
    assert choice.logprobs is not None
    tokens, logprobs, tops = choice.logprobs.tokens, choice.logprobs.token_logprobs, choice.logprobs.top_logprobs
    assert tokens is not None and logprobs is not None and tops is not None
    assert "".join(tokens) == choice.text
    assert choice.logprobs.text_offset == list(range(len(choice.text)))
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode("the lazy", bos=True)
    allowed = allowed_tokens(tiny_model.config.vocab_size, tokenizer.eos_id, torch.device("cpu"))
    for token, logprob, top in zip(tokens, logprobs, tops, strict=True):
        with torch.inference_mode():
            logits = tiny_model(torch.tensor([ids]))[0, -1].masked_fill(~allowed, float("-inf"))
        expected = torch.log_softmax(logits.double(), dim=-1)[ord(token)].item()
        assert math.isclose(logprob, expected, abs_tol=1e-4)
        assert len(top) == 3 and max(top.values()) == pytest.approx(logprob, abs=1e-9), "greedy takes the top token"
        ids.append(ord(token))


def test_best_of_returns_the_best_candidate_and_bills_all(server: LiveServer, client: openai.OpenAI) -> None:
    single = client.completions.create(model=server.name, prompt="the", max_tokens=8, temperature=1.5, seed=5,
                                       logprobs=0)
    best = client.completions.create(model=server.name, prompt="the", max_tokens=8, temperature=1.5, seed=5,
                                     best_of=4, logprobs=0)
    assert len(best.choices) == 1
    assert best.usage is not None and best.usage.completion_tokens > 8

    def per_token(choice: openai.types.CompletionChoice) -> float:
        assert choice.logprobs is not None and choice.logprobs.token_logprobs
        return sum(choice.logprobs.token_logprobs) / len(choice.logprobs.token_logprobs)

    # Candidate 0 of best_of is the single request's sample (same seed), so the best is at least as good.
    assert per_token(best.choices[0]) >= per_token(single.choices[0]) - 1e-9


def test_streamed_completion_concatenates_to_the_plain_one(server: LiveServer, client: openai.OpenAI) -> None:
    plain = client.completions.create(model=server.name, prompt="a lazy", max_tokens=20, temperature=0, n=2)
    texts = ["", ""]
    finish: list[str | None] = [None, None]
    for chunk in client.completions.create(model=server.name, prompt="a lazy", max_tokens=20, temperature=0, n=2,
                                           stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            finish[choice.index] = choice.finish_reason or finish[choice.index]
    assert texts == [c.text for c in plain.choices]
    assert finish == [c.finish_reason for c in plain.choices]


def test_chat_renders_the_template_and_matches_the_reference(server: LiveServer, client: openai.OpenAI,
                                                             tiny_model: GPT) -> None:
    response = client.chat.completions.create(model=server.name, messages=CHAT, max_tokens=10, temperature=0)
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == reference_greedy(tiny_model, CHAT_PROMPT, 10)[0]
    assert response.id.startswith("chatcmpl-") and response.object == "chat.completion"
    assert response.usage is not None and response.usage.prompt_tokens == 1 + len(CHAT_PROMPT)


def test_chat_stream_starts_with_the_role_and_concatenates(server: LiveServer, client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model=server.name, messages=CHAT, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model=server.name, messages=CHAT, max_tokens=12,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == plain.usage.total_tokens  # type: ignore[union-attr]


def test_chat_logprobs_bytes_rebuild_the_text(server: LiveServer, client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model=server.name, messages=CHAT, max_tokens=8, temperature=0,
                                              logprobs=True, top_logprobs=2)
    choice = response.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    rebuilt = b"".join(bytes(t.bytes or []) for t in choice.logprobs.content)
    assert rebuilt.decode() == choice.message.content
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
               for t in choice.logprobs.content)


def test_nulls_and_penalties_are_accepted(server: LiveServer, client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=server.name, messages=CHAT, max_tokens=None, temperature=None, top_p=None, n=None, stop=None,
        seed=None, presence_penalty=0.5, frequency_penalty=0.5, logit_bias=None)
    assert response.usage is not None
    assert response.usage.completion_tokens <= min(64, PRESETS["tiny"].max_seq_len - response.usage.prompt_tokens), \
        "null max_tokens: chat's default, the context left up to the cap"


def test_logit_bias_steers_generation(server: LiveServer, client: openai.OpenAI) -> None:
    response = client.completions.create(model=server.name, prompt="the", max_tokens=5, temperature=0,
                                         logit_bias={str(ord("z")): 100})
    assert response.choices[0].text == "zzzzz"


def test_errors_raise_the_matching_exceptions(server: LiveServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=server.name, prompt="the", temperature=5)
    assert bad.value.body["param"] == "temperature"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="suffix"):
        client.completions.create(model=server.name, prompt="the", suffix="end")
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=CHAT)


def test_a_full_queue_raises_rate_limit_error(model_uri: str) -> None:
    gate = Gate()
    with live_server(model_uri, loader=gate.loader(), max_queue=1, max_batch_size=1) as server, \
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as client, \
            server.client() as raw:
        def post(prompt: str) -> threading.Thread:
            thread = threading.Thread(target=raw.post, args=("/v1/completions",),
                                      kwargs={"json": {"model": server.name, "prompt": prompt, "max_tokens": 1}})
            thread.start()
            return thread

        # One payload runs behind the closed gate and one fills the queue's single slot; the next overflows it.
        held = [post("a")]
        wait_until_submitted(server, 1)
        held.append(post("b"))
        wait_until_submitted(server, 2)
        try:
            with pytest.raises(openai.RateLimitError):
                client.completions.create(model=server.name, prompt="c", max_tokens=1)
        finally:
            gate.open()
            for thread in held:
                thread.join(60)


def test_cached_chat_gets_a_fresh_id(model_uri: str, redis: RedisServer) -> None:
    with live_server(model_uri, redis_url=redis.url) as server, \
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        raw = [client.chat.completions.with_raw_response.create(model=server.name, messages=CHAT, max_tokens=6,
                                                               temperature=0) for _ in "ab"]
    assert [r.headers[STATUS_HEADER] for r in raw] == [MISS, HIT]
    first, second = (r.parse() for r in raw)
    assert first.choices == second.choices
    assert first.id != second.id
