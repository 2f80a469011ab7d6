"""KServe v2 JSON tensors <-> numpy arrays, with every malformed input reported as `InvalidInputError`.

Elements are checked against the declared datatype before any conversion, so a string in an FP32
tensor or 300 in a UINT8 tensor is a 400 naming the tensor, never a numpy exception (500).
Non-finite floats in outputs use the proto3 JSON spellings ("NaN", "Infinity", "-Infinity"),
because JSON has no literal for them.
"""

from __future__ import annotations

import math
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


def to_array(tensor: InferTensor, index: int) -> np.ndarray:
    """The input's elements as an array of its datatype and shape."""
    where = f"inputs[{index}].data"
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
