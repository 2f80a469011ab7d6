"""A TensorFlow backend for the inference server: load an exported SavedModel and run numpy batches.

`workloads.serve` plugs `TfSavedModel` in behind KServe v2 `/v2/models/{name}/infer`; the tensor
metadata uses the v2 protocol's names and datatypes
(https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

DEFAULT_SIGNATURE = "serving_default"
"""The signature TF Serving and `model.export` use by default."""

V2_DATATYPES: dict[tf.DType, str] = {
    tf.bool: "BOOL",
    tf.uint8: "UINT8",
    tf.uint16: "UINT16",
    tf.uint32: "UINT32",
    tf.uint64: "UINT64",
    tf.int8: "INT8",
    tf.int16: "INT16",
    tf.int32: "INT32",
    tf.int64: "INT64",
    tf.float16: "FP16",
    tf.float32: "FP32",
    tf.float64: "FP64",
    tf.string: "BYTES",
}
"""TensorFlow dtypes and their KServe v2 datatype names."""


class ModelInputError(ValueError):
    """A batch does not match the model's input tensor."""


@dataclass(frozen=True)
class TensorMetadata:
    """One input or output tensor, in KServe v2 model-metadata terms."""

    name: str
    """Tensor name in the signature."""
    datatype: str
    """KServe v2 datatype, e.g. `FP32`."""
    shape: list[int]
    """Dimensions; -1 where any size is accepted (the batch dimension)."""


def _metadata(name: str, spec: tf.TensorSpec) -> TensorMetadata:
    if spec.dtype not in V2_DATATYPES:
        raise ValueError(f"tensor {name!r}: dtype {spec.dtype.name} has no KServe v2 datatype")
    shape = [-1 if dim is None else int(dim) for dim in spec.shape.as_list()]
    return TensorMetadata(name=name, datatype=V2_DATATYPES[spec.dtype], shape=shape)


class TfSavedModel:
    """A SavedModel with one input and one output tensor, called on numpy batches."""

    def __init__(self, path: str | Path, signature: str = DEFAULT_SIGNATURE) -> None:
        """Load the SavedModel folder at `path` and pick `signature`."""
        loaded = tf.saved_model.load(str(path))
        if signature not in loaded.signatures:
            raise ValueError(f"SavedModel at '{path}' has no signature {signature!r} "
                             f"(has {sorted(loaded.signatures.keys())})")
        self._loaded = loaded  # The concrete function needs its captured variables kept alive.
        self._function = loaded.signatures[signature]
        input_specs: dict[str, tf.TensorSpec] = self._function.structured_input_signature[1]
        output_specs: dict[str, tf.TensorSpec] = self._function.structured_outputs
        if len(input_specs) != 1 or len(output_specs) != 1:
            raise ValueError(f"signature {signature!r} must have one input and one output "
                             f"(has inputs {sorted(input_specs)}, outputs {sorted(output_specs)})")
        self.inputs = [_metadata(name, spec) for name, spec in input_specs.items()]
        """The input tensor."""
        self.outputs = [_metadata(name, spec) for name, spec in output_specs.items()]
        """The output tensor."""
        self._input_dtype = next(iter(input_specs.values())).dtype

    def check(self, batch: np.ndarray) -> None:
        """Raise `ModelInputError` unless `batch` fits the input's rank and fixed dimensions."""
        expected = self.inputs[0]
        if batch.ndim != len(expected.shape) or any(
            want != -1 and got != want for want, got in zip(expected.shape, batch.shape, strict=True)
        ):
            raise ModelInputError(f"input {expected.name!r}: expected shape {expected.shape} "
                                  f"(got {list(batch.shape)})")
        if not (np.issubdtype(batch.dtype, np.number) or batch.dtype == np.bool_):
            raise ModelInputError(f"input {expected.name!r}: expected {expected.datatype} values (got {batch.dtype})")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """The output tensor for `batch`, cast to the input dtype first."""
        self.check(batch)
        tensor = tf.convert_to_tensor(batch.astype(self._input_dtype.as_numpy_dtype, copy=False))
        result = self._function(**{self.inputs[0].name: tensor})
        return np.asarray(result[self.outputs[0].name].numpy())
