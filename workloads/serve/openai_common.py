"""What the OpenAI routes share: generation payloads (n, best_of, penalties, logit_bias), choice selection,
logprobs in both APIs' shapes, the cached non-streaming path with fresh ids, and server-sent event streams.

Deterministic non-streaming requests (temperature 0 or a seed) go through the Redis cache. A hit gets a new `id`
and `created`, as a fresh response would. Streaming requests bypass the cache: replaying a cached body as
server-sent events would need a second format in the cache for little gain.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

from fastapi import Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive

from workloads.common.logs import log_event
from workloads.serve.backends import InvalidInputError, TextBackend
from workloads.serve.cache import BYPASS, STATUS_HEADER
from workloads.serve.completion import GenerationRequest, GenerationResult, TokenLogprob
from workloads.serve.engine import BatchEngine, WorkItem
from workloads.serve.errors import ApiError, error_content
from workloads.serve.openai_schemas import (
    ChoiceLogprobs,
    CompletionLogprobs,
    SamplingRequest,
    TokenLogprobOut,
    TopLogprob,
    Usage,
)
from workloads.serve.state import (
    ServeState,
    bad_request,
    deadline_error,
    engine_error,
    run_request,
    submit,
    unless_disconnected,
)

Event = tuple[int, object, bool]
"""(payload index, partial text or final result or exception, done) from the engine."""
DONE: Final = b"data: [DONE]\n\n"
"""The server-sent event that ends every stream, a failed one included."""
ChoiceChunk = Callable[[int, str, str | None], dict[str, Any]]
"""(choice index, text delta, finish reason or None) -> one stream chunk's `choices[0]`."""


def new_id(prefix: str) -> str:
    """A fresh response id such as `cmpl-<32 hex>`."""
    return f"{prefix}-{uuid.uuid4().hex}"


def _seed(seed: int | None, candidate: int) -> int | None:
    # Each candidate of a seeded request gets its own stream, so n choices differ yet repeat exactly.
    return None if seed is None else (seed + candidate) % 2**63


def payloads(backend: TextBackend, prompts: Sequence[tuple[int, ...]], body: SamplingRequest, *, max_tokens: int,
             candidates: int, logprobs: int | None, fields: Mapping[str, str] | None = None,
             prompt_list: bool = False) -> list[object]:
    """`candidates` generation requests per prompt, prompt-major; 400 when a prompt cannot fit, naming the field
    the client sent (`fields` renames the backend's `prompt`/`max_tokens`, e.g. to chat's `messages`; with
    `prompt_list`, the client sent a list and the prompt at fault is `prompt[i]`, as validation errors name it)."""
    bias: list[tuple[int, float]] = []
    for key, value in (body.logit_bias or {}).items():
        if int(key) >= backend.vocab_size:
            raise ApiError(400, f"logit_bias: token id {key} is out of range; this model's ids are "
                                f"0..{backend.vocab_size - 1}", param="logit_bias")
        bias.append((int(key), value))
    out: list[object] = []
    for position, ids in enumerate(prompts):
        try:
            backend.check_fits(ids, max_tokens)
        except InvalidInputError as exc:
            param = (fields or {}).get(exc.param or "", exc.param)
            if prompt_list and exc.param == "prompt":
                param = f"prompt[{position}]"
            raise bad_request(InvalidInputError(str(exc), param=param)) from exc
        out.extend(GenerationRequest(ids, max_tokens, body.temperature, body.top_p, _seed(body.seed, c), body.stops(),
                                     logprobs, body.presence_penalty, body.frequency_penalty, tuple(bias))
                   for c in range(candidates))
    return out


def choose(results: Sequence[object], candidates: int, n: int) -> list[list[GenerationResult]]:
    """Per prompt, its `n` choices: the first `n` candidates, or with best_of the `n` best per token."""
    generations = [r for r in results if isinstance(r, GenerationResult)]
    groups = [generations[i : i + candidates] for i in range(0, len(generations), candidates)]
    if candidates > n:
        return [sorted(group, key=lambda r: r.mean_logprob, reverse=True)[:n] for group in groups]
    return groups


def usage(results: Sequence[object], candidates: int) -> Usage:
    """Token counts: each prompt once, every generated token (discarded candidates included)."""
    generations = [r for r in results if isinstance(r, GenerationResult)]
    prompt = sum(r.prompt_tokens for r in generations[::candidates])
    completion = sum(r.completion_tokens for r in generations)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def completion_logprobs(backend: TextBackend, tokens: Sequence[TokenLogprob]) -> CompletionLogprobs:
    """The completions API's columns; `text_offset` counts characters, a multi-byte one at its first byte."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offsets, chars = [], 0
    for token in tokens:
        offsets.append(chars)
        chars += len(decoder.decode(bytes(backend.token_bytes(token.token_id))))
    return CompletionLogprobs(
        tokens=[backend.token_text(t.token_id) for t in tokens], token_logprobs=[t.logprob for t in tokens],
        top_logprobs=[{backend.token_text(i): lp for i, lp in t.top} for t in tokens], text_offset=offsets,
    )


def chat_logprobs(backend: TextBackend, tokens: Sequence[TokenLogprob]) -> ChoiceLogprobs:
    """The chat API's per-token objects."""
    def top(token_id: int, logprob: float) -> TopLogprob:
        return TopLogprob(token=backend.token_text(token_id), logprob=logprob, bytes=backend.token_bytes(token_id))

    return ChoiceLogprobs(content=[
        TokenLogprobOut(**top(t.token_id, t.logprob).model_dump(), top_logprobs=[top(i, lp) for i, lp in t.top])
        for t in tokens
    ])


