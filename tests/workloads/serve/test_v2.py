"""KServe v2 inference: the LM's text tensors, and a tensor model through the `Backend` protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from tests.support.servers import RedisServer
from tests.workloads.serve.support import (
    BIAS,
    WEIGHTS,
    AffinePredictor,
    Gate,
    LiveServer,
    affine_loader,
    live_server,
    metric,
    reference_greedy,
    wait_until_submitted,
)
from workloads.common import metrics as names
from workloads.lm.model import GPT
from workloads.serve.cache import HIT, MISS, STATUS_HEADER


def _rows(values: list[list[float]], **overrides: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [len(values), 3], "datatype": "FP32", "data": values, **overrides}]}


def test_lm_text_input_returns_text_output(model_uri: str, tiny_model: GPT) -> None:
    body = {"id": "req-1", "parameters": {"max_tokens": 12},
            "inputs": [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": ["the", "a lazy"]}]}
    with live_server(model_uri) as server, server.client() as client:
        response = client.post(f"/v2/models/{server.name}/infer", json=body)
        metadata = client.get(f"/v2/models/{server.name}").json()
    assert response.status_code == 200
    result = response.json()
    assert (result["model_name"], result["id"]) == ("tiny-lm", "req-1")
    assert result["outputs"] == [{"name": "text_output", "shape": [2], "datatype": "BYTES",
                                  "data": [reference_greedy(tiny_model, p, 12)[0] for p in ("the", "a lazy")]}]
    assert metadata["platform"] == "modelplane_lm"
    assert metadata["inputs"] == [{"name": "text_input", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["versions"] == [result["model_version"]]


def test_lm_v2_cache_hit_keeps_each_request_id(model_uri: str, redis: RedisServer) -> None:
    def body(request_id: str) -> dict[str, Any]:
        return {"id": request_id, "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES",
                                              "data": ["the"]}]}

    with live_server(model_uri, redis_url=redis.url) as server, server.client() as client:
        first = client.post(f"/v2/models/{server.name}/infer", json=body("a"))
        second = client.post(f"/v2/models/{server.name}/infer", json=body("b"))
    assert (first.headers[STATUS_HEADER], second.headers[STATUS_HEADER]) == (MISS, HIT)
    assert (first.json()["id"], second.json()["id"]) == ("a", "b")
    assert first.json()["outputs"] == second.json()["outputs"]


async def _concurrent_rows(server: LiveServer, batches: list[list[list[float]]], gate: Gate) -> list[dict[str, Any]]:
    """Send every request at once; predictions are held until all of them are in the server, so they must batch."""
    async with server.async_client() as client:
        work = [asyncio.create_task(client.post("/v2/models/affine/infer", json=_rows(b))) for b in batches]
        try:
            await asyncio.to_thread(wait_until_submitted, server, len(batches))
        finally:
            gate.open()
        responses = await asyncio.gather(*work)
    assert [r.status_code for r in responses] == [200] * len(batches)
    return [r.json() for r in responses]


def test_tensor_backend_batches_rows_from_concurrent_requests(model_uri: str) -> None:
    predictor = AffinePredictor()
    requests = [[[float(i), 1.0, 2.0]] * (1 + i % 3) for i in range(8)]
    gate = Gate()
    with live_server(model_uri, model_name="affine", loader=gate.loader(affine_loader(predictor)), max_batch_size=8,
                     max_wait_ms=100) as server:
        results = asyncio.run(_concurrent_rows(server, requests, gate))
        samples = server.metrics()
    for rows, result in zip(requests, results, strict=True):
        (output,) = result["outputs"]
        expected = np.array(rows, dtype=np.float32) @ WEIGHTS + BIAS
        assert (output["name"], output["datatype"], output["shape"]) == ("y", "FP32", [len(rows), 2])
        np.testing.assert_allclose(np.array(output["data"]).reshape(len(rows), 2), expected, rtol=1e-6)
    assert len(predictor.calls) - 1 < len(requests), "the warm-up call, then fewer calls than requests"
    assert sum(predictor.calls[1:]) == sum(len(r) for r in requests)
    assert metric(samples, f"{names.INFERENCE_BATCH_SIZE}_count") == len(predictor.calls) - 1


def test_tensor_backend_metadata_and_input_checks(model_uri: str) -> None:
    with live_server(model_uri, model_name="affine", loader=affine_loader(AffinePredictor())) as server, \
            server.client() as client:
        metadata = client.get("/v2/models/affine").json()
        server_metadata = client.get("/v2").json()
        wrong_type = client.post("/v2/models/affine/infer", json=_rows([[1, 2, 3]], datatype="INT32"))
        wrong_width = client.post("/v2/models/affine/infer", json={"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]})
        overflow = client.post("/v2/models/affine/infer", json=_rows([[1e39, 0.0, 0.0]]))
        completions = client.post("/v1/completions", json={"model": "affine", "prompt": "hi"})
    assert metadata == {"name": "affine", "versions": ["affine-1"], "platform": "numpy",
                        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
                        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]}
    assert server_metadata == {"name": "modelplane-serve", "version": "1", "extensions": ["binary_tensor_data"]}
    assert wrong_type.status_code == 400
    assert "inputs[0].datatype: input 'x' must be FP32" in wrong_type.json()["error"]
    assert wrong_width.status_code == 400
    assert "must have shape [-1, 3]" in wrong_width.json()["error"]
    assert overflow.status_code == 400
    assert "within FP32 range" in overflow.json()["error"]
    assert completions.status_code == 400
    assert "tensor model" in completions.json()["error"]["message"]

