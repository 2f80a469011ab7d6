"""Error responses: one exception type for expected failures, JSON bodies in each protocol's shape.

Under `/v1` errors look like OpenAI's (`{"error": {"message", "type", "param", "code"}}`);
everywhere else like KServe v2's (`{"error": "message"}`). Validation errors are 400, as both OpenAI
and KServe v2 answer them (so the `openai` client raises `BadRequestError`), and name the field
(`temperature: Input should be less than or equal to 2`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error",
    413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
    503: "server_error", 504: "timeout_error",
}


class ApiError(Exception):
    """An expected failure with its HTTP status, a message naming the fix, and the field at fault."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def error_content(path: str, status: int, message: str, *, param: str | None = None,
                  code: str | None = None) -> dict[str, Any]:
    """The JSON error object for a request path."""
    if path.startswith("/v1/"):
        kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return {"error": message}


def error_response(request: Request, error: ApiError) -> JSONResponse:
    """An `ApiError` as a response."""
    content = error_content(request.url.path, error.status, error.message, param=error.param, code=error.code)
    return JSONResponse(content, status_code=error.status, headers=error.headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """(message, field) of the first validation error, e.g. ('n: only n=1 is supported', 'n')."""
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = _field(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx")
        detail = ctx.get("error", "malformed JSON") if isinstance(ctx, dict) else "malformed JSON"
        return f"body: invalid JSON ({detail})", "body"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{field}: {message}{more}", field


def install_error_handlers(app: FastAPI) -> None:
    """Render `ApiError`, validation errors and routing errors (404/405) as JSON in the protocol's shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, cast(ApiError, exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        message, field = validation_message(cast(RequestValidationError, exc))
        return error_response(request, ApiError(400, message, param=field))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        http = cast(StarletteHTTPException, exc)
        cause = http.__cause__
        if http.status_code == 400 and isinstance(cause, ValueError | RecursionError):
            # FastAPI answers 400 when the body is not even text (bad UTF-8) or nests too deep; that is bad JSON.
            return error_response(request, ApiError(400, f"body: invalid JSON ({cause.__class__.__name__})",
                                                    param="body"))
        message = http.detail if isinstance(http.detail, str) else json.dumps(http.detail)
        return error_response(request, ApiError(http.status_code, message, headers=http.headers))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
