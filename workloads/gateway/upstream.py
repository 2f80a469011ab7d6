"""The upstream runtime over one pooled httpx client; every failure becomes an `ApiError` in OpenAI's shape.

Nothing waits unbounded: connecting (and waiting for a pooled connection) is bounded by --connect-timeout-s,
the upstream's silence by --read-timeout-s. The mapping:
- no connection (refused, DNS, connect or pool timeout) → 503 with `Retry-After`: the runtime is down or starting;
- no answer within the read timeout → 504;
- a broken answer (connection reset, malformed HTTP) → 502;
- an upstream 5xx → 502, or 503 when the upstream said 503 (overloaded), its message quoted;
- an upstream 401 or 403 → 502: the runtime refused the gateway's credentials, not the client's (REFUSED_GATEWAY).
Other upstream 4xx answers (the runtime's own validation) pass through unchanged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Final

import httpx

from workloads.common.logs import log_event
from workloads.gateway.metrics import GatewayMetrics
from workloads.serve.errors import ApiError, error_content
from workloads.serve.openai_common import DONE

RETRY_AFTER_S: Final = "1"
"""`Retry-After` on a 503 for an unreachable upstream: a restarting runtime is usually back within seconds."""
REFUSED_GATEWAY: Final = (401, 403)
"""Upstream statuses that refuse the gateway itself, never its client (whose key is not forwarded): vLLM's 401 for a
wrong or missing `--api-key` (entrypoints/serve/middleware/authenticate.py), the mesh's 403. Passed through, the
client's SDK would report its own valid key as invalid; they are a 502 naming the gateway's setting instead."""
PASSED_RESPONSE_HEADERS: Final = ("content-type", "retry-after")
"""Upstream response headers the gateway forwards (hop-by-hop and length headers are its own)."""


class Upstream:
    """Sends requests to the runtime at `base_url` and maps its failures."""

    def __init__(self, base_url: str, metrics: GatewayMetrics, *, api_key: str | None, connect_timeout_s: float,
                 read_timeout_s: float, max_connections: int, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url
        """The runtime's base URL (named in error messages)."""
        self._metrics = metrics
        # Identity encoding: streamed chunks are relayed as raw bytes, so the upstream must not compress them.
        headers = {"accept-encoding": "identity"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=base_url, headers=headers, transport=transport,
            timeout=httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=read_timeout_s,
                                  pool=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def _fail(self, reason: str, status: int, message: str, exc: BaseException | None = None,
              headers: dict[str, str] | None = None) -> ApiError:
        self._metrics.upstream_errors.labels(reason=reason).inc()
        log_event("upstream_error", reason=reason, status=status, error=repr(exc) if exc else message)
        code = {"connect": "upstream_unavailable", "timeout": "upstream_timeout",
                "saturated": "gateway_saturated"}.get(reason, "upstream_error")
        return ApiError(status, message, code=code, headers=headers)

    def _transport_error(self, exc: httpx.TransportError) -> ApiError:
        name = exc.__class__.__name__
        if isinstance(exc, httpx.PoolTimeout):
            # A busy but healthy upstream: every one of --max-connections is in use. Not an upstream failure.
            return self._fail("saturated", 503, f"the gateway has no free connection to {self.base_url} "
                              "(--max-connections in use); retry shortly", exc, {"Retry-After": RETRY_AFTER_S})
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return self._fail("connect", 503, f"upstream {self.base_url} is unreachable ({name}); retry shortly",
                              exc, {"Retry-After": RETRY_AFTER_S})
        if isinstance(exc, httpx.TimeoutException):
            return self._fail("timeout", 504, f"upstream {self.base_url} did not answer in time ({name})", exc)
        return self._fail("protocol", 502, f"upstream {self.base_url} sent a broken answer ({name})", exc)

    async def send(self, method: str, path: str, body: bytes | None = None, *, stream: bool = False) -> httpx.Response:
        """The upstream's response (body unread when `stream` and 2xx/3xx); `ApiError` for failures and upstream 5xx."""
        headers = {"content-type": "application/json"} if body is not None else None
        request = self._client.build_request(method, path, content=body, headers=headers)
        try:
            response = await self._client.send(request, stream=stream)
            if response.status_code < 400:
                return response
            # Error answers are short and never streamed on: read them whole (which also closes a stream).
            content = await response.aread()
            if response.status_code in REFUSED_GATEWAY:
                raise self._fail("status", 502, f"upstream {self.base_url} refused the gateway's own credentials "
                                 f"({response.status_code}: {_upstream_message(content)}); its operator must set "
                                 "--upstream-api-key-env to the runtime's key or allow the gateway in the mesh")
            if response.status_code < 500:
                return response
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        status = 503 if response.status_code == 503 else 502
        retry = response.headers.get("retry-after")
        raise self._fail("status", status, f"upstream answered {response.status_code}: {_upstream_message(content)}",
                         headers={"Retry-After": retry} if retry else None)

    async def read(self, response: httpx.Response) -> bytes:
        """The whole body of a response `send` returned unread; `ApiError` when the upstream breaks off or goes
        silent for --read-timeout-s."""
        try:
            return await response.aread()
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        finally:
            await response.aclose()

    async def relay(self, response: httpx.Response, path: str) -> AsyncIterator[bytes]:
        """The streamed body chunk by chunk as it arrives; a failure mid-stream ends it with an SSE error event and
        `data: [DONE]`, as vLLM ends a stream that fails (entrypoints/openai/completion/serving.py)."""
        tail = b"\n\n"
        try:
            async for chunk in response.aiter_raw():
                yield chunk
                tail = (tail + chunk)[-2:]
        except httpx.TransportError as exc:
            error = self._transport_error(exc)
            event = error_content(path, error.status, error.message, code=error.code)
            # An event the upstream broke off is ended first, so the error event is not glued onto its line.
            yield (b"" if tail == b"\n\n" else b"\n\n") + f"data: {json.dumps(event)}\n\n".encode() + DONE
        finally:
            await response.aclose()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _upstream_message(content: bytes) -> str:
    """The message of an upstream error body (OpenAI's shape, or any JSON or text), at most 300 characters."""
    try:
        data = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")[:300] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        if isinstance(data.get("message"), str):
            return str(data["message"])[:300]
    return json.dumps(data)[:300]
