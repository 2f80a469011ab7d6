"""KServe v2 (Open Inference Protocol) request and response bodies; the OpenAI ones are in `openai_schemas`.

Unknown request fields are rejected (400 naming the field) rather than silently ignored.
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

V2Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
"""The v2 datatypes the server accepts."""

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
MAX_DIMENSION: Final = 2**31 - 1
"""Largest tensor dimension, and largest element count, a v2 request may declare."""


class InferTensor(BaseModel):
    """A v2 input tensor."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=256)
    """Tensor name."""
    shape: list[int] = Field(max_length=32)
    """Dimensions; their product is the number of elements in `data`."""
    datatype: V2Datatype
    """v2 datatype."""
    data: list[Any] | None = None
    """Elements, flat in row-major order or nested to match `shape`; absent when sent as binary data."""
    parameters: dict[str, Any] | None = None
    """Per-tensor parameters: `binary_data_size` when the elements follow the JSON as binary data."""

    @field_validator("shape")
    @classmethod
    def _non_negative(cls, value: list[int]) -> list[int]:
        if any(d < 0 for d in value):
            raise ValueError("dimensions must be >= 0")
        # Bounded even when another dimension is 0: numpy refuses a shape past its index range however few elements.
        if any(d > MAX_DIMENSION for d in value) or math.prod(d for d in value if d) > MAX_DIMENSION:
            raise ValueError(f"dimensions and the product of the non-zero ones must be <= {MAX_DIMENSION}")
        return value


class RequestedOutput(BaseModel):
    """A v2 requested output."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=256)
    """Output tensor name."""
    parameters: dict[str, Any] | None = None
    """Per-output parameters: `binary_data` true returns the tensor as binary data."""


class InferRequest(BaseModel):
    """POST /v2/models/{name}/infer body."""

    model_config = _STRICT

    id: str | None = Field(None, max_length=256)
    """Request id, echoed in the response."""
    parameters: dict[str, Any] | None = None
    """Model parameters (for the LM: max_tokens, temperature, top_p, seed, stop); `binary_data_output` true
    returns every output as binary data."""
    inputs: list[InferTensor] = Field(min_length=1, max_length=64)
    """Input tensors."""
    outputs: list[RequestedOutput] | None = None
    """Outputs to return; all when absent."""


class OutputTensor(BaseModel):
    """A v2 output tensor."""

    name: str
    """Tensor name."""
    shape: list[int]
    """Dimensions."""
    datatype: str
    """v2 datatype."""
    data: list[Any] | None = None
    """Elements, flat in row-major order; non-finite floats as "NaN"/"Infinity"/"-Infinity"; absent when binary."""
    parameters: dict[str, Any] | None = None
    """`binary_data_size` when the tensor follows the JSON as binary data."""


class InferResponse(BaseModel):
    """POST /v2/models/{name}/infer response."""

    model_name: str
    """Served model name."""
    model_version: str
    """Model version."""
    id: str | None = None
    """The request's id."""
    outputs: list[OutputTensor]
    """Output tensors."""
