"""The processor in-process against a real broker (Tansu) and redis-server: features, invalid events, metrics."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Message

from tests.support.servers import RedisServer
from tests.workloads.recommend.conftest import (
    DEAD_LETTERS,
    TOPIC,
    all_applied,
    assert_exact_counts,
    processor_settings,
    running,
    store_for,
    wait_until,
)
from workloads.common.metrics import RECOMMEND_CONSUMER_LAG, RECOMMEND_EVENTS_TOTAL, RECOMMEND_FEATURE_FRESHNESS
from workloads.demo.kafka import TansuBroker
from workloads.recommend.events import Event, InvalidEventError, parse_event
from workloads.recommend.loadgen import make_producer, produce, synthetic_events
from workloads.recommend.processor import Processor


def _sample(processor: Processor, name: str, **labels: str) -> float:
    value = processor.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_features_in_redis_reflect_each_users_last_events(topics: TansuBroker, redis: RedisServer) -> None:
    settings = processor_settings(topics, redis, recent_items=5)
    store = store_for(settings)
    events = list(synthetic_events(600, users=12, items=40, clusters=4, seed=1))
    with running(settings) as processor:
        ends = produce(make_producer(topics.bootstrap_servers), TOPIC, events)
        wait_until(all_applied(store, ends), "every event applied")
        assert_exact_counts(store, events, recent_items=5)
        # A user's next event shows up as their newest item and one more count.
        late = Event(event_id="late", user_id="u3", item_id="i999", type="purchase", ts=events[-1].ts + 1)
        before = store.user("u3").counts.get("purchase", 0)
        produce(make_producer(topics.bootstrap_servers), TOPIC, [late])
        wait_until(lambda: store.user("u3").recent[:1] == ["i999"], "the late event in u3's recent items")
        assert store.user("u3").counts["purchase"] == before + 1
        assert _sample(processor, RECOMMEND_EVENTS_TOTAL, outcome="applied") == 601
        assert _sample(processor, RECOMMEND_FEATURE_FRESHNESS + "_count") == 601
        # librdkafka reports the lag of each consumed partition; caught up, it is 0.
        wait_until(lambda: all(_sample(processor, RECOMMEND_CONSUMER_LAG, topic=TOPIC, partition=str(p)) == 0
                               and processor.metrics.registry.get_sample_value(
                                   RECOMMEND_CONSUMER_LAG, {"topic": TOPIC, "partition": str(p)}) is not None
                               for p in range(4)), "a zero lag reported for every partition")


def test_malformed_events_are_skipped_counted_and_dead_lettered(topics: TansuBroker, redis: RedisServer) -> None:
    settings = processor_settings(topics, redis, dead_letter_topic=DEAD_LETTERS)
    store = store_for(settings)
    good = list(synthetic_events(50, users=5, items=10, clusters=2, seed=2))
    bad = [(b"u1", b"{not json"), (b"u2", b'{"schema_version": 9}'), (b"u3", b"[]")]
    with running(settings) as processor:
        ends = produce(make_producer(topics.bootstrap_servers), TOPIC, [*good[:25], *bad, *good[25:]])
        wait_until(all_applied(store, ends), "every offset past, invalid ones included")
        assert_exact_counts(store, good, recent_items=settings.recent_items)
        assert _sample(processor, RECOMMEND_EVENTS_TOTAL, outcome="invalid") == 3
        assert _sample(processor, RECOMMEND_EVENTS_TOTAL, outcome="applied") == 50
    dead = Consumer({"bootstrap.servers": topics.bootstrap_servers, "group.id": "dead-reader",
                     "auto.offset.reset": "earliest", "max.poll.interval.ms": 10000, "session.timeout.ms": 6000})
    dead.subscribe([DEAD_LETTERS])
    received: list[Message] = []

    def _three() -> bool:
        received.extend(dead.consume(10, 0.2))
        return len(received) >= 3

    wait_until(_three, "three dead letters")
    dead.close()
    # Each dead letter is the original value, with the parse error in its `error` header.
    assert {m.value(): _error_header(m) for m in received} == {value: _parse_error(value) for _, value in bad}


def _error_header(message: Message) -> str:
    error = dict(message.headers() or [])["error"]
    assert isinstance(error, bytes)
    return error.decode()


def _parse_error(value: bytes) -> str:
    with pytest.raises(InvalidEventError) as info:
        parse_event(value)
    return str(info.value)


def test_a_replay_of_applied_offsets_double_counts_nothing(topics: TansuBroker, redis: RedisServer) -> None:
    settings = processor_settings(topics, redis)
    store = store_for(settings)
    events = list(synthetic_events(300, users=6, items=20, clusters=2, seed=8))
    ends = produce(make_producer(topics.bootstrap_servers), TOPIC, events)
    with running(settings):
        wait_until(all_applied(store, ends), "every event applied")
    # A group with no commits replays every offset, as a processor does after a crash between write and commit.
    with running(settings.model_copy(update={"group_id": "replay"})) as replay:
        wait_until(lambda: _sample(replay, RECOMMEND_EVENTS_TOTAL, outcome="duplicate") == 300, "the whole replay")
        assert _sample(replay, RECOMMEND_EVENTS_TOTAL, outcome="applied") == 0
        assert _sample(replay, RECOMMEND_FEATURE_FRESHNESS + "_count") == 0  # nothing new became visible
    assert_exact_counts(store, events, recent_items=settings.recent_items)


def test_a_short_session_keeps_its_partitions_while_events_flow(topics: TansuBroker, redis: RedisServer,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # The tests' 3 s session: with librdkafka's default 3 s heartbeat the coordinator expired the member every few
    # seconds (partitions lost, then seconds with no batch); heartbeats at a third of the session keep it.
    settings = processor_settings(topics, redis)
    store = store_for(settings)
    producer = make_producer(topics.bootstrap_servers)
    with running(settings):
        wait_until(lambda: '"partitions_assigned"' in capsys.readouterr().out, "the processor to own partitions")
        for seed in range(8):  # 8 s of events, more than two session timeouts
            ends = produce(producer, TOPIC, synthetic_events(200, users=20, items=40, clusters=4, seed=seed), rate=200)
        wait_until(all_applied(store, ends), "every event applied")
        out = capsys.readouterr().out
    assert '"partitions_lost"' not in out and '"partitions_revoked"' not in out, out[-2000:]
