"""OpenAI-compatible routes: `POST /v1/completions`, `POST /v1/chat/completions` and `GET /v1/models`.

Both generation routes accept `n`, `logprobs`, penalties, `logit_bias` and `seed`; completions also `best_of`.
What they cannot do is a 400 naming the field and the fix: a non-empty `suffix` (our LM only continues
text), `logprobs` with `echo` (no prompt logprobs), `logprobs` or `best_of > n` with `stream`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from workloads.serve.backends import Backend, InvalidInputError, TextBackend
from workloads.serve.engine import BatchEngine
from workloads.serve.errors import ApiError
from workloads.serve.openai_common import (
    chat_logprobs,
    choose,
    completion_logprobs,
    new_id,
    payloads,
    respond,
    stream,
    usage,
)
from workloads.serve.openai_schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
)
from workloads.serve.state import (
    ServeState,
    bad_request,
    check_model_name,
    get_state,
    ready_engine,
    require_api_key,
)

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_api_key)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text} for code, text in {
        400: "a field that fails validation, malformed JSON, max_tokens over the cap, a prompt too long for the "
             "context, more sequences than the queue holds, or a tensor model (the message names the field)",
        401: "missing or wrong API key",
        404: "unknown model",
        413: "body too large",
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


def _text_backend(state: ServeState, model: str) -> tuple[TextBackend, BatchEngine]:
    backend, engine = ready_engine(state)
    check_model_name(state, model, param="model")
    if not isinstance(backend, TextBackend):
        raise ApiError(400, f"model: {model!r} is a tensor model; use POST /v2/models/{model}/infer", param="model")
    return backend, engine


def _head(state: ServeState, backend: Backend, prefix: str, kind: str) -> dict[str, Any]:
    return {"id": new_id(prefix), "object": kind, "created": int(time.time()), "model": state.settings.served_name,
            "system_fingerprint": backend.info.version}


@router.post("/completions", response_model=CompletionResponse, responses=_ERRORS)
async def completions(body: CompletionRequest, request: Request) -> Response:
    """Generate text for one prompt or a list of prompts (OpenAI completions API)."""
    state = get_state(request)
    backend, engine = _text_backend(state, body.model)
    prompts = body.prompts()
    work = payloads(backend, [backend.encode(p) for p in prompts], body, max_tokens=body.max_tokens,
                    candidates=body.candidates(), logprobs=body.logprobs, prompt_list=isinstance(body.prompt, list))
    if body.stream:
        def chunk(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
            return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}

        prelude = [chunk(i, prompts[i // body.n], None) for i in range(len(work))] if body.echo else []
        return await stream(state, engine, work, head=_head(state, backend, "cmpl", "text_completion"),
                            choice=chunk, prelude=prelude, per_prompt=body.n,
                            include_usage=body.stream_options is not None and body.stream_options.include_usage,
                            receive=request.receive)

    def render(results: list[object]) -> bytes:
        choices = [
            CompletionChoice(
                text=(prompts[p] if body.echo else "") + r.text, index=p * body.n + j,
                logprobs=completion_logprobs(backend, r.tokens) if body.logprobs is not None else None,
                finish_reason="length" if r.finish_reason == "length" else "stop",
            )
            for p, group in enumerate(choose(results, body.candidates(), body.n)) for j, r in enumerate(group)
        ]
        response = CompletionResponse(**_head(state, backend, "cmpl", "text_completion"), choices=choices,
                                      usage=usage(results, body.candidates()))
        return response.model_dump_json().encode("utf-8")

    return await respond(state, backend, engine, body, work, route="completions", id_prefix="cmpl", schema=CompletionResponse,
                         render=render,
                         receive=request.receive)


@router.post("/chat/completions", response_model=ChatCompletionResponse, responses=_ERRORS)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Reply to a conversation, rendered with the model's chat template (OpenAI chat completions API)."""
    state = get_state(request)
    backend, engine = _text_backend(state, body.model)
    try:
        prompt = backend.encode_chat([m.for_template() for m in body.messages])
    except InvalidInputError as exc:
        raise bad_request(exc) from exc
    budget = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    # Unset, the reply may run to the end of the context (capped), not stop at 16: OpenAI and vLLM answer chat so
    # (vLLM: entrypoints/serve/utils/api_utils.py get_max_tokens, the context left when max_tokens is None).
    max_tokens = body.token_budget() or min(backend.max_tokens_cap, max(1, backend.context_length - len(prompt)))
    # The cache key then holds the budget used, which the server's cap decides, not the request.
    body = body.model_copy(update={"max_tokens": max_tokens, "max_completion_tokens": None})
    work = payloads(backend, [prompt], body, max_tokens=max_tokens, candidates=body.n,
                    logprobs=body.logprob_count(), fields={"prompt": "messages", "max_tokens": budget})
    if body.stream:
        def chunk(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
            return {"index": index, "delta": {"content": text}, "logprobs": None, "finish_reason": finish_reason}

        prelude = [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                    "finish_reason": None} for i in range(len(work))]
        return await stream(state, engine, work, head=_head(state, backend, "chatcmpl", "chat.completion.chunk"),
                            choice=chunk, prelude=prelude, per_prompt=body.n,
                            include_usage=body.stream_options is not None and body.stream_options.include_usage,
                            receive=request.receive)

    def render(results: list[object]) -> bytes:
        choices = [
            ChatChoice(index=j, message=AssistantMessage(content=r.text),
                       logprobs=chat_logprobs(backend, r.tokens) if body.logprobs else None,
                       finish_reason="length" if r.finish_reason == "length" else "stop")
            for j, r in enumerate(choose(results, body.n, body.n)[0])
        ]
        response = ChatCompletionResponse(**_head(state, backend, "chatcmpl", "chat.completion"), choices=choices,
                                          usage=usage(results, body.n))
        return response.model_dump_json().encode("utf-8")

    return await respond(state, backend, engine, body, work, route="chat", id_prefix="chatcmpl", schema=ChatCompletionResponse,
                         render=render,
                         receive=request.receive)
