"""KServe v2 JSON tensors <-> numpy arrays, with every malformed input reported as `InvalidInputError`.

Elements are checked against the declared datatype before any conversion, so a string in an FP32
tensor or 300 in a UINT8 tensor is a 400 naming the tensor, never a numpy exception (500).
Non-finite floats in outputs use the proto3 JSON spellings ("NaN", "Infinity", "-Infinity"),
because JSON has no literal for them.

Binary tensor data (Triton's extension, docs/protocol/extension_binary_data.md): little-endian, row-major, no
padding; BOOL one byte per element (0 or 1); BYTES each element as a 4-byte little-endian length and its bytes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from workloads.serve.backends import InvalidInputError, numpy_dtype, v2_datatype
from workloads.serve.schemas import InferTensor, OutputTensor


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for element in stack[-1]:
            if isinstance(element, list):
                stack.append(iter(element))
                break
            flat.append(element)
        else:
            stack.pop()
    return flat


def _check_elements(flat: list[Any], datatype: str, where: str) -> None:
    if datatype == "BYTES":
        ok = all(isinstance(x, str) for x in flat)
        expected = "strings"
    elif datatype == "BOOL":
        ok = all(isinstance(x, bool) for x in flat)
        expected = "true/false"
    elif datatype.startswith(("INT", "UINT")):
        info = np.iinfo(numpy_dtype(datatype))
        ok = all(isinstance(x, int) and not isinstance(x, bool) and info.min <= x <= info.max for x in flat)
        expected = f"integers in [{info.min}, {info.max}]"
    else:
        ok = all(isinstance(x, int | float) and not isinstance(x, bool) for x in flat)
        expected = "numbers"
    if not ok:
        raise InvalidInputError(f"{datatype} elements must be {expected}", param=where)


def binary_size(parameters: dict[str, Any] | None, where: str) -> int | None:
    """The `binary_data_size` parameter: None when absent, 400 unless a non-negative integer."""
    size = (parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInputError(f"must be a byte count >= 0 (got {size!r})", param=f"{where}.binary_data_size")
    return size


def _bytes_elements(raw: bytes, where: str) -> list[str]:
    elements: list[str] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInputError("BYTES data ends inside an element's 4-byte length", param=where)
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InvalidInputError(f"BYTES element {len(elements)} says {size} bytes but the data ends first",
                                    param=where)
        try:
            elements.append(raw[offset : offset + size].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"BYTES element {len(elements)} is not UTF-8 text ({exc.reason})",
                                    param=where) from exc
        offset += size
    return elements


def from_binary(tensor: InferTensor, raw: bytes, index: int) -> np.ndarray:
    """An input sent as binary data, as an array of its datatype and shape."""
    where = f"inputs[{index}]"
    count = math.prod(tensor.shape)
    if tensor.datatype == "BYTES":
        flat: list[Any] = _bytes_elements(raw, where)
        if len(flat) != count:
            raise InvalidInputError(f"has {len(flat)} BYTES elements but shape {tensor.shape} needs {count}",
                                    param=where)
        return np.array(flat, dtype=object).reshape(tensor.shape)
    dtype = numpy_dtype(tensor.datatype).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise InvalidInputError(f"has {len(raw)} bytes of binary data but shape {tensor.shape} of "
                                f"{tensor.datatype} needs {count * dtype.itemsize}", param=where)
    if tensor.datatype == "BOOL":
        values = np.frombuffer(raw, dtype=np.uint8)
        if (values > 1).any():
            raise InvalidInputError("BOOL elements must be bytes 0 or 1", param=where)
        return values.astype(bool).reshape(tensor.shape)
    array = np.frombuffer(raw, dtype=dtype).astype(numpy_dtype(tensor.datatype)).reshape(tensor.shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInputError(f"values must be finite and within {tensor.datatype} range", param=where)
    return array


def to_binary(datatype: str, data: list[Any]) -> bytes:
    """An output tensor's JSON elements as binary data."""
    if datatype == "BYTES":
        encoded = [str(x).encode("utf-8") for x in data]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    # np.array parses the "NaN"/"Infinity" spellings back into floats.
    return np.array(data, dtype=numpy_dtype(datatype)).astype(numpy_dtype(datatype).newbyteorder("<")).tobytes()


def to_array(tensor: InferTensor, index: int) -> np.ndarray:
    """The input's elements as an array of its datatype and shape."""
    where = f"inputs[{index}].data"
    if tensor.data is None:
        raise InvalidInputError("is required unless parameters.binary_data_size sends the tensor as binary data",
                                param=where)
    flat = _flatten(tensor.data)
    count = math.prod(tensor.shape)
    if len(flat) != count:
        raise InvalidInputError(f"has {len(flat)} elements but shape {tensor.shape} needs {count}", param=where)
    _check_elements(flat, tensor.datatype, where)
    dtype = numpy_dtype(tensor.datatype)
    with np.errstate(over="ignore"):
        array = np.array(flat, dtype=dtype).reshape(tensor.shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInputError(f"values must be finite and within {tensor.datatype} range", param=where)
    return array


def _json_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def to_output(name: str, array: np.ndarray) -> OutputTensor:
    """A v2 output tensor from an array (flat row-major data)."""
    datatype = v2_datatype(array.dtype)
    flat = array.reshape(-1).tolist()
    if datatype == "BYTES":
        data: list[Any] = [x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x) for x in flat]
    elif array.dtype.kind == "f":
        data = [_json_float(x) for x in flat]
    else:
        data = flat
    return OutputTensor(name=name, shape=list(array.shape), datatype=datatype, data=data)
