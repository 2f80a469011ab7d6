"""Upstream behaviours a real vLLM will not produce on demand, from a stub upstream: slow streams, 5xx, broken streams."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tests.support.servers import free_port
from tests.workloads.gateway.support import API_KEY, LiveGateway, live_gateway, serve_in_thread
from workloads.common import metrics as names

CHUNK_1 = b'data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"a"}]}\n\n'
CHUNK_2 = b'data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"b"}]}\n\ndata: [DONE]\n\n'


@dataclass
class Stub:
    """What the stub upstream answers next, and what it received."""

    mode: str = "ok"
    release: threading.Event = field(default_factory=threading.Event)
    bodies: list[bytes] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


def stub_app(stub: Stub) -> FastAPI:
    """An OpenAI-like upstream whose behaviour the test picks through `stub.mode`."""
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        stub.bodies.append(await request.body())
        stub.authorizations.append(request.headers.get("authorization"))
        if stub.mode in ("500", "503"):
            return JSONResponse({"error": {"message": "engine exploded", "type": "server_error"}},
                                status_code=int(stub.mode), headers={"Retry-After": "7"})
        if stub.mode == "422":
            return JSONResponse({"detail": "bad field"}, status_code=422)

        async def events() -> AsyncIterator[bytes]:
            yield CHUNK_1
            # The second chunk waits until the client has seen the first: a buffering gateway would never deliver it.
            released = await asyncio.to_thread(stub.release.wait, 10)
            if stub.mode == "broken" or not released:
                raise RuntimeError("upstream died mid-stream")
            yield CHUNK_2

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture()
def stub() -> Stub:
    """The stub's controls."""
    return Stub()


@pytest.fixture()
def gateway(stub: Stub) -> Iterator[LiveGateway]:
    """A gateway in front of the stub upstream."""
    port = free_port()
    with serve_in_thread(stub_app(stub), port), live_gateway(f"http://127.0.0.1:{port}") as gateway:
        yield gateway


def _post(gateway: LiveGateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=30)


def test_streams_are_relayed_chunk_by_chunk(stub: Stub, gateway: LiveGateway) -> None:
    with httpx.stream("POST", f"{gateway.url}/v1/completions", json={"prompt": "x", "stream": True},
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        stub.release.set()
        rest = b"".join(chunks)
    assert (first, rest) == (CHUNK_1, CHUNK_2)
    assert response.headers["cache-control"] == "no-cache"


def test_the_upstream_gets_the_clients_body_unchanged(stub: Stub, gateway: LiveGateway) -> None:
    stub.release.set()
    raw = b'{ "prompt" : "caf\\u00e9 \xc3\xa9",  "stream": false, "extra_field": [1, 2.50] }'
    httpx.post(f"{gateway.url}/v1/completions", content=raw, headers={"Authorization": f"Bearer {API_KEY}"})
    assert stub.bodies == [raw]


def test_a_stream_broken_mid_way_ends_with_an_error_event(stub: Stub, gateway: LiveGateway) -> None:
    stub.mode = "broken"
    stub.release.set()
    stream = gateway.openai().completions.create(model="m", prompt="x", stream=True)
    with pytest.raises(openai.APIError, match="broken answer"):
        list(stream)
    assert gateway.metrics()[f'{names.GATEWAY_UPSTREAM_ERRORS_TOTAL}{{reason="protocol"}}'] == 1


@pytest.mark.parametrize(("upstream_status", "status"), [("500", 502), ("503", 503)])
def test_an_upstream_5xx_becomes_a_json_502_or_503_quoting_it(stub: Stub, gateway: LiveGateway,
                                                               upstream_status: str, status: int) -> None:
    stub.mode = upstream_status
    for stream in (False, True):
        response = _post(gateway, {"prompt": "x", "stream": stream})
        assert response.status_code == status
        assert response.headers["retry-after"] == "7"
        assert response.json() == {"error": {"message": f"upstream answered {upstream_status}: engine exploded",
                                             "type": "server_error", "param": None, "code": "upstream_error"}}
    assert gateway.metrics()[f'{names.GATEWAY_UPSTREAM_ERRORS_TOTAL}{{reason="status"}}'] == 2


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_4xx_answers_pass_through_unchanged(stub: Stub, gateway: LiveGateway, stream: bool) -> None:
    stub.mode = "422"
    response = _post(gateway, {"prompt": "x", "stream": stream})
    assert (response.status_code, response.json()) == (422, {"detail": "bad field"})


def test_every_exported_series_is_a_declared_gateway_metric(stub: Stub, gateway: LiveGateway) -> None:
    stub.release.set()
    _post(gateway, {"prompt": "x"})
    samples = [name.split("{")[0] for name in gateway.metrics()]
    families = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in samples
                if not name.endswith("_created")}
    ours = {name for name in families if name.startswith("modelplane_")}
    declared = {name for name in names.ALL if name.startswith("modelplane_gateway_")}
    assert ours == declared


def test_the_clients_key_never_reaches_the_upstream(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    stub.release.set()
    monkeypatch.setenv("GATEWAY_TEST_UPSTREAM_KEY", "sk-upstream")
    port = free_port()
    with serve_in_thread(stub_app(stub), port):
        with live_gateway(f"http://127.0.0.1:{port}", upstream_api_key_env="GATEWAY_TEST_UPSTREAM_KEY") as gateway:
            _post(gateway, {"prompt": "x"})
        with live_gateway(f"http://127.0.0.1:{port}") as gateway:
            _post(gateway, {"prompt": "x"})
    assert stub.authorizations == ["Bearer sk-upstream", None]


def test_unknown_paths_and_methods_get_json_errors(gateway: LiveGateway) -> None:
    missing = httpx.get(f"{gateway.url}/v1/embeddings")
    wrong_method = httpx.get(f"{gateway.url}/v1/completions")
    assert (missing.status_code, wrong_method.status_code) == (404, 405)
    assert missing.json()["error"]["type"] == "not_found_error"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
