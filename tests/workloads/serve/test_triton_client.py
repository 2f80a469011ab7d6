"""Our server driven by the official `tritonclient.http`: health, metadata, config, and infer with JSON and binary data."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.workloads.serve.support import LiveServer, live_server, reference_greedy
from workloads.lm.model import GPT
from workloads.serve.backends import Backend, ModelInfo, TensorBackend, TensorSpec
from workloads.serve.loader import Loader
from workloads.serve.settings import ServeSettings

PROMPTS = ["the", "a lazy"]


@pytest.fixture(scope="module")
def server(model_uri: str) -> Iterator[LiveServer]:
    """A server for the whole module."""
    with live_server(model_uri) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    """The official HTTP client."""
    c = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield c
    c.close()


def test_health_metadata_and_config(server: LiveServer, client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(server.name)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(server.name)
    assert metadata["inputs"] == [{"name": "text_input", "datatype": "BYTES", "shape": [-1]}]
    config = client.get_model_config(server.name)
    assert config["input"] == [{"name": "text_input", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert config["output"] == [{"name": "text_output", "data_type": "TYPE_STRING", "dims": [-1]}]


def _text_input(binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("text_input", [len(PROMPTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([p.encode() for p in PROMPTS], dtype=object), binary_data=binary)
    return tensor


def test_infer_with_json_tensors(server: LiveServer, client: triton.InferenceServerClient, tiny_model: GPT) -> None:
    result = client.infer(server.name, [_text_input(binary=False)], request_id="json-1",
                          outputs=[triton.InferRequestedOutput("text_output", binary_data=False)],
                          parameters={"max_tokens": 10})
    assert result.get_response()["id"] == "json-1"
    texts = [str(t) for t in result.as_numpy("text_output")]
    assert texts == [reference_greedy(tiny_model, p, 10)[0] for p in PROMPTS]


def test_infer_with_binary_tensors(server: LiveServer, client: triton.InferenceServerClient, tiny_model: GPT) -> None:
    # The client's defaults: binary input data, and no outputs named, so every output comes back binary.
    result = client.infer(server.name, [_text_input(binary=True)], parameters={"max_tokens": 10})
    output = result.get_output("text_output")
    assert output is not None and "binary_data_size" in output["parameters"]
    texts = [t.decode() for t in result.as_numpy("text_output")]
    assert texts == [reference_greedy(tiny_model, p, 10)[0] for p in PROMPTS]


def test_errors_raise_with_the_status(server: LiveServer, client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nope", [_text_input(binary=True)])
    assert missing.value.status() == "404"
    with pytest.raises(InferenceServerException, match=r"parameters\.max_tokens") as bad:
        client.infer(server.name, [_text_input(binary=True)], parameters={"max_tokens": 0})
    assert bad.value.status() == "400"


class Identity:
    """A tensor model that returns its input, so every datatype travels both ways."""

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The input itself."""
        return inputs


def _identity_loader(datatype: str) -> Loader:
    def load(settings: ServeSettings) -> Backend:
        spec = (TensorSpec("x", datatype, (-1, 3)),)
        info = ModelInfo(name=settings.served_name, version="id-1", digest="id-1", platform="numpy", inputs=spec,
                         outputs=(TensorSpec("y", datatype, (-1, 3)),))
        return TensorBackend(Identity(), info)

    return load


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("BOOL", np.array([[True, False, True], [False, False, True]])),
        ("INT8", np.array([[-128, 0, 127], [1, -1, 5]], dtype=np.int8)),
        ("UINT16", np.array([[0, 65535, 7], [1, 2, 3]], dtype=np.uint16)),
        ("INT64", np.array([[-(2**62), 0, 2**62], [3, 4, 5]], dtype=np.int64)),
        ("FP16", np.array([[0.5, -1.25, 1000.0], [1e-3, 2.0, -0.0]], dtype=np.float16)),
        ("FP64", np.array([[np.pi, -np.e, 1e300], [0.1, 0.2, 0.3]], dtype=np.float64)),
    ],
)
@pytest.mark.parametrize("binary", [True, False])
def test_numeric_tensors_round_trip(model_uri: str, datatype: str, values: np.ndarray, binary: bool) -> None:
    with live_server(model_uri, model_name="identity", loader=_identity_loader(datatype)) as server:
        client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
        try:
            tensor = triton.InferInput("x", list(values.shape), datatype)
            tensor.set_data_from_numpy(values, binary_data=binary)
            result = client.infer("identity", [tensor],
                                  outputs=[triton.InferRequestedOutput("y", binary_data=binary)])
        finally:
            client.close()
    out = result.as_numpy("y")
    assert out is not None and out.dtype == values.dtype
    np.testing.assert_array_equal(out, values)
