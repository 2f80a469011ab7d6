"""The outermost ASGI layer: request metrics, the body-size limit, body text checks, and JSON for 500 and 503.

It is plain ASGI rather than Starlette's `BaseHTTPMiddleware`, which buffers streaming
responses and interferes with cancellation. The body is read here (up to the limit) and
replayed to the app, so an oversized body is a 413 before any parsing, even when the client
sends no Content-Length. Every body's JSON (the part before any binary tensor data) is checked
here too (`bodies.parse_json`), so undecodable bytes or a lone surrogate are a 400 on every route.

When a drain runs out of time (`--drain-timeout-s`), uvicorn cancels the requests still running;
one cancelled before its response started gets a JSON 503 here instead of uvicorn's plain-text 500.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workloads.common.logs import log_event
from workloads.serve.backends import InvalidInputError
from workloads.serve.bodies import HEADER_LENGTH, parse_json, split_body
from workloads.serve.errors import error_content
from workloads.serve.metrics import ServeMetrics

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _BodyTooLargeError(Exception):
    """Raised while streaming a request body past --max-body-bytes; answered with 413."""


def route_label(scope: Scope, status: int) -> str:
    """The matched route's template (`/v2/models/{name}/infer`), so labels stay few.

    Starlette's own routes (`/openapi.json`, `/docs`) record no template; they succeed only on fixed
    paths, so a successful path is its own label. Any other failure before routing (404, 413) is
    `unmatched`, so scanners cannot mint label values.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    return str(scope.get("path", "unmatched")) if status < 400 else "unmatched"


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_json(send: Send, status: int, content: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    """Send a complete JSON response."""
    body = json.dumps(content).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class GuardedResponse:
    """One HTTP request's response as it is sent: its status, and JSON answers for a drain's cancel and for bugs."""

    def __init__(self, scope: Scope, send: Send, component: str) -> None:
        self.status = 500
        """The status sent, or 500 until a response starts."""
        self.started = False
        """Whether the response has started (after that, nothing else can be answered)."""
        self._scope = scope
        self._send = send
        self._component = component

    async def send(self, message: Message) -> None:
        """The ASGI send to hand the app: records the status, then sends."""
        if message["type"] == "http.response.start":
            self.status, self.started = message["status"], True
        await self._send(message)

    async def run(self, call: Callable[[Send], Awaitable[None]]) -> None:
        """Run `call(self.send)`; a cancel gets a JSON 503 (then re-raises), an escaped exception a JSON 500."""
        path = self._scope.get("path", "")
        try:
            await call(self.send)
        except asyncio.CancelledError:
            # Uvicorn cancels what is still running when the drain times out; answer before it closes the connection.
            if not self.started:
                content = error_content(path, 503, f"the {self._component} shut down before this request finished; "
                                        "retry on another replica")
                await send_json(self.send, 503, content, [(b"retry-after", b"1"), (b"connection", b"close")])
            raise
        except Exception as exc:  # any escaped exception is a bug: log it, answer JSON 500
            log_event("unhandled_error", path=path, error=repr(exc), traceback=traceback.format_exc())
            if not self.started:
                content = error_content(path, 500, f"internal {self._component} error; the {self._component} logged it")
                await send_json(self.send, 500, content, [])


class ObservedMiddleware:
    """Times every request to its last byte and reports it to `observe(route label, status, seconds)`; a drain's
    cancel is a JSON 503, an escaped exception a JSON 500 (GuardedResponse naming `component`). The gateway's and
    the recommendation service's outermost layer."""

    def __init__(self, app: ASGIApp, *, observe: Callable[[str, int, float], None], component: str) -> None:
        self.app = app
        self.observe = observe
        self.component = component

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        response = GuardedResponse(scope, send, self.component)
        try:
            await response.run(lambda guarded_send: self.app(scope, receive, guarded_send))
        finally:
            self.observe(route_label(scope, response.status), response.status, time.monotonic() - started)


class ServeMiddleware:
    """Counts and times every request, tracks in-flight POSTs, enforces `max_body_bytes`, catches bugs."""

    def __init__(self, app: ASGIApp, *, metrics: ServeMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        response = GuardedResponse(scope, send, "server")
        inference = scope["method"] in _BODY_METHODS
        if inference:
            self.metrics.in_flight.inc()
        try:
            await response.run(lambda guarded_send: self._dispatch(scope, receive, guarded_send))
        finally:
            if inference:
                self.metrics.in_flight.dec()
            self.metrics.observe_request(route_label(scope, response.status), response.status,
                                         time.monotonic() - started)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLargeError
            body = await _read_body(receive, self.max_body_bytes)
        except _BodyTooLargeError:
            message = f"request body is larger than the server's limit of {self.max_body_bytes} bytes"
            await send_json(send, 413, error_content(scope.get("path", ""), 413, message), [(b"connection", b"close")])
            return
        if body:
            try:
                header = dict(scope.get("headers", [])).get(HEADER_LENGTH.encode())
                parse_json(split_body(body, None if header is None else header.decode("latin-1"))[0])
            except InvalidInputError as exc:
                path = scope.get("path", "")
                await send_json(send, 400, error_content(path, 400, f"{exc.param}: {exc}", param=exc.param), [])
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
