"""The TF-enabled server: `workloads.serve` on the TF trainer's SavedModel export, over HTTP, without torch.

Runs in .venv-tf, which has TensorFlow and the server's packages but no torch, as the
images/serve-tf image does.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Iterator

import boto3
import numpy as np
import pytest
import tf_keras as keras

from tests.support import dockerfile
from tests.support.liveserver import LiveServer, live_server
from tests.support.servers import S3Server
from tests.workloads.files import upload_dir
from workloads.common.uri import S3Uri
from workloads.trainer_tf.data import load_digits, split_holdout
from workloads.trainer_tf.records import ImageSet
from workloads.trainer_tf.train import build_model, predict_classes

IMAGE = dockerfile.REPO_ROOT / "images" / "serve-tf"


@pytest.fixture(scope="module")
def digits_model(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, keras.Model, ImageSet]:
    """The trainer's CNN fitted briefly on digits, exported as the trainer exports it and uploaded to S3."""
    train, heldout = split_holdout(load_digits(), seed=0)
    keras.utils.set_random_seed(0)
    model = build_model(train.images.shape[1:], len(train.class_names), lr=3e-3)
    model.fit(train.images.astype(np.float32), train.labels, epochs=4, batch_size=64, verbose=0)
    folder = tmp_path_factory.mktemp("serve-tf") / "digits" / "1"
    model.export(str(folder))
    boto3.client("s3").create_bucket(Bucket="serve-tf")
    uri = S3Uri("serve-tf", "models/digits/1")
    upload_dir(folder, uri)
    return str(uri), model, heldout


@pytest.fixture(scope="module")
def server(digits_model: tuple[str, keras.Model, ImageSet]) -> Iterator[LiveServer]:
    """The server on the export in S3, with batching on."""
    with live_server(digits_model[0], model_name="digits", max_batch_size=8, max_wait_ms=20) as live:
        yield live


def _infer_body(images: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "images", "datatype": "FP32", "shape": list(images.shape),
                        "data": images.astype(np.float32).ravel().tolist()}]}


def _probabilities(response_json: dict[str, object]) -> np.ndarray:
    (output,) = response_json["outputs"]  # type: ignore[misc]
    assert output["name"] == "output_0" and output["datatype"] == "FP32"
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def test_the_server_runs_without_torch() -> None:
    assert importlib.util.find_spec("torch") is None
    for module in ("workloads.serve.__main__", "workloads.serve.app", "workloads.trainer_tf.serving"):
        importlib.import_module(module)


def test_metadata_reports_the_savedmodel_signature(server: LiveServer) -> None:
    with server.client() as client:
        body = client.get("/v2/models/digits").json()
    assert body["platform"] == "tensorflow_savedmodel"
    assert body["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    # `model.export` names the signature output output_0, as TF Serving reports it too.
    assert body["outputs"] == [{"name": "output_0", "datatype": "FP32", "shape": [-1, 10]}]


def test_infer_predicts_the_classes_of_the_trained_model(server: LiveServer,
                                                         digits_model: tuple[str, keras.Model, ImageSet]) -> None:
    _, model, heldout = digits_model
    images = heldout.images[:64]
    with server.client() as client:
        response = client.post("/v2/models/digits/infer", json=_infer_body(images))
    assert response.status_code == 200, response.text
    probabilities = _probabilities(response.json())
    np.testing.assert_allclose(probabilities, model(images.astype(np.float32)).numpy(), rtol=1e-4, atol=1e-5)
    served = probabilities.argmax(axis=1)
    assert (served == predict_classes(model, images)).all()
    assert (served == heldout.labels[:64]).mean() >= 0.8  # a trained model, not noise


def test_concurrent_requests_each_get_their_own_rows(server: LiveServer,
                                                     digits_model: tuple[str, keras.Model, ImageSet]) -> None:
    _, model, heldout = digits_model
    singles = [heldout.images[i : i + 1] for i in range(16)]

    async def send_all() -> list[np.ndarray]:
        async with server.async_client() as client:
            responses = await asyncio.gather(*(client.post("/v2/models/digits/infer", json=_infer_body(image))
                                               for image in singles))
        return [_probabilities(r.raise_for_status().json()) for r in responses]

    results = asyncio.run(send_all())
    expected = predict_classes(model, heldout.images[:16])
    assert [int(r.argmax()) for r in results] == expected.tolist()


def test_wrong_shape_is_400_naming_the_input(server: LiveServer) -> None:
    images = np.zeros((2, 8, 8), dtype=np.float32)
    with server.client() as client:
        response = client.post("/v2/models/digits/infer", json=_infer_body(images))
    assert response.status_code == 400
    assert "images" in response.text and "[-1, 8, 8, 1]" in response.text


def test_completions_on_a_tensor_model_point_at_v2_infer(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/completions", json={"model": "digits", "prompt": "7", "max_tokens": 4})
    assert response.status_code == 400
    assert "/v2/models/digits/infer" in response.text


def test_image_copies_only_existing_sources_and_no_torch_code() -> None:
    sources = dockerfile.copy_sources(IMAGE / "Dockerfile")
    assert "workloads/serve/" in sources and "workloads/trainer_tf/serving.py" in sources
    assert "images/serve-tf/requirements.txt" in sources
    assert [s for s in sources if not (dockerfile.REPO_ROOT / s).exists()] == []
    assert not any(s.startswith(("workloads/trainer_torch", "workloads/lm/model", "workloads/lm/export"))
                   for s in sources)


def test_image_is_pinned_non_root_and_runs_the_server() -> None:
    instructions = dockerfile.instructions(IMAGE / "Dockerfile")
    base = dockerfile.build_args(IMAGE / "Dockerfile")["TF_IMAGE"]
    assert re.fullmatch(r"tensorflow/tensorflow:2\.21\.0@sha256:[0-9a-f]{64}", base)
    users = [arg for instruction, arg in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert instructions[-1] == ("ENTRYPOINT", '["python3", "-m", "workloads.serve"]')


def test_image_pins_are_what_this_venv_tests() -> None:
    pins = dockerfile.pins(IMAGE / "requirements.txt")
    assert pins["tensorflow"] == "2.21.0" and "torch" not in pins
    assert {name: importlib.metadata.version(name) for name in pins} == pins


def test_dockerfile_is_hadolint_clean() -> None:
    result = dockerfile.hadolint(IMAGE / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr

