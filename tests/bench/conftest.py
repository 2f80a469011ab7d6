"""Fixtures shared by the trainer benchmarks: one bucket and the stdlib corpus as one dataset."""

from __future__ import annotations

import pytest

from tests.support.servers import S3Server
from tests.workloads.trainer_torch.support import Bucket, prepared_dataset


@pytest.fixture(scope="module")
def bench_bucket(s3: S3Server) -> Bucket:
    """A fresh bucket on the session's moto server."""
    return Bucket.create("bench-trainer")


@pytest.fixture(scope="module")
def bench_dataset(bench_bucket: Bucket, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The stdlib corpus as one dataset."""
    return prepared_dataset(bench_bucket, tmp_path_factory.mktemp("bench-corpus"), shard_tokens=1 << 20, val_fraction=0.0)