async def respond(state: ServeState, backend: TextBackend, engine: BatchEngine, body: SamplingRequest,
                  work: list[object], *, route: str, id_prefix: str, schema: type[BaseModel],
                  render: Callable[[list[object]], bytes], receive: Receive | None = None) -> Response:
    """The non-streaming path: cache lookup, generate, render, cache-put; a hit gets a fresh id and created.

    A cached entry that is not a valid `schema` body is a miss (ResponseCache.get), never a 500 or a broken answer.
    """
    cache_request = body.model_dump(mode="json", exclude={"stream", "stream_options", "user"}) \
        if body.deterministic() else None

    def replay(content: bytes) -> bytes:
        schema.model_validate_json(content)
        data = json.loads(content)
        data["id"], data["created"] = new_id(id_prefix), int(time.time())
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    content, cache_status = await run_request(state, backend, engine, work, route=route, cache_request=cache_request,
                                              replay=replay, render=render, receive=receive)
    return Response(content, media_type="application/json", headers={STATUS_HEADER: cache_status})


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def _next_event(queue: asyncio.Queue[Event], deadline: float) -> Event:
    async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
        return await queue.get()


async def stream(state: ServeState, engine: BatchEngine, work: list[object], *, head: dict[str, Any],
                 choice: ChoiceChunk, prelude: list[dict[str, Any]], include_usage: bool,
                 per_prompt: int, receive: Receive | None = None) -> StreamingResponse:
    """Stream every payload's text as chunks `{**head, "choices": [choice(...)]}`, then usage and `[DONE]`.

    Payload i is choice i; `per_prompt` choices share a prompt (usage counts it once); usage only with
    `include_usage`. `receive` (the request's) notices a client that leaves before the first token.
    """
    events: asyncio.Queue[Event] = asyncio.Queue()
    items = submit(state, engine, work, events)
    # Wait for the first event before sending headers, so a queue timeout is still a real 504 (and a client that
    # leaves meanwhile a 499 that frees its queue slot).
    try:
        first = await unless_disconnected(_next_event(events, items[0].deadline), receive)
    except TimeoutError as exc:
        _cancel(items)
        raise deadline_error(state) from exc
    except (asyncio.CancelledError, ApiError):
        _cancel(items)
        raise
    if isinstance(first[1], BaseException):
        _cancel(items)
        raise engine_error(state, first[1]) or first[1]
    chunks = _chunks(state, items, events, first, head=head, choice=choice, prelude=prelude,
                     usage_per=per_prompt if include_usage else 0)
    return StreamingResponse(chunks, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", STATUS_HEADER: BYPASS})


def _cancel(items: Sequence[WorkItem]) -> None:
    for item in items:
        item.cancelled = True


async def _chunks(state: ServeState, items: Sequence[WorkItem], events: asyncio.Queue[Event], first: Event, *,
                  head: dict[str, Any], choice: ChoiceChunk, prelude: list[dict[str, Any]],
                  usage_per: int) -> AsyncIterator[bytes]:
    for extra in prelude:
        yield sse({**head, "choices": [extra]})
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
                yield sse({**head, "choices": [choice(index, value.text[emitted[index]:], reason)]})
            elif isinstance(value, str) and not done:
                emitted[index] += len(value)
                yield sse({**head, "choices": [choice(index, value, None)]})
            else:
                error = engine_error(state, value) if isinstance(value, BaseException) else None
                if error is None:
                    log_event("stream_failed", error=repr(value))
                    error = ApiError(500, "internal server error; the server logged it")
                # Then [DONE], as vLLM ends a failed stream (entrypoints/openai/completion/serving.py and
                # chat_completion/serving.py: the error event, then `data: [DONE]`), so a client reading to [DONE] ends.
                yield sse(error_content("/v1/", error.status, error.message))
                yield DONE
                return
            if len(results) == len(items):
                break
            try:
                event = await _next_event(events, items[0].deadline)
            except TimeoutError:
                yield sse(error_content("/v1/", 504, deadline_error(state).message))
                yield DONE
                return
        if usage_per:
            totals = usage([results[i] for i in sorted(results)], usage_per)
            yield sse({**head, "choices": [], "usage": totals.model_dump()})
        yield DONE
    finally:
        for item in items:
            if item.event_index not in results:
                item.cancelled = True
