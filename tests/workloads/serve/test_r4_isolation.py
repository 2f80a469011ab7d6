"""A request's trouble stays its own: a payload the model fails on does not fail its batch mates, and a client
that disconnects before its answer stops its generation (its tokens would be computed for nobody)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.workloads.serve.support import (
    BIAS,
    WEIGHTS,
    AffinePredictor,
    Gate,
    LiveServer,
    affine_loader,
    live_server,
    metric,
    wait_until_submitted,
)
from workloads.common import metrics as names
from workloads.serve.state import CLIENT_CLOSED

POISON = 13.0
"""An input value the stand-in model fails on."""


class PoisonedPredictor(AffinePredictor):
    """The affine model, failing any batch that holds a row with the value `POISON`."""

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Rows in, rows out, unless one of them is poisoned."""
        self.calls.append(inputs.shape[0])
        if (inputs == POISON).any():
            raise FloatingPointError("the model cannot handle this input")
        return inputs @ WEIGHTS + BIAS


def _row(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[value, 1.0, 2.0]]}]}


async def _together(server: LiveServer, gate: Gate, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with server.async_client() as client:
        work = [asyncio.create_task(client.post(f"/v2/models/{server.name}/infer", json=b)) for b in bodies]
        try:
            await asyncio.to_thread(wait_until_submitted, server, len(bodies))
        finally:
            gate.open()
        return list(await asyncio.gather(*work))


def test_a_payload_the_model_fails_on_does_not_fail_its_batch_mates(model_uri: str) -> None:
    predictor = PoisonedPredictor()
    gate = Gate()
    with live_server(model_uri, model_name="affine", loader=gate.loader(affine_loader(predictor)), max_batch_size=3,
                     max_wait_ms=5000) as server:
        good, bad, other = asyncio.run(_together(server, gate, [_row(1.0), _row(POISON), _row(2.0)]))
        samples = server.metrics()
    assert predictor.calls[1] == 3, "the three requests ran as one batch first (calls[0] is the warm-up)"
    assert bad.status_code == 500
    for response, value in ((good, 1.0), (other, 2.0)):
        assert response.status_code == 200, response.text
        expected = np.array([[value, 1.0, 2.0]], dtype=np.float32) @ WEIGHTS + BIAS
        np.testing.assert_allclose(response.json()["outputs"][0]["data"], expected.reshape(-1), rtol=1e-6)
    assert metric(samples, f'{names.INFERENCE_REQUESTS_TOTAL}{{route="/v2/models/{{name}}/infer",status="500"}}') == 1


@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
def test_a_client_that_disconnects_stops_its_generation(model_uri: str, route: str) -> None:
    gate = Gate()
    with live_server(model_uri, loader=gate.loader(), max_tokens_cap=200) as server:
        body: dict[str, Any] = {"model": server.name, "max_tokens": 200, "temperature": 0, "stop": "@@@"}
        body |= {"prompt": "the"} if route == "/v1/completions" else {"messages": [{"role": "user", "content": "hi"}]}
        try:
            # Generation is held, so the client's 1 s read timeout always fires first and it hangs up.
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{server.url}{route}", json=body, timeout=httpx.Timeout(30, read=1))
            _wait_for_status(server, route, CLIENT_CLOSED)
        finally:
            gate.open()
        # One worker thread runs batches in order: once this answers, the abandoned batch has finished.
        short = server.client().post("/v1/completions", json={"model": server.name, "prompt": "a", "max_tokens": 2,
                                                              "temperature": 0, "stop": "@@@"})
        assert short.json()["usage"]["completion_tokens"] == 2
        generated = metric(server.metrics(), names.INFERENCE_GENERATED_TOKENS_TOTAL)
    # The warm-up's tokens are counted by no sink; the abandoned request stops at its first step.
    assert generated == 1 + 2, f"{generated} tokens: the abandoned request kept generating"


def _wait_for_status(server: LiveServer, route: str, status: int) -> None:
    key = f'{names.INFERENCE_REQUESTS_TOTAL}{{route="{route}",status="{status}"}}'
    deadline = time.monotonic() + 15
    while metric(server.metrics(), key) < 1:
        assert time.monotonic() < deadline, f"no {status} answer on {route}"
        time.sleep(0.02)


@pytest.mark.parametrize("stream", [False, True])
def test_a_queued_request_whose_client_left_frees_its_queue_slot(model_uri: str, stream: bool) -> None:
    async def scenario(server: LiveServer, gate: Gate) -> tuple[httpx.Response, httpx.Response]:
        body = {"model": server.name, "prompt": "the", "max_tokens": 8, "temperature": 0}
        async with server.async_client() as client:
            running = asyncio.create_task(client.post("/v1/completions", json=body))
            try:
                await asyncio.to_thread(wait_until_submitted, server, 1)
                # The one queue slot is taken by a request whose client then hangs up (a stream sends nothing
                # before its first token, so its client times out too).
                with pytest.raises(httpx.ReadTimeout):
                    await client.post("/v1/completions", json={**body, "stream": stream},
                                      timeout=httpx.Timeout(30, read=1))
                await asyncio.to_thread(_wait_for_status, server, "/v1/completions", CLIENT_CLOSED)
                queued = asyncio.create_task(client.post("/v1/completions", json=body))
                await asyncio.to_thread(wait_until_submitted, server, 2)
            finally:
                gate.open()
            return await running, await queued

    gate = Gate()
    with live_server(model_uri, loader=gate.loader(), max_batch_size=1, max_queue=1, max_wait_ms=0) as server:
        running, queued = asyncio.run(scenario(server, gate))
    assert (running.status_code, queued.status_code) == (200, 200), queued.text
