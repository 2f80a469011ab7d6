"""Every class of bad input gets its own status and a message naming the problem, never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.workloads.serve.support import LiveServer, live_server, metric
from workloads.common import metrics as names
from workloads.lm.presets import PRESETS
from workloads.serve.backends import InvalidInputError
from workloads.serve.bodies import parse_json

API_KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def server(model_uri: str) -> Iterator[LiveServer]:
    """A server with an API key, a small body limit and a small max_tokens cap."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERVE_TEST_API_KEY", API_KEY)
        with live_server(model_uri, api_key_env="SERVE_TEST_API_KEY", max_body_bytes=4096,
                         max_tokens_cap=32) as live:
            yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """A client that sends the right API key."""
    with server.client(headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def _openai_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["message"]
    return error


def _completion(server: LiveServer, **fields: Any) -> dict[str, Any]:
    return {"model": server.name, "prompt": "the", "max_tokens": 4, "temperature": 0, **fields}


def test_valid_request_with_the_key_succeeds(server: LiveServer, client: httpx.Client) -> None:
    assert client.post("/v1/completions", json=_completion(server)).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}])
def test_missing_or_wrong_api_key_is_401(server: LiveServer, headers: dict[str, str]) -> None:
    with server.client(headers=headers) as anonymous:
        for response in (anonymous.post("/v1/completions", json=_completion(server)),
                         anonymous.get("/v1/models"),
                         anonymous.post(f"/v2/models/{server.name}/infer", json={"inputs": []})):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "API key" in str(response.json()["error"])


def test_health_and_metrics_need_no_key(server: LiveServer) -> None:
    with server.client() as anonymous:
        assert anonymous.get("/v2/health/live").status_code == 200
        assert anonymous.get("/v2/health/ready").status_code == 200
        assert anonymous.get(f"/v2/models/{server.name}/ready").status_code == 200
        assert anonymous.get("/metrics").status_code == 200


def test_body_over_the_limit_is_413(server: LiveServer, client: httpx.Client) -> None:
    response = client.post("/v1/completions", json=_completion(server, prompt="x" * 5000))
    assert response.status_code == 413
    assert "4096 bytes" in _openai_error(response)["message"]


def test_chunked_body_over_the_limit_is_413(server: LiveServer, client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = client.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        ({"n": 0}, "n", "greater than or equal to 1"),
        ({"temperature": "hot"}, "temperature", "valid number"),
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"prompt": [1, 2]}, "prompt", "must be a string or a list of strings"),
        ({"prompt": []}, "prompt", "must not be empty"),
        ({"stop": 5}, "stop", "must be a string or a list of strings"),
        ({"prompt": ""}, "prompt", "must not be empty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4 stop sequences"),
        ({"logprobs": 21}, "logprobs", "less than or equal to 20"),
        ({"suffix": "end"}, "suffix", "a non-empty suffix) is not supported"),
        ({"best_of": 1, "n": 2}, "best_of", "must be at least n (got best_of=1, n=2)"),
        ({"best_of": 3, "stream": True}, "best_of", "best_of > n cannot stream"),
        ({"logprobs": 2, "stream": True}, "logprobs", "not streamed"),
        ({"logprobs": 2, "echo": True}, "echo", "drop echo or logprobs"),
        ({"logit_bias": {"a": 1}}, "logit_bias", "token ids written as decimal strings"),
        ({"logit_bias": {"5": 101}}, "logit_bias", "biases must be in [-100, 100]"),
        ({"presence_penalty": 3}, "presence_penalty", "less than or equal to 2"),
        ({"tools": []}, "tools", "Extra inputs are not permitted"),
        ({"stream_options": {"include_usage": "maybe"}}, "stream_options.include_usage", "valid boolean"),
    ],
)
def test_schema_errors_are_400_naming_the_field(server: LiveServer, client: httpx.Client, fields: dict[str, Any],
                                                param: str, fragment: str) -> None:
    response = client.post("/v1/completions", json=_completion(server, **fields))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    error = _openai_error(response)
    assert error["param"] == param
    assert error["message"].startswith(f"{param}")
    assert fragment in error["message"]


