"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.versions import IMAGE_DIGESTS_ENV
from tests.support.servers import RedisServer, S3Server, redis_server, s3_server
from tests.support.vllm import VllmServer, vllm_server, write_mini_export
from workloads.common.vocab import VLLM_DTYPE_FLAG
from workloads.demo.kafka import TansuBroker, tansu_broker

# No image has been built here, so images/digests.json records none and prod (registry.requireDigest) would not
# parse: the suite (and the CLIs it starts) reads fixture digests instead. Tests of the real file pass a path.
os.environ.setdefault(IMAGE_DIGESTS_ENV, str(Path(__file__).parent / "support" / "image_digests.json"))


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server for the session; the test env vars point boto3 at it."""
    with s3_server() as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test."""
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture()
def kafka() -> Iterator[TansuBroker]:
    """A fresh in-memory Kafka-protocol broker (Tansu) for one test; the test creates its topics.

    Tansu 0.6.0 quirks: with librdkafka's default max.poll.interval.ms a group join takes ~23 s (set it to
    <= 30000, then ~3 s); it answers no CreatePartitions or (legacy) AlterConfigs, only IncrementalAlterConfigs;
    DescribeConfigs returns only the configs a topic was created or altered with; aiokafka's idempotent
    producer fails on it (confluent-kafka's works).
    """
    with tansu_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A real vLLM OpenAI server (CPU, `.venv-vllm`) serving a random `mini` export in float32, started once per
    session: vLLM's "auto" dtype downcasts a float32 checkpoint to bf16 on this CPU build (vllm/config/model.py
    `_resolve_auto_dtype`), whose rounding would hide a small mapping error such as the wrong GELU."""
    folder = tmp_path_factory.mktemp("vllm")
    with vllm_server(write_mini_export(folder / "mini-gpt"), folder / "vllm.log",
                     extra_args=(VLLM_DTYPE_FLAG, "float32")) as server:
        yield server


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for the tests that use it: the CI runners have 2 shared cores, where torch's spinning
    threads cost ~5x."""
    import torch  # only the tests that ask for it load torch (the infra suite's venv has it, but needs no time on it)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
