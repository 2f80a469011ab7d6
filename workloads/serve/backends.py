"""The `Backend` protocol the server batches requests for, and the tensor backend.

A backend turns validated v2 inputs into payloads (one per queue slot), runs a batch of payloads
in the engine's worker thread, and reports each payload's result through a `BatchSink`.
Two backends exist:
- `LmBackend` (`workloads.serve.lm_backend`): the PyTorch trainer's LM export, a `TextBackend`;
- `TensorBackend` (here): any `Predictor` with `predict(np.ndarray) -> np.ndarray`, such as the
  TF trainer's `TfSavedModel` in the TF-enabled image. It needs no torch or TensorFlow itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np


class InvalidInputError(ValueError):
    """A request the model cannot run (bad shape, datatype or parameter); the client gets 400."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        """The request field at fault, e.g. `inputs[0].shape`."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output in KServe v2 metadata terms."""

    name: str
    """Tensor name clients use in `inputs[].name`/`outputs[].name`."""
    datatype: str
    """v2 datatype, e.g. FP32 or BYTES."""
    shape: tuple[int, ...]
    """Dimensions; -1 means any size (the first is the batch dimension)."""

    def to_json(self) -> dict[str, Any]:
        """The `{name, datatype, shape}` object of the v2 metadata response."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelInfo:
    """What the metadata endpoints report about the loaded model."""

    name: str
    """Served model name."""
    version: str
    """Version clients see: the `<version>` of a `<name>/<version>` model URI, else `digest`."""
    digest: str
    """The first 16 hex digits of the export's manifest sha256 (changes whenever the weights do): the cache key's
    part, so re-uploaded weights, or another bucket's export of the same name and version, never share answers."""
    platform: str
    """v2 `platform` string, e.g. `modelplane_lm` or `tensorflow_savedmodel`."""
    inputs: tuple[TensorSpec, ...]
    """Input tensors."""
    outputs: tuple[TensorSpec, ...]
    """Output tensors."""


