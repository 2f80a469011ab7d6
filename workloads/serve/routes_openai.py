"""OpenAI-compatible routes: `POST /v1/completions` and `GET /v1/models`.

Deterministic non-streaming requests (temperature 0 or a seed) go through the Redis cache.
Streaming requests bypass it: replaying a cached body as server-sent events would need a second
format in the cache for little gain, since streaming clients care about time to first token.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from workloads.common.logs import log_event
from workloads.serve.backends import InvalidInputError, TextBackend
from workloads.serve.completion import GenerationRequest, GenerationResult
from workloads.serve.engine import BatchEngine, WorkItem
from workloads.serve.errors import ApiError, error_content
from workloads.serve.schemas import CompletionChoice, CompletionRequest, CompletionResponse, ModelCard, ModelList, Usage
from workloads.serve.state import (
    ServeState,
    bad_request,
    check_model_name,
    deadline_error,
    engine_error,
    get_state,
    ready_engine,
    require_api_key,
    run_request,
    submit,
)

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_api_key)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text} for code, text in {
        400: "max_tokens over the cap, prompt too long for the context, or a tensor model",
        401: "missing or wrong API key",
        404: "unknown model",
        413: "body too large",
        422: "malformed JSON or a field that fails validation (the message names it)",
        429: "queue full (see Retry-After)",
        503: "model loading or server draining (see Retry-After)",
        504: "request deadline passed",
    }.items()
}


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The served model."""
    state = get_state(request)
    return ModelList(data=[ModelCard(id=state.settings.served_name, created=state.loaded_at)])


def _payloads(backend: TextBackend, engine: BatchEngine, body: CompletionRequest) -> list[object]:
    prompts = body.prompts()
    if len(prompts) > engine.max_queue:
        raise ApiError(400, f"prompt: at most {engine.max_queue} prompts per request (got {len(prompts)})",
                       param="prompt")
    payloads: list[object] = []
    for prompt in prompts:
        ids = backend.encode(prompt)
        try:
            backend.check_fits(ids, body.max_tokens)
        except InvalidInputError as exc:
            raise bad_request(exc) from exc
        payloads.append(GenerationRequest(ids, body.max_tokens, body.temperature, body.top_p, body.seed, body.stops()))
    return payloads


@router.post("/completions", response_model=CompletionResponse, responses=_ERRORS)
async def completions(body: CompletionRequest, request: Request) -> Response:
    """Generate text for one prompt or a list of prompts (OpenAI completions API)."""
    state = get_state(request)
    backend, engine = ready_engine(state)
    check_model_name(state, body.model, param="model")
    if not isinstance(backend, TextBackend):
        raise ApiError(400, f"model: {body.model!r} is a tensor model; use POST /v2/models/{body.model}/infer",
                       param="model")
    payloads = _payloads(backend, engine, body)
    if body.stream:
        return await _stream(state, engine, body, payloads)
    cache_request = body.model_dump(mode="json", exclude={"stream", "stream_options", "user"}) \
        if body.deterministic() else None

    def render(results: list[object]) -> bytes:
        generations = [r for r in results if isinstance(r, GenerationResult)]
        return _response(state, backend, body, generations).model_dump_json().encode("utf-8")

    content, cache_status = await run_request(state, backend, engine, payloads, route="completions",
                                              cache_request=cache_request, render=render)
    return Response(content, media_type="application/json", headers={"X-Cache": cache_status})


def _response(state: ServeState, backend: TextBackend, body: CompletionRequest,
              results: Sequence[GenerationResult]) -> CompletionResponse:
    prompts = body.prompts()
    choices = [
        CompletionChoice(text=(prompts[i] if body.echo else "") + r.text, index=i,
                         finish_reason="length" if r.finish_reason == "length" else "stop")
        for i, r in enumerate(results)
    ]
    return CompletionResponse(
        id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=state.settings.served_name,
        system_fingerprint=backend.info.version, choices=choices, usage=_usage(results),
    )


def _usage(results: Sequence[GenerationResult]) -> Usage:
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def _next_event(queue: asyncio.Queue[tuple[int, object, bool]], deadline: float) -> tuple[int, object, bool]:
    async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
        return await queue.get()


async def _stream(state: ServeState, engine: BatchEngine, body: CompletionRequest,
                  payloads: list[object]) -> StreamingResponse:
    events: asyncio.Queue[tuple[int, object, bool]] = asyncio.Queue()
    items = submit(state, engine, payloads, events)
    deadline = items[0].deadline
    # Wait for the first event before sending headers, so a queue timeout is still a real 504.
    try:
        first = await _next_event(events, deadline)
    except TimeoutError as exc:
        for item in items:
            item.cancelled = True
        raise deadline_error(state) from exc
    except asyncio.CancelledError:
        for item in items:
            item.cancelled = True
        raise
    if isinstance(first[1], BaseException):
        for item in items:
            item.cancelled = True
        raise engine_error(state, first[1]) or first[1]
    return StreamingResponse(_chunks(state, body, items, events, first), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Cache": "bypass"})


async def _chunks(state: ServeState, body: CompletionRequest, items: Sequence[WorkItem],
                  events: asyncio.Queue[tuple[int, object, bool]],
                  first: tuple[int, object, bool]) -> AsyncIterator[bytes]:
    version = state.backend.info.version if state.backend is not None else ""
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": state.settings.served_name, "system_fingerprint": version}

    def chunk(index: int, text: str, finish_reason: str | None) -> bytes:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**head, "choices": [choice]})

    if body.echo:
        for index, prompt in enumerate(body.prompts()):
            yield chunk(index, prompt, None)
    emitted = [0] * len(items)
    results: dict[int, GenerationResult] = {}
    event = first
    try:
        while True:
            index, value, done = event
            if isinstance(value, GenerationResult):
                results[index] = value
                if value.first_token_at is not None:
                    state.metrics.time_to_first_token.observe(value.first_token_at - items[index].enqueued_at)
                reason = "length" if value.finish_reason == "length" else "stop"
                yield chunk(index, value.text[emitted[index]:], reason)
            elif isinstance(value, str) and not done:
                emitted[index] += len(value)
                yield chunk(index, value, None)
            else:
                error = engine_error(state, value) if isinstance(value, BaseException) else None
                if error is None:
                    log_event("stream_failed", error=repr(value))
                    error = ApiError(500, "internal server error; the server logged it")
                yield _sse(error_content("/v1/", error.status, error.message))
                return
            if len(results) == len(items):
                break
            try:
                event = await _next_event(events, items[0].deadline)
            except TimeoutError:
                yield _sse(error_content("/v1/", 504, deadline_error(state).message))
                return
        if body.stream_options is not None and body.stream_options.include_usage:
            usage = _usage([results[i] for i in sorted(results)])
            yield _sse({**head, "choices": [], "usage": usage.model_dump()})
        yield b"data: [DONE]\n\n"
    finally:
        for item in items:
            if item.event_index not in results:
                item.cancelled = True
