"""KServe v2 / Open Inference Protocol routes: health, server and model metadata, model config, and inference.

https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
Health routes take no API key (kubelet probes call them); metadata and inference do.

Inference reads the body itself rather than through FastAPI's JSON body, because `tritonclient.http` sends no
Content-Type and, by default, appends binary tensor data after the JSON (Triton's binary tensor data
extension, docs/protocol/extension_binary_data.md in triton-inference-server/server). `GET .../config` answers
in Triton's model configuration shape (model_config.proto in triton-inference-server/common), which
`tritonclient`'s `get_model_config` reads.
"""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from workloads.serve.backends import InvalidInputError, TensorSpec
from workloads.serve.bodies import HEADER_LENGTH, parse_json, split_body
from workloads.serve.cache import STATUS_HEADER, CacheStatus
from workloads.serve.errors import validation_message
from workloads.serve.schemas import InferRequest, InferResponse
from workloads.serve.state import (
    bad_request,
    check_model_name,
    check_model_version,
    get_state,
    ready_engine,
    require_api_key,
    run_request,
)
from workloads.serve.tensors import binary_size, from_binary, to_array, to_binary, to_output

router = APIRouter(prefix="/v2", tags=["v2"])
SERVER_NAME = "modelplane-serve"
"""`name` in the v2 server metadata."""
BINARY_EXTENSION = "binary_tensor_data"
"""The extension name Triton reports for binary tensor data in the server metadata."""


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
    return {"name": SERVER_NAME, "version": "1", "extensions": [BINARY_EXTENSION]}


@router.get("/models/{name}/versions/{version}/ready")
async def model_version_ready(name: str, version: str, request: Request) -> JSONResponse:
    """`model_ready` for version `version` of the model (404 for another version)."""
    check_model_version(get_state(request), name, version)
    return await model_ready(name, request)


@router.get("/models/{name}/ready")
async def model_ready(name: str, request: Request) -> JSONResponse:
    """200 when `name` is loaded and warm; 503 while loading or draining; 404 for other names."""
    state = get_state(request)
    check_model_name(state, name)
    return JSONResponse({"name": name, "ready": state.ready}, status_code=200 if state.ready else 503)


@router.get("/models/{name}/versions/{version}", dependencies=[Depends(require_api_key)])
async def model_version_metadata(name: str, version: str, request: Request) -> dict[str, Any]:
    """`model_metadata` for version `version` of the model (404 for another version)."""
    check_model_version(get_state(request), name, version)
    return await model_metadata(name, request)


@router.get("/models/{name}", dependencies=[Depends(require_api_key)])
async def model_metadata(name: str, request: Request) -> dict[str, Any]:
    """Name, versions, platform and tensor specs of the model."""
    state = get_state(request)
    check_model_name(state, name)
    backend, _ = ready_engine(state)
    info = backend.info
    return {"name": info.name, "versions": [info.version], "platform": info.platform,
            "inputs": [t.to_json() for t in info.inputs], "outputs": [t.to_json() for t in info.outputs]}


@router.get("/models/{name}/versions/{version}/config", dependencies=[Depends(require_api_key)])
async def model_version_config(name: str, version: str, request: Request) -> dict[str, Any]:
    """`model_config` for version `version` of the model (404 for another version)."""
    check_model_version(get_state(request), name, version)
    return await model_config(name, request)


@router.get("/models/{name}/config", dependencies=[Depends(require_api_key)])
async def model_config(name: str, request: Request) -> dict[str, Any]:
    """The model's configuration in Triton's shape: name, platform, max_batch_size, input and output specs."""
    state = get_state(request)
    check_model_name(state, name)
    backend, _ = ready_engine(state)
    info = backend.info

    def spec(tensor: TensorSpec) -> dict[str, Any]:
        # Triton's DataType enum is TYPE_ plus the v2 name, except BYTES, which it calls TYPE_STRING.
        kind = "STRING" if tensor.datatype == "BYTES" else tensor.datatype
        return {"name": tensor.name, "data_type": f"TYPE_{kind}", "dims": list(tensor.shape)}

    # max_batch_size 0: dims are the full shapes (the batch dimension is their first -1), as the metadata shows.
    return {"name": info.name, "platform": info.platform, "max_batch_size": 0,
            "input": [spec(t) for t in info.inputs], "output": [spec(t) for t in info.outputs]}


_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the outputs (JSON, or JSON then binary data with Inference-Header-Content-Length)",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}}}},
    400: {"description": "inputs the model cannot run, malformed JSON or binary data (the message names the field)"},
    404: {"description": "unknown model"}, 429: {"description": "queue full"},
    503: {"description": "loading or draining"}, 504: {"description": "deadline passed"},
}


_INFER_BODY: Final = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}}}}
"""The infer routes' documented body (read by hand: JSON, or JSON followed by binary tensor data)."""


