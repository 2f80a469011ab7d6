"""Property-based fuzzing: the server's own OpenAPI spec (both protocols), then raw bodies no schema describes
(undecodable bytes, lone surrogates, binary tensor framing); whatever the input, never a 5xx."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.support.servers import redis_server
from tests.workloads.serve.support import LiveServer, live_server


@pytest.fixture(scope="module")
def fuzzed_server(model_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server with the cache on and a small max_tokens cap, so generated requests stay fast."""
    with redis_server(tmp_path_factory.mktemp("redis")) as redis, \
            live_server(model_uri, redis_url=redis.url, max_tokens_cap=8, max_body_bytes=65536) as server:
        yield server


@pytest.fixture()
def api_schema(fuzzed_server: LiveServer) -> schemathesis.BaseSchema:
    """The spec the server publishes at /openapi.json."""
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail(case: schemathesis.Case[Any], fuzzed_server: LiveServer) -> None:
    # Random model names only ever reach the 404; pointing most cases at the served model fuzzes the real
    # handlers (generation, streaming, cache, tensor decoding) instead.
    if case.path_parameters and "name" in case.path_parameters and zlib.crc32(repr(case.path_parameters).encode()) % 4:
        case.path_parameters["name"] = fuzzed_server.name
    body = case.body
    if isinstance(body, dict) and "model" in body and zlib.crc32(repr(body).encode()) % 4:
        body["model"] = fuzzed_server.name
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 8:
            body["max_tokens"] = 1 + max_tokens % 8
    case.call_and_validate(checks=[not_a_server_error])


def test_the_published_spec_documents_both_protocols(fuzzed_server: LiveServer) -> None:
    paths = httpx.get(f"{fuzzed_server.url}/openapi.json").json()["paths"]
    assert {"/v1/completions", "/v1/chat/completions", "/v1/models", "/v2/models/{name}/infer",
            "/v2/models/{name}", "/v2/models/{name}/config", "/v2/health/ready", "/v2/health/live"} <= set(paths)
    assert paths["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferRequest"}


_TEXT = st.text(max_size=8) | st.builds(lambda a, s, b: a + s + b, st.text(max_size=4),
                                         st.characters(categories=["Cs"]), st.text(max_size=4))
"""Text that often holds lone surrogates (JSON can carry them as \\udXXX escapes)."""


@st.composite
def _requests(draw: st.DrawFn, model: str) -> tuple[str, dict[str, Any]]:
    """A near-valid request for one of the three POST routes, its strings drawn from `_TEXT`."""
    kind = draw(st.sampled_from(["completions", "chat", "infer"]))
    options = {"max_tokens": draw(st.integers(1, 4)), "temperature": 0, "stop": draw(st.none() | _TEXT.map(lambda s: [s or "x"]))}
    if kind == "completions":
        return "/v1/completions", {"model": model, "prompt": draw(_TEXT), **options}
    if kind == "chat":
        role = draw(st.sampled_from(["system", "user", "assistant", draw(_TEXT)]))
        return "/v1/chat/completions", {"model": model, "messages": [{"role": role, "content": draw(_TEXT)}], **options}
    return f"/v2/models/{model}/infer", {"parameters": {"max_tokens": options["max_tokens"]}, "inputs": [
        {"name": draw(st.sampled_from(["text_input", draw(_TEXT)])), "shape": [1], "datatype": "BYTES",
         "data": [draw(_TEXT)]}]}


@st.composite
def _binary_infer(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A binary-extension infer body (JSON, then tensor bytes) and its header length, each often slightly wrong."""
    elements = draw(st.lists(st.binary(max_size=8), min_size=1, max_size=3))
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    raw = draw(st.sampled_from([raw, raw[:-1], raw + b"\x00", draw(st.binary(max_size=16))]))
    datatype = draw(st.sampled_from(["BYTES", "BYTES", "FP32", "BOOL", "INT64"]))
    size = draw(st.sampled_from([len(raw), len(raw) + 1, max(len(raw) - 1, 0), -1]))
    head = {"inputs": [{"name": "text_input", "shape": [len(elements)], "datatype": datatype,
                        "parameters": {"binary_data_size": size}}],
            "outputs": [{"name": "text_output", "parameters": {"binary_data": draw(st.booleans())}}]}
    text = json.dumps(head).encode()
    header = draw(st.sampled_from([str(len(text)), str(len(text) + 3), "0", "-2", "x", None]))
    return text + raw, header


@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_raw_bodies_never_make_the_server_fail(fuzzed_server: LiveServer, data: st.DataObject) -> None:
    name = fuzzed_server.name
    headers = {"content-type": data.draw(st.sampled_from(["application/json", "application/octet-stream", ""]))}
    shape = data.draw(st.sampled_from(["surrogates", "bytes", "binary"]))
    if shape == "surrogates":
        path, request = data.draw(_requests(name))
        body = json.dumps(request).encode()  # ensure_ascii: a lone surrogate becomes a \\udXXX escape
    elif shape == "bytes":
        path = data.draw(st.sampled_from(["/v1/completions", "/v1/chat/completions", f"/v2/models/{name}/infer"]))
        body = data.draw(st.binary(max_size=64) | _requests(name).map(lambda r: json.dumps(r[1]).encode()[:-3]
                                                                    + b"\xff\xfe}"))
    else:
        path = f"/v2/models/{name}/infer"
        body, header = data.draw(_binary_infer())
        if header is not None:
            headers["inference-header-content-length"] = header
    response = httpx.post(f"{fuzzed_server.url}{path}", content=body,
                          headers={k: v for k, v in headers.items() if v}, timeout=60)
    assert response.status_code < 500, (path, body, response.text)
    assert response.headers["content-type"].startswith(("application/json", "application/octet-stream"))
