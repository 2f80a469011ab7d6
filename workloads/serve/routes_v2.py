"""KServe v2 / Open Inference Protocol routes: health, server and model metadata, and inference.

https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
Health routes take no API key (kubelet probes call them); metadata and inference do.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from workloads.serve.backends import InvalidInputError
from workloads.serve.schemas import InferRequest, InferResponse
from workloads.serve.state import (
    bad_request,
    check_model_name,
    get_state,
    ready_engine,
    require_api_key,
    run_request,
)
from workloads.serve.tensors import to_array, to_output

router = APIRouter(prefix="/v2", tags=["v2"])
SERVER_NAME = "modelplane-serve"
"""`name` in the v2 server metadata."""


@router.get("/health/live")
async def live(request: Request) -> JSONResponse:
    """200 while the process can serve; 503 once the model load has given up (the pod should restart)."""
    error = get_state(request).load_error
    if error is not None:
        return JSONResponse({"live": False, "error": error}, status_code=503)
    return JSONResponse({"live": True})


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    """200 once the model is loaded and warm; 503 while loading or draining."""
    is_ready = get_state(request).ready
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("")
async def server_metadata() -> dict[str, Any]:
    """The v2 server metadata."""
    return {"name": SERVER_NAME, "version": "1", "extensions": []}


@router.get("/models/{name}/ready")
async def model_ready(name: str, request: Request) -> JSONResponse:
    """200 when `name` is loaded and warm; 503 while loading or draining; 404 for other names."""
    state = get_state(request)
    check_model_name(state, name)
    return JSONResponse({"name": name, "ready": state.ready}, status_code=200 if state.ready else 503)


@router.get("/models/{name}", dependencies=[Depends(require_api_key)])
async def model_metadata(name: str, request: Request) -> dict[str, Any]:
    """Name, versions, platform and tensor specs of the model."""
    state = get_state(request)
    check_model_name(state, name)
    backend, _ = ready_engine(state)
    info = backend.info
    return {"name": info.name, "versions": [info.version], "platform": info.platform,
            "inputs": [t.to_json() for t in info.inputs], "outputs": [t.to_json() for t in info.outputs]}


@router.post("/models/{name}/infer", response_model=InferResponse, dependencies=[Depends(require_api_key)],
             responses={400: {"description": "inputs the model cannot run (the message names the field)"},
                        404: {"description": "unknown model"}, 429: {"description": "queue full"},
                        503: {"description": "loading or draining"}, 504: {"description": "deadline passed"}})
async def infer(name: str, body: InferRequest, request: Request) -> Response:
    """Run the model on v2 JSON tensors. The LM takes BYTES `text_input` and returns BYTES `text_output`."""
    state = get_state(request)
    check_model_name(state, name)
    backend, engine = ready_engine(state)
    parameters = body.parameters or {}
    try:
        arrays = {}
        for index, tensor in enumerate(body.inputs):
            if tensor.name in arrays:
                raise InvalidInputError(f"duplicate input name {tensor.name!r}", param=f"inputs[{index}].name")
            arrays[tensor.name] = to_array(tensor, index)
        payloads = backend.v2_payloads(arrays, parameters)
        deterministic = backend.is_deterministic(parameters)
        known = [t.name for t in backend.info.outputs]
        wanted = [o.name for o in body.outputs] if body.outputs else known
        for index, output in enumerate(wanted):
            if output not in known:
                raise InvalidInputError(f"unknown output {output!r}; the model has {known}",
                                        param=f"outputs[{index}].name")
    except InvalidInputError as exc:
        raise bad_request(exc) from exc
    cache_request = body.model_dump(mode="json", exclude={"id"}) if deterministic else None

    def render(results: list[object]) -> bytes:
        outputs = backend.v2_outputs(results)
        response = InferResponse(model_name=name, model_version=backend.info.version,
                                 outputs=[to_output(n, outputs[n]) for n in wanted])
        return response.model_dump_json().encode("utf-8")

    content, cache_status = await run_request(state, backend, engine, payloads, route="v2-infer",
                                              cache_request=cache_request, render=render)
    return _with_id(content, body.id, cache_status)


def _with_id(content: bytes, request_id: str | None, cache_status: str) -> Response:
    # Cached bodies are stored without the request id, which differs between equal requests.
    if request_id is not None:
        data = json.loads(content)
        data["id"] = request_id
        content = json.dumps(data).encode("utf-8")
    return Response(content, media_type="application/json", headers={"X-Cache": cache_status})