def test_missing_field_is_400_naming_it(server: LiveServer, client: httpx.Client) -> None:
    response = client.post("/v1/completions", json={"model": server.name})
    assert response.status_code == 400
    assert _openai_error(response)["message"] == "prompt: Field required"


@pytest.mark.parametrize("body", [b"{bad json", b"", b"[1, 2", "\u00ff".encode("latin-1")])
def test_malformed_json_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert _openai_error(response)["message"]


def test_an_integer_past_pythons_digit_limit_is_invalid_json() -> None:
    # json.loads raises a plain ValueError there, not a JSONDecodeError; both servers' body check must map it to 400.
    with pytest.raises(InvalidInputError, match="invalid JSON") as raised:
        parse_json(b'{"model": "m", "prompt": "a", "seed": ' + b"1" * 5000 + b"}")
    assert raised.value.param == "body"


def test_null_optional_fields_mean_their_defaults(server: LiveServer, client: httpx.Client) -> None:
    nulls = {field: None for field in ("max_tokens", "top_p", "n", "stream", "stream_options", "stop", "seed",
                                       "presence_penalty", "frequency_penalty", "logit_bias", "user", "best_of",
                                       "logprobs", "echo", "suffix")}
    response = client.post("/v1/completions", json=_completion(server, **nulls))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 16


def test_null_optional_chat_fields_mean_their_defaults(server: LiveServer, client: httpx.Client) -> None:
    nulls = {field: None for field in ("max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
                                       "stream_options", "stop", "seed", "presence_penalty", "frequency_penalty",
                                       "logit_bias", "user", "logprobs", "top_logprobs")}
    message = {"role": "user", "content": "the", "name": None}
    response = client.post("/v1/chat/completions", json={"model": server.name, "messages": [message], **nulls})
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["completion_tokens"] <= min(32, PRESETS["tiny"].max_seq_len - usage["prompt_tokens"]), \
        "null max_tokens: chat's default, the context left up to the cap"


def test_logit_bias_outside_the_vocabulary_is_400(server: LiveServer, client: httpx.Client) -> None:
    response = client.post("/v1/completions", json=_completion(server, logit_bias={"320": 5}))
    assert response.status_code == 400
    error = _openai_error(response)
    assert (error["param"], error["message"]) == (
        "logit_bias", "logit_bias: token id 320 is out of range; this model's ids are 0..319")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"model": "tiny-lm", "prompt": "a\\ud800"}', None),
        (b'{"model": "tiny-lm", "prompt": "\\udc00x"}', "prompt: holds a lone UTF-16 surrogate"),
        (b'{"model": "tiny-lm", "prompt": ["ok", "\\ud83d"]}', "prompt[1]: holds a lone UTF-16 surrogate"),
        (b'{"model": "tiny-lm", "\\ud800": 1}', "(a key): holds a lone UTF-16 surrogate"),
        (b'{"model": "tiny-lm", "prompt": "caf\xe9"}', "body: not UTF-8 text (byte 0xe9 at offset 35)"),
    ],
)
def test_surrogates_and_undecodable_bytes_are_400(client: httpx.Client, body: bytes, fragment: str | None) -> None:
    for path in ("/v1/completions", "/v1/chat/completions", "/v2/models/tiny-lm/infer"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, response.text)
        if fragment is not None and path.startswith("/v1/"):
            assert fragment in _openai_error(response)["message"]


def test_a_valid_surrogate_pair_is_text(server: LiveServer, client: httpx.Client) -> None:
    body = b'{"model": "tiny-lm", "prompt": "\\ud83d\\ude00", "max_tokens": 2, "temperature": 0}'
    response = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_more_sequences_than_the_queue_holds_is_400_not_429(model_uri: str) -> None:
    with live_server(model_uri, max_queue=4) as server, server.client() as client:
        completions = client.post("/v1/completions", json={"model": server.name, "prompt": ["a", "b"], "n": 3})
        rows = client.post(f"/v2/models/{server.name}/infer", json={"inputs": [
            {"name": "text_input", "shape": [5], "datatype": "BYTES", "data": ["a"] * 5}]})
    assert completions.status_code == 400
    assert "asks for 6 sequences" in _openai_error(completions)["message"]
    assert rows.status_code == 400
    assert "queues at most 4" in rows.json()["error"]


