"""Request and response bodies: OpenAI completions and the KServe v2 (Open Inference Protocol) JSON.

Unknown request fields are rejected (422 naming the field) rather than silently ignored, so a
client relying on an unsupported OpenAI option (`logprobs`, `best_of`, ...) learns it at once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

V2Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
"""The v2 datatypes the server accepts."""

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


def _is_text_or_texts(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


class StreamOptions(BaseModel):
    """OpenAI `stream_options`."""

    model_config = _STRICT

    include_usage: bool = False
    """Send a last chunk with `usage` (and no choices) before `[DONE]`."""


class CompletionRequest(BaseModel):
    """POST /v1/completions body (the OpenAI legacy completions API)."""

    model_config = _STRICT

    model: str = Field(min_length=1, max_length=256)
    """The served model name (see GET /v1/models)."""
    prompt: str | list[str] = Field(min_length=1)
    """One prompt, or several (one choice each, `index` in order)."""
    max_tokens: int = Field(16, ge=1)
    """Most tokens to generate per prompt; at most the server's --max-tokens-cap."""
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    """Sampling temperature; 0 is greedy (deterministic, cacheable)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling probability mass."""
    n: int = 1
    """Completions per prompt; only 1 is supported."""
    stream: bool = False
    """Send server-sent events (`text_completion` chunks, then `data: [DONE]`)."""
    stream_options: StreamOptions | None = None
    """Streaming options."""
    stop: str | list[str] | None = None
    """Up to 4 strings that end generation; the text returned stops before them."""
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    """Sampling seed: the same request with the same seed gives the same text (and is cacheable)."""
    echo: bool = False
    """Prepend the prompt to the returned text."""
    user: str | None = Field(None, max_length=256)
    """End-user id, accepted for compatibility and not used."""

    @field_validator("n")
    @classmethod
    def _only_one(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"only n=1 is supported (got {value}); send separate requests for more samples")
        return value

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        # Checked before pydantic tries each union member, so the error names `prompt`, not `prompt.str`.
        if not _is_text_or_texts(value):
            raise ValueError("must be a string or a list of strings (token-id prompts are not supported)")
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_shape(cls, value: Any) -> Any:
        if value is None:
            return value
        if not _is_text_or_texts(value):
            raise ValueError("must be a string or a list of strings")
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop sequences (got {len(stops)})")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return value

    def prompts(self) -> list[str]:
        """The prompt(s) as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stops(self) -> tuple[str, ...]:
        """The stop sequence(s) as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def deterministic(self) -> bool:
        """Greedy or seeded: the same request always gets the same text."""
        return self.temperature == 0 or self.seed is not None


class CompletionChoice(BaseModel):
    """One completion."""

    text: str
    """Generated text."""
    index: int
    """Position of its prompt in the request."""
    logprobs: None = None
    """Always null (log-probabilities are not supported)."""
    finish_reason: Literal["stop", "length"] | None
    """`stop` (EOS or a stop sequence) or `length` (max_tokens); null in non-final stream chunks."""


class Usage(BaseModel):
    """Token counts."""

    prompt_tokens: int
    """Prompt tokens, the BOS token included."""
    completion_tokens: int
    """Generated tokens."""
    total_tokens: int
    """Their sum."""


class CompletionResponse(BaseModel):
    """POST /v1/completions response (also the shape of each stream chunk, without usage)."""

    id: str
    """Unique id, `cmpl-...`."""
    object: Literal["text_completion"] = "text_completion"
    """Always `text_completion`."""
    created: int
    """Unix time."""
    model: str
    """Served model name."""
    system_fingerprint: str
    """The model version (changes whenever the weights do)."""
    choices: list[CompletionChoice]
    """One per prompt."""
    usage: Usage | None = None
    """Token counts (null in stream chunks)."""


class ModelCard(BaseModel):
    """One entry of GET /v1/models."""

    id: str
    """Model name."""
    object: Literal["model"] = "model"
    """Always `model`."""
    created: int
    """Unix time the model was loaded."""
    owned_by: str = "modelplane"
    """Always `modelplane`."""


class ModelList(BaseModel):
    """GET /v1/models response."""

    object: Literal["list"] = "list"
    """Always `list`."""
    data: list[ModelCard]
    """The served models."""


class InferTensor(BaseModel):
    """A v2 input tensor."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=256)
    """Tensor name."""
    shape: list[int] = Field(max_length=32)
    """Dimensions; their product is the number of elements in `data`."""
    datatype: V2Datatype
    """v2 datatype."""
    data: list[Any]
    """Elements, flat in row-major order or nested to match `shape`."""
    parameters: dict[str, Any] | None = None
    """Per-tensor parameters (accepted, unused)."""

    @field_validator("shape")
    @classmethod
    def _non_negative(cls, value: list[int]) -> list[int]:
        if any(d < 0 for d in value):
            raise ValueError("dimensions must be >= 0")
        return value


class RequestedOutput(BaseModel):
    """A v2 requested output."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=256)
    """Output tensor name."""
    parameters: dict[str, Any] | None = None
    """Per-output parameters (accepted, unused)."""


class InferRequest(BaseModel):
    """POST /v2/models/{name}/infer body."""

    model_config = _STRICT

    id: str | None = Field(None, max_length=256)
    """Request id, echoed in the response."""
    parameters: dict[str, Any] | None = None
    """Model parameters (for the LM: max_tokens, temperature, top_p, seed, stop)."""
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
    data: list[Any]
    """Elements, flat in row-major order; non-finite floats as "NaN"/"Infinity"/"-Infinity"."""


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
