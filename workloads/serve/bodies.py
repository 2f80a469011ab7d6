"""Request bodies as bytes: strict JSON text checks and the KServe binary tensor data framing.

JSON allows `"\\ud800"`, a lone UTF-16 surrogate that Python decodes into a string no UTF-8 encoder accepts;
left in, it fails deep inside tokenizing, hashing or logging. So every JSON body is checked once, up front:
UTF-8, well-formed, nesting within Python's limits, and no lone surrogate anywhere (keys included). Each
failure is an `InvalidInputError` naming where it is.

The binary extension (https://github.com/triton-inference-server/server/blob/main/docs/protocol/
extension_binary_data.md): when any tensor travels as binary data, the body is the JSON object followed by the
tensors' bytes, and the `Inference-Header-Content-Length` header gives the JSON object's length.
"""

from __future__ import annotations

import json
from typing import Any, Final

from workloads.serve.backends import InvalidInputError

HEADER_LENGTH: Final = "inference-header-content-length"
"""Request/response header with the JSON part's length when binary tensor data follows it (lower case)."""


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _surrogate_path(value: Any, path: str) -> str | None:
    """The path of the first string (or key) holding a lone surrogate, else None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if _has_surrogate(key):
                    return f"{where} (a key)"
                stack.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def parse_json(raw: bytes) -> Any:
    """The JSON value of `raw`; `InvalidInputError` (param `body` or the field) when it is not clean JSON text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                                "send JSON encoded as UTF-8", param="body") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and an integer past Python's 4300-digit conversion limit
        raise InvalidInputError(f"invalid JSON ({exc})", param="body") from exc
    except RecursionError as exc:
        raise InvalidInputError("invalid JSON (nested too deeply)", param="body") from exc
    where = _surrogate_path(value, "")
    if where is not None:
        raise InvalidInputError("holds a lone UTF-16 surrogate (such as \\ud800), which is not a character; "
                                "send valid Unicode text", param=where or "body")
    return value


def split_body(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary part) of a body by its `Inference-Header-Content-Length` (None: all JSON)."""
    if header_length is None:
        return raw, b""
    if not header_length.isascii() or not header_length.isdigit() or not 0 < int(header_length) <= len(raw):
        raise InvalidInputError(f"must be the JSON part's length in bytes, between 1 and the body's {len(raw)} "
                                f"(got {header_length!r})", param="Inference-Header-Content-Length")
    size = int(header_length)
    return raw[:size], raw[size:]
