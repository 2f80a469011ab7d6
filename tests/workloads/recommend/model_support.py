"""Helpers of the recommender tests: a small planted-structure log on S3, a trained export, a live service."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from tests.support.servers import free_port
from tests.workloads.gateway.support import serve_in_thread
from workloads.common import s3 as s3io
from workloads.recommend.dataset import synthetic_log, write_log
from workloads.recommend.model_settings import ServiceSettings, TrainSettings
from workloads.recommend.train import run

USERS: Final = 120
"""Users of the test log."""
ITEMS: Final = 120
"""Items of the test log."""
CLUSTERS: Final = 6
"""Item clusters of the test log: item i belongs to cluster i % CLUSTERS, user u mostly to cluster u % CLUSTERS."""
EVENTS: Final = 9000
"""Interactions in the test log (75 per user)."""


def cluster_of(item_id: str) -> int:
    """The planted cluster of an item id `i<N>`."""
    return int(item_id.removeprefix("i")) % CLUSTERS


def new_bucket() -> str:
    """A fresh bucket on the test S3 server (the `s3` fixture must be active)."""
    name = f"rec-{uuid.uuid4().hex[:12]}"
    s3io.client().create_bucket(Bucket=name)
    return name


def write_test_log(out: str, *, seed: int = 0, shard_events: int = 4000) -> None:
    """The planted-structure test log under `out`."""
    write_log(synthetic_log(EVENTS, users=USERS, items=ITEMS, clusters=CLUSTERS, seed=seed), out,
              shard_events=shard_events)


def train_settings(data: str, export: str, **extra: Any) -> TrainSettings:
    """Trainer settings for the test log: a few seconds of one CPU core."""
    return TrainSettings(data=data, export=export, **{"epochs": 15, "dim": 16, "torch_threads": 1, **extra})


def trained_export(bucket: str) -> str:
    """Write the test log to S3, train on it and export to S3; returns the export URI."""
    data, export = f"s3://{bucket}/log", f"s3://{bucket}/export"
    write_test_log(data)
    run(train_settings(data, export))
    return export


@dataclass
class LiveService:
    """A recommendation service on a loopback port."""

    url: str
    """Its base URL."""


@contextlib.contextmanager
def live_service(model_uri: str, **overrides: Any) -> Iterator[LiveService]:
    """`workloads.recommend.service` for `model_uri` in a uvicorn thread; `overrides` are ServiceSettings fields."""
    from workloads.recommend.service import create_app

    port = free_port()
    settings = ServiceSettings(model_uri=model_uri, host="127.0.0.1", port=port, **overrides)
    with serve_in_thread(create_app(settings), port):
        yield LiveService(url=f"http://127.0.0.1:{port}")
