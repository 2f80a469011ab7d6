"""A `<name>/<version>` model URI (TF Serving's and KServe's layout) serves model `name`, version `version`,
driven by the official clients (`tritonclient.http`, `openai`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.servers import RedisServer
from tests.workloads.files import upload_dir
from tests.workloads.serve.support import LiveServer, live_server, reference_greedy
from workloads.common.settings import SettingsError
from workloads.common.uri import S3Uri
from workloads.lm.export import save_export
from workloads.lm.model import GPT
from workloads.serve.cache import HIT, MISS, STATUS_HEADER
from workloads.serve.settings import ServeSettings

VERSIONED_URI = S3Uri("models", "tiny/1")
"""Where the export is uploaded: version 1 of the model `tiny`."""


@pytest.fixture(scope="module")
def server(model_uri: str, tiny_export: tuple[Path, GPT]) -> Iterator[LiveServer]:
    """A server of the export at s3://models/tiny/1 (the `model_uri` fixture made the bucket)."""
    upload_dir(tiny_export[0], VERSIONED_URI)
    with live_server(str(VERSIONED_URI)) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    """The official KServe v2 (Triton) HTTP client."""
    c = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield c
    c.close()


def _prompt() -> triton.InferInput:
    tensor = triton.InferInput("text_input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"the"], dtype=object))
    return tensor


def test_the_model_is_named_by_the_folder_before_the_version(server: LiveServer,
                                                             client: triton.InferenceServerClient) -> None:
    assert server.name == "tiny"
    metadata = client.get_model_metadata("tiny")
    assert (metadata["name"], metadata["versions"]) == ("tiny", ["1"])
    assert client.get_model_metadata("tiny", model_version="1")["versions"] == ["1"]
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", model_version="1")
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as chat:
        assert [model.id for model in chat.models.list()] == ["tiny"]


def test_the_config_of_the_version_is_the_models_config(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("tiny", model_version="1")
    assert config == client.get_model_config("tiny")
    assert (config["name"], [t["name"] for t in config["input"]]) == ("tiny", ["text_input"])


def test_the_cache_is_keyed_by_the_weights_not_by_the_version_folder(tiny_model: GPT, redis: RedisServer,
                                                                      tmp_path: Path) -> None:
    # Two exports of version 1 of `tiny` that differ (as re-uploaded weights would) share one Redis.
    answers = []
    for place in ("a", "b"):
        folder = tmp_path / place / "tiny" / "1"
        save_export(tiny_model, folder, meta={"upload": place})
        with live_server(str(folder), redis_url=redis.url) as server, \
                openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as chat:
            for _ in "12":
                raw = chat.completions.with_raw_response.create(model="tiny", prompt="the", max_tokens=4,
                                                                temperature=0)
                answers.append((raw.headers[STATUS_HEADER], raw.parse().system_fingerprint))
    assert answers == [(MISS, "1"), (HIT, "1"), (MISS, "1"), (HIT, "1")]


def test_infer_on_the_version_answers_with_that_version(client: triton.InferenceServerClient,
                                                        tiny_model: GPT) -> None:
    for version in ("", "1"):
        result = client.infer("tiny", [_prompt()], model_version=version, parameters={"max_tokens": 6})
        assert result.get_response()["model_version"] == "1"
        assert [t.decode() for t in result.as_numpy("text_output")] == [reference_greedy(tiny_model, "the", 6)[0]]


def test_another_version_is_not_found(client: triton.InferenceServerClient) -> None:
    for call in (lambda: client.infer("tiny", [_prompt()], model_version="2"),
                 lambda: client.get_model_metadata("tiny", model_version="2"),
                 lambda: client.get_model_config("tiny", model_version="2")):
        with pytest.raises(InferenceServerException, match="version '2' of model 'tiny' is not served") as caught:
            call()
        assert caught.value.status() == "404"
    assert not client.is_model_ready("tiny", model_version="2")


@pytest.mark.parametrize(("uri", "name", "version"), [
    ("s3://models/tiny/1", "tiny", "1"),
    # Triton's clients send the version as a number: a zero-padded folder is that number.
    ("/srv/models/tiny/007/", "tiny", "7"),
    ("s3://models/tiny/0001", "tiny", "1"),
    # `.` and `..` are no names: a local path is normalised first, an S3 key just skips them.
    ("./1", "1", None),
    ("/srv/models/tiny/1/..", "tiny", None),
    ("s3://models/tiny/./1", "tiny", "1"),
    # Without a whole-number last segment, or with only a bucket before it, nothing changes: the last segment.
    ("s3://models/lm/tiny-lm", "tiny-lm", None),
    ("s3://models/tiny/v2", "v2", None),
    ("s3://models/1", "1", None),
])
def test_a_uri_gives_the_name_and_version_of_its_layout(uri: str, name: str, version: str | None) -> None:
    settings = ServeSettings(model_uri=uri)
    assert (settings.served_name, settings.uri_version) == (name, version)


@pytest.mark.parametrize("uri", ["/models/tiny/1\n", " s3://models/tiny/1", "/models/ti\tny/1"])
def test_a_uri_with_whitespace_or_control_characters_is_rejected(uri: str) -> None:
    with pytest.raises(SettingsError) as caught:
        ServeSettings.parse(["--model-uri", uri], {})
    assert caught.value.errors == [f"--model-uri (MODELPLANE_SERVE_MODEL_URI): remove the whitespace or control "
                                   f"characters (a pasted newline?) from the URI (got {uri!r})"]


def test_a_model_name_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(SettingsError, match="--model-name"):
        ServeSettings.parse(["--model-uri", "/models/tiny", "--model-name", "tiny\n"], {})
