"""Property-based fuzzing of the server's own OpenAPI spec: whatever the input, never a 5xx."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
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
    assert {"/v1/completions", "/v1/models", "/v2/models/{name}/infer", "/v2/models/{name}",
            "/v2/health/ready", "/v2/health/live"} <= set(paths)