class BatchSink(Protocol):
    """How a running batch reports back to the engine (called from the worker thread)."""

    def emit(self, index: int, value: object, *, done: bool) -> None:
        """Deliver a partial value (streamed text) or, with `done`, the final result of payload `index`."""

    def cancelled(self, index: int) -> bool:
        """True when nobody waits for payload `index` any more (timed out or disconnected)."""

    def count_tokens(self, n: int) -> None:
        """Add `n` generated tokens to the metric."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model the engine can batch requests for."""

    info: ModelInfo
    """Name, version and tensor specs."""

    def warm_up(self) -> None:
        """Run the model once so the first request pays no lazy-initialisation cost."""

    def can_join(self, batch: Sequence[object], payload: object) -> bool:
        """True when `payload` may run in the same batch as `batch` (never false for an empty batch)."""

    def run_batch(self, payloads: Sequence[object], sink: BatchSink) -> None:
        """Run `payloads` together; report every payload's final result through `sink.emit(..., done=True)`."""

    def v2_payloads(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> list[object]:
        """Validated v2 inputs -> payloads to queue; raises `InvalidInputError` for requests the model cannot run."""

    def v2_outputs(self, results: Sequence[object]) -> dict[str, np.ndarray]:
        """The payloads' results -> v2 output tensors by name."""

    def is_deterministic(self, parameters: Mapping[str, Any]) -> bool:
        """True when the same v2 request always gives the same answer (so it may be cached)."""


@runtime_checkable
class TextBackend(Backend, Protocol):
    """A backend that also serves `/v1/completions` and `/v1/chat/completions`: it tokenizes and bounds prompts."""

    def encode(self, prompt: str) -> tuple[int, ...]:
        """Prompt token ids, as the model was trained to see them."""

    vocab_size: int
    """Token ids are 0..vocab_size-1 (bounds `logit_bias` keys)."""
    context_length: int
    """Most tokens, prompt and generation together, a sequence may hold."""
    max_tokens_cap: int
    """Most tokens a request may generate per sequence (the server's --max-tokens-cap)."""

    def encode_chat(self, messages: list[dict[str, Any]]) -> tuple[int, ...]:
        """Prompt token ids for chat messages (`{role, content}` dicts); `InvalidInputError` when it cannot."""

    def token_text(self, token_id: int) -> str:
        """How logprobs name a token."""

    def token_bytes(self, token_id: int) -> list[int]:
        """The UTF-8 bytes a token adds to the text."""

    def check_fits(self, prompt_ids: Sequence[int], max_tokens: int) -> None:
        """Raise `InvalidInputError` when the prompt plus `max_tokens` do not fit the model."""


class Predictor(Protocol):
    """A tensor model: one batched input array in, one batched output array out."""

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Outputs for `inputs`; the first dimension is the batch."""


@dataclass(frozen=True)
class TensorPayload:
    """One v2 request's rows for a tensor model."""

    array: np.ndarray
    """The input, with the batch dimension first."""


class TensorBackend:
    """A `Predictor` behind the v2 protocol, batching requests by concatenating rows."""

    def __init__(self, predictor: Predictor, info: ModelInfo) -> None:
        if len(info.inputs) != 1 or len(info.outputs) != 1:
            raise ValueError("TensorBackend serves exactly one input and one output tensor")
        self.predictor = predictor
        self.info = info

    def warm_up(self) -> None:
        """Predict on one row of zeros when the input shape is fully known."""
        spec = self.info.inputs[0]
        if all(dim != -1 for dim in spec.shape[1:]):
            self.predictor.predict(np.zeros((1, *spec.shape[1:]), dtype=numpy_dtype(spec.datatype)))

    def can_join(self, batch: Sequence[object], payload: object) -> bool:
        """Rows concatenate only when dtypes and the non-batch dimensions agree."""
        if not batch:
            return True
        first, candidate = cast(TensorPayload, batch[0]).array, cast(TensorPayload, payload).array
        return first.dtype == candidate.dtype and first.shape[1:] == candidate.shape[1:]

    def run_batch(self, payloads: Sequence[object], sink: BatchSink) -> None:
        """One `predict` call over all rows, split back per request."""
        arrays = [cast(TensorPayload, p).array for p in payloads]
        outputs = np.asarray(self.predictor.predict(np.concatenate(arrays, axis=0)))
        start = 0
        for index, array in enumerate(arrays):
            rows = array.shape[0]
            sink.emit(index, outputs[start : start + rows], done=True)
            start += rows

    def v2_payloads(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> list[object]:
        """Check the one input's name, datatype and shape against the spec."""
        spec = self.info.inputs[0]
        if set(inputs) != {spec.name}:
            raise InvalidInputError(f"expected exactly one input named {spec.name!r} (got {sorted(inputs)})",
                                    param="inputs")
        array = inputs[spec.name]
        expected = numpy_dtype(spec.datatype)
        if array.dtype != expected:
            raise InvalidInputError(f"input {spec.name!r} must be {spec.datatype}", param="inputs[0].datatype")
        if array.ndim != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, array.shape, strict=True)):
            raise InvalidInputError(
                f"input {spec.name!r} must have shape {list(spec.shape)} (-1 = any; got {list(array.shape)})",
                param="inputs[0].shape",
            )
        if array.shape[0] == 0:
            raise InvalidInputError("the batch dimension must be at least 1", param="inputs[0].shape")
        return [TensorPayload(array)]

    def v2_outputs(self, results: Sequence[object]) -> dict[str, np.ndarray]:
        """The single output tensor."""
        return {self.info.outputs[0].name: np.asarray(results[0])}

    def is_deterministic(self, parameters: Mapping[str, Any]) -> bool:
        """A tensor model is a pure function of its input."""
        return True


_NUMPY_NAMES = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object",
}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a v2 datatype (BYTES -> object holding str)."""
    return np.dtype(_NUMPY_NAMES[datatype])


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype (strings and objects -> BYTES)."""
    if dtype.kind in "OUS":
        return "BYTES"
    for name, numpy_name in _NUMPY_NAMES.items():
        if numpy_name == dtype.name:
            return name
    raise ValueError(f"no v2 datatype for numpy dtype {dtype}")
