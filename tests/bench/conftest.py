"""Fixtures shared by the trainer benchmarks: one bucket and the stdlib corpus as one dataset."""

from __future__ import annotations

import pytest

from tests.support.servers import S3Server
from tests.workloads.trainer_torch.support import Bucket, make_corpus
from workloads.common.uri import S3Uri
from workloads.trainer_torch.prepare import prepare


@pytest.fixture(scope="module")
def bench_bucket(s3: S3Server) -> Bucket:
    """A fresh bucket on the session's moto server."""
    return Bucket.create("bench-trainer")


@pytest.fixture(scope="module")
def bench_dataset(bench_bucket: Bucket, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The stdlib corpus as one dataset."""
    corpus = make_corpus(tmp_path_factory.mktemp("bench-corpus"))
    prepare(corpus, S3Uri.parse(bench_bucket.uri("data")), shard_tokens=1 << 20, val_fraction=0.0)
    return bench_bucket.uri("data/manifest.json")