def test_max_tokens_over_the_cap_is_400(server: LiveServer, client: httpx.Client) -> None:
    response = client.post("/v1/completions", json=_completion(server, max_tokens=33))
    assert response.status_code == 400
    error = _openai_error(response)
    assert (error["param"], error["message"]) == ("max_tokens", "max_tokens: must be at most 32 (got 33)")


def test_prompt_longer_than_the_context_is_400(server: LiveServer, client: httpx.Client) -> None:
    response = client.post("/v1/completions", json=_completion(server, prompt="y" * 250, max_tokens=10))
    assert response.status_code == 400
    error = _openai_error(response)
    assert error["param"] == "prompt"
    assert "context is 256 tokens" in error["message"]


def test_unknown_model_is_404(client: httpx.Client) -> None:
    response = client.post("/v1/completions", json={"model": "gpt-4", "prompt": "hi"})
    assert response.status_code == 404
    assert "'gpt-4' is not served here" in _openai_error(response)["message"]
    assert client.get("/v2/models/gpt-4").status_code == 404
    assert client.post("/v2/models/gpt-4/infer", json={"inputs": [
        {"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}).status_code == 404


def test_unknown_route_and_method_are_json_errors(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing")
    wrong_method = client.get("/v1/completions")
    assert (missing.status_code, wrong_method.status_code) == (404, 405)
    assert _openai_error(missing)["message"] == "Not Found"
    assert _openai_error(wrong_method)["message"] == "Method Not Allowed"


def _text_input(**overrides: Any) -> dict[str, Any]:
    return {"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["the"], **overrides}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"inputs": [_text_input(shape=[2])]}, 400, "inputs[0].data: has 1 elements but shape [2] needs 2"),
        ({"inputs": [_text_input(data=[5])]}, 400, "inputs[0].data: BYTES elements must be strings"),
        ({"inputs": [_text_input(name="pixels")]}, 400, "expected exactly one input named 'text_input'"),
        ({"inputs": [_text_input(), _text_input()]}, 400, "inputs[1].name: duplicate input name"),
        ({"inputs": [_text_input(datatype="FP128")]}, 400, "inputs[0].datatype"),
        ({"inputs": [_text_input(shape=[-1])]}, 400, "inputs[0].shape: dimensions must be >= 0"),
        # No elements, but a shape numpy cannot even index: refused before any array is built.
        ({"inputs": [_text_input(shape=[0, 2**70], data=[])]}, 400, "inputs[0].shape: dimensions and the product"),
        ({"inputs": [_text_input(shape=[2**40, 2**40, 0], data=[])]}, 400, "inputs[0].shape: dimensions and"),
        ({"inputs": []}, 400, "inputs: List should have at least 1 item"),
        ({"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES"}]}, 400,
         "inputs[0].data: is required unless parameters.binary_data_size"),
        ({"inputs": [_text_input()], "outputs": [{"name": "logits"}]}, 400, "outputs[0].name: unknown output"),
        ({"inputs": [_text_input()], "parameters": {"max_tokens": 33}}, 400,
         "parameters.max_tokens: must be at most 32"),
        ({"inputs": [_text_input()], "parameters": {"top_k": 3}}, 400, "parameters.top_k: Extra inputs"),
        ({"inputs": [_text_input(datatype="FP32", data=[1.0])]}, 400, "must be BYTES"),
    ],
)
def test_v2_bad_inputs_get_4xx_naming_the_field(server: LiveServer, client: httpx.Client, body: dict[str, Any],
                                                status: int, fragment: str) -> None:
    response = client.post(f"/v2/models/{server.name}/infer", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_no_5xx_was_recorded(server: LiveServer) -> None:
    samples = server.metrics()
    # Readiness answered 503 while the model loaded; every other route must never have answered 5xx.
    errors = {k: v for k, v in samples.items()
              if k.startswith(f"{names.INFERENCE_REQUESTS_TOTAL}{{") and 'status="5' in k and "/health/" not in k}
    assert errors == {}
    assert metric(samples, f'{names.INFERENCE_REQUESTS_TOTAL}{{route="/v1/completions",status="400"}}') > 0
