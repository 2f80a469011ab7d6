"""Fixtures for the PyTorch trainer tests: a bucket and a prepared dataset on the S3 test server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.servers import S3Server
from tests.workloads.trainer_torch.support import Bucket, prepared_dataset


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> Bucket:
    """A fresh bucket for one test module."""
    return Bucket.create("trainer-torch")


@pytest.fixture(scope="module")
def dataset(bucket: Bucket, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The stdlib corpus prepared into 4 train shards and a val split; returns the manifest URI."""
    return prepared_dataset(bucket, tmp_path_factory.mktemp("corpus"), shard_tokens=100_000, val_fraction=0.05)


@pytest.fixture()
def local_dir(tmp_path: Path) -> Path:
    """Node-local scratch for one run."""
    return tmp_path / "local"
