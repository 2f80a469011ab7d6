"""Consumer lag per partition comes from its owner alone: a replica stops reporting the partitions a rebalance took."""

from __future__ import annotations

import time
from contextlib import ExitStack

from tests.support.servers import RedisServer
from tests.workloads.recommend.conftest import (
    PARTITIONS,
    TOPIC,
    all_applied,
    processor_settings,
    running,
    store_for,
    wait_until,
)
from workloads.common.metrics import RECOMMEND_CONSUMER_LAG
from workloads.demo.kafka import TansuBroker
from workloads.recommend.loadgen import make_producer, produce, synthetic_events
from workloads.recommend.processor import Processor

STATS_INTERVAL_MS = 200
"""librdkafka's statistics interval in these tests (processor_settings' default)."""


def _lag_partitions(processor: Processor) -> set[int]:
    return {int(sample.labels["partition"]) for family in processor.metrics.registry.collect()
            if family.name == RECOMMEND_CONSUMER_LAG for sample in family.samples}


def test_a_replica_reports_lag_only_for_the_partitions_it_owns_after_a_rebalance(topics: TansuBroker,
                                                                                 redis: RedisServer) -> None:
    settings = processor_settings(topics, redis, stats_interval_ms=STATS_INTERVAL_MS)
    everything = set(range(PARTITIONS))
    with ExitStack() as stack:
        first = stack.enter_context(running(settings))
        ends = produce(make_producer(topics.bootstrap_servers), TOPIC,
                       synthetic_events(400, users=40, items=20, clusters=2, seed=3))
        wait_until(all_applied(store_for(settings), ends), "the first replica applying every event")
        wait_until(lambda: _lag_partitions(first) == everything, "the first replica's lag on every partition")
        second = stack.enter_context(running(settings))

        def split() -> bool:
            mine, theirs = _lag_partitions(first), _lag_partitions(second)
            return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == everything

        wait_until(split, "each partition's lag reported by one replica")
        time.sleep(5 * STATS_INTERVAL_MS / 1000)  # more statistics: a revoked partition's series must not come back
        assert split(), (_lag_partitions(first), _lag_partitions(second))
