"""Fixtures for the server tests: one trained tiny export, on disk and in the moto S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import torch

from tests.support.servers import S3Server
from tests.workloads.files import upload_dir
from tests.workloads.serve.support import write_tiny_export
from workloads.common.uri import S3Uri
from workloads.lm.model import GPT


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: the CI runners have 2 shared cores, where torch's spinning threads cost ~5x."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="package")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GPT]:
    """A trained tiny export folder and the model it holds."""
    folder = tmp_path_factory.mktemp("export") / "tiny-lm"
    model = write_tiny_export(folder)
    return folder, model


@pytest.fixture(scope="package")
def tiny_model(tiny_export: tuple[Path, GPT]) -> GPT:
    """The exported model, for reference generations."""
    return tiny_export[1]


@pytest.fixture(scope="package")
def model_uri(s3: S3Server, tiny_export: tuple[Path, GPT]) -> str:
    """The export uploaded to the moto S3 server, as s3://models/lm/tiny-lm."""
    boto3.client("s3", endpoint_url=s3.endpoint).create_bucket(Bucket="models")
    uri = S3Uri("models", "lm/tiny-lm")
    upload_dir(tiny_export[0], uri)
    return str(uri)
