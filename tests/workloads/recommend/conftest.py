"""Fixtures and helpers of the recommendation tests: a broker with the events topic, settings, expected features."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_py
from prometheus_client.parser import text_string_to_metric_families

from tests.support.dockerfile import REPO_ROOT
from tests.support.servers import RedisServer
from workloads.demo.kafka import TansuBroker
from workloads.recommend.events import Event
from workloads.recommend.features import FeatureStore
from workloads.recommend.processor import Processor
from workloads.recommend.settings import ProcessorSettings

PARTITIONS = 4
"""Partitions of the test events topic."""
TOPIC = "events"
"""The test events topic."""
DEAD_LETTERS = "events-dead"
"""The test dead-letter topic."""
WAIT_S = 60.0
"""Longest wait for a condition (generous: the machine is shared; a passing run takes seconds)."""


@pytest.fixture()
def topics(kafka: TansuBroker) -> TansuBroker:
    """The broker with the events topic (4 partitions) and the dead-letter topic, made with the AdminClient."""
    kafka.create_topics({TOPIC: PARTITIONS, DEAD_LETTERS: 1})
    return kafka


def processor_args(broker: TansuBroker, server: RedisServer, **extra: Any) -> list[str]:
    """Processor flags for a test: small timeouts, so joins and rebalances take seconds (not ~23 s)."""
    flags = {"bootstrap_servers": broker.bootstrap_servers, "redis_url": server.url, "topic": TOPIC,
             "session_timeout_ms": 3000, "max_poll_interval_ms": 10000, "stats_interval_ms": 200,
             "poll_timeout_s": 0.1, "metrics_port": 0, **extra}
    return [arg for name, value in flags.items() for arg in (ProcessorSettings.flag_name(name), str(value))]


def processor_settings(broker: TansuBroker, server: RedisServer, **extra: Any) -> ProcessorSettings:
    """The settings `processor_args` gives."""
    return ProcessorSettings.parse(processor_args(broker, server, **extra), {})


def store_for(settings: ProcessorSettings) -> FeatureStore:
    """A feature store reading what a processor with `settings` writes."""
    return FeatureStore(redis_py.Redis.from_url(settings.redis_url), prefix=settings.key_prefix,
                        recent_items=settings.recent_items, ttl_s=settings.feature_ttl_s,
                        half_life_s=settings.half_life_s)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def all_applied(store: FeatureStore, ends: dict[int, int]) -> Callable[[], bool]:
    """A condition: every partition's mark has reached its last offset (end offset - 1)."""
    return lambda: all(mark >= ends.get(p, 0) - 1 for p, mark in store.marks(TOPIC, list(range(PARTITIONS))).items())


def merged(*ends: dict[int, int]) -> dict[int, int]:
    """The end offsets after several `produce` calls."""
    return {p: max(e.get(p, 0) for e in ends) for p in range(PARTITIONS)}


def committed(broker: TansuBroker, group: str) -> dict[int, int]:
    """The group's committed offset of each partition of the events topic (-1001 where none)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group})
    try:
        return {tp.partition: tp.offset
                for tp in consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)}
    finally:
        consumer.close()


def expected_counts(events: list[Event]) -> dict[str, dict[str, int]]:
    """Per user, the exact number of events of each type."""
    counts: dict[str, Counter[str]] = {}
    for event in events:
        counts.setdefault(event.user_id, Counter())[event.type] += 1
    return {user: dict(c) for user, c in counts.items()}


def assert_exact_counts(store: FeatureStore, events: list[Event], recent_items: int) -> None:
    """Every user's exact counts and recent items are what `events` (in produced order) give: none lost or doubled."""
    for user, counts in expected_counts(events).items():
        features = store.user(user)
        assert features.counts == counts, f"user {user}"
        produced = [e.item_id for e in events if e.user_id == user]
        assert features.recent == produced[::-1][:recent_items], f"user {user}"


def log_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a processor wrote to `path` (skipping anything else librdkafka printed)."""
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def owned_partitions(path: Path) -> set[int]:
    """The partitions a processor owns now, from its partitions_assigned/revoked/lost log lines."""
    owned: set[int] = set()
    for record in log_records(path):
        if record["event"] == "partitions_assigned":
            owned |= set(record["partitions"])
        elif record["event"] in ("partitions_revoked", "partitions_lost"):
            owned -= set(record["partitions"])
    return owned


@pytest.fixture()
def spawn(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """Start `python -m workloads.recommend.processor ARGS` as a real process logging to a file; returns
    (process, log); whatever is still running at the end of the test is killed."""
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(name: str, args: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out, (tmp_path / f"{name}.err").open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "workloads.recommend.processor", *args], cwd=REPO_ROOT,
                                    stdout=out, stderr=err)
        procs.append(proc)
        return proc, log

    yield _spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def scrape(port: int) -> dict[str, float]:
    """The processor's /metrics samples, by sample name and labels (`name{k="v"}`)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {sample.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}": sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@contextmanager
def running(settings: ProcessorSettings) -> Iterator[Processor]:
    """A processor consuming in a thread until the block exits (then it commits and leaves the group)."""
    processor = Processor(settings)
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    try:
        yield processor
    finally:
        processor.stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the processor did not stop within 30s"