@router.post("/models/{name}/versions/{version}/infer", dependencies=[Depends(require_api_key)],
             responses=_INFER_RESPONSES, openapi_extra=_INFER_BODY)
async def infer_version(name: str, version: str, request: Request) -> Response:
    """`infer` on version `version` of the model (404 for another version)."""
    check_model_version(get_state(request), name, version)
    return await infer(name, request)


@router.post("/models/{name}/infer", dependencies=[Depends(require_api_key)], responses=_INFER_RESPONSES,
             openapi_extra=_INFER_BODY)
async def infer(name: str, request: Request) -> Response:
    """Run the model on v2 tensors (JSON, or binary data after the JSON). The LM maps BYTES `text_input` to
    BYTES `text_output`."""
    state = get_state(request)
    check_model_name(state, name)
    backend, engine = ready_engine(state)
    try:
        head, binary = split_body(await request.body(), request.headers.get(HEADER_LENGTH))
        body = _validated(parse_json(head))
        arrays = _inputs(body, binary)
        parameters = {k: v for k, v in (body.parameters or {}).items() if k not in _RESERVED_PARAMETERS}
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
    # The key covers the decoded tensors, so JSON and binary requests for the same inputs share an entry.
    cache_request = {"parameters": parameters, "outputs": wanted, "inputs": [
        {"name": n, "shape": list(a.shape), "data": a.reshape(-1).tolist()} for n, a in arrays.items()
    ]} if deterministic else None

    def render(results: list[object]) -> bytes:
        outputs = backend.v2_outputs(results)
        response = InferResponse(model_name=name, model_version=backend.info.version,
                                 outputs=[to_output(n, outputs[n]) for n in wanted])
        return response.model_dump_json(exclude_none=True).encode("utf-8")

    def replay(content: bytes) -> bytes:
        InferResponse.model_validate_json(content)  # an entry that no longer reads is a miss (ResponseCache.get)
        return content

    content, cache_status = await run_request(state, backend, engine, payloads, route="v2-infer",
                                              cache_request=cache_request, replay=replay, render=render,
                                              receive=request.receive)
    return _respond(json.loads(content), body, cache_status)


_RESERVED_PARAMETERS = frozenset({"binary_data_output"})
"""Request parameters of the protocol itself, not handed to the model."""


def _validated(value: Any) -> InferRequest:
    try:
        return InferRequest.model_validate(value)
    except ValidationError as exc:
        message, field = validation_message(RequestValidationError(exc.errors()))
        raise InvalidInputError(message.removeprefix(f"{field}: "), param=field) from exc


def _inputs(body: InferRequest, binary: bytes) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(body.inputs):
        if tensor.name in arrays:
            raise InvalidInputError(f"duplicate input name {tensor.name!r}", param=f"inputs[{index}].name")
        size = binary_size(tensor.parameters, f"inputs[{index}].parameters")
        if size is None:
            arrays[tensor.name] = to_array(tensor, index)
            continue
        if tensor.data is not None:
            raise InvalidInputError("send data or parameters.binary_data_size, not both", param=f"inputs[{index}]")
        if offset + size > len(binary):
            raise InvalidInputError(f"binary_data_size {size} runs past the {len(binary)} bytes after the JSON",
                                    param=f"inputs[{index}].parameters.binary_data_size")
        arrays[tensor.name] = from_binary(tensor, binary[offset : offset + size], index)
        offset += size
    if offset != len(binary):
        raise InvalidInputError(f"{len(binary) - offset} bytes after the JSON belong to no input's binary_data_size",
                                param="inputs")
    return arrays


def _wants_binary(body: InferRequest, output: str) -> bool:
    default = (body.parameters or {}).get("binary_data_output") is True
    for requested in body.outputs or []:
        if requested.name == output and requested.parameters and "binary_data" in requested.parameters:
            return requested.parameters["binary_data"] is True
    return default


def _respond(data: dict[str, Any], body: InferRequest, cache_status: CacheStatus) -> Response:
    # Cached bodies are stored as JSON without the request id (which differs between equal requests);
    # binary outputs are cut from that JSON here, so one cache entry serves both forms.
    if body.id is not None:
        data["id"] = body.id
    chunks: list[bytes] = []
    for output in data["outputs"]:
        if _wants_binary(body, output["name"]):
            raw = to_binary(output["datatype"], output.pop("data"))
            output["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
    head = json.dumps(data, ensure_ascii=False).encode("utf-8")
    headers: dict[str, str] = {STATUS_HEADER: cache_status}
    if not chunks:
        return Response(head, media_type="application/json", headers=headers)
    headers[HEADER_LENGTH] = str(len(head))
    return Response(head + b"".join(chunks), media_type="application/octet-stream", headers=headers)
