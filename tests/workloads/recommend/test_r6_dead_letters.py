"""Dead letters: one the broker refuses fails its batch (the invalid event is neither marked nor committed past), and
an invalid value too large to forward is sent cut, so it cannot stop its partition."""

from __future__ import annotations

import threading

from confluent_kafka import Consumer, Message, TopicPartition

from tests.support.servers import RedisServer
from tests.workloads.recommend.conftest import (
    DEAD_LETTERS,
    TOPIC,
    WAIT_S,
    committed,
    processor_settings,
    store_for,
    wait_until,
)
from workloads.common.metrics import RECOMMEND_ERRORS_TOTAL
from workloads.demo.kafka import TansuBroker
from workloads.recommend.events import InvalidEventError, parse_event
from workloads.recommend.loadgen import make_producer, produce, synthetic_events
from workloads.recommend.processor import DEAD_LETTER_MAX_BYTES, Processor

REFUSED_TOPIC = "bad topic!"
"""A dead-letter topic the broker refuses (an invalid name), as it refuses one the processor may not write."""


def test_a_dead_letter_the_broker_refuses_fails_the_batch_before_its_commit(topics: TansuBroker,
                                                                           redis: RedisServer) -> None:
    settings = processor_settings(topics, redis, dead_letter_topic=REFUSED_TOPIC)
    good = list(synthetic_events(5, users=1, items=3, clusters=1, seed=1))
    # One user, one key: every message lands on one partition, the invalid one last.
    ends = produce(make_producer(topics.bootstrap_servers), TOPIC, [*good, (good[0].key(), b"{not json")])
    (partition, end), = ends.items()
    invalid_offset = end - 1
    processor = Processor(settings)
    errors: list[RuntimeError] = []

    def _run() -> None:
        try:
            processor.run()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    thread.join(WAIT_S)
    assert not thread.is_alive(), "the processor went on past a dead letter the broker refused"
    assert len(errors) == 1 and "1 refused" in str(errors[0]) and REFUSED_TOPIC in str(errors[0]), errors
    assert processor.metrics.registry.get_sample_value(RECOMMEND_ERRORS_TOTAL, {"reason": "dead_letter"}) == 1
    # The restart replays the invalid event (and its dead letter): nothing at or after it is marked or committed.
    assert store_for(settings).marks(TOPIC, [partition])[partition] < invalid_offset
    assert committed(topics, settings.group_id)[partition] <= invalid_offset


def _parse_error(value: bytes) -> InvalidEventError:
    try:
        parse_event(value)
    except InvalidEventError as exc:
        return exc
    raise AssertionError("the value parsed as an event")


def test_an_invalid_value_too_large_to_forward_is_dead_lettered_cut(topics: TansuBroker, redis: RedisServer) -> None:
    settings = processor_settings(topics, redis, dead_letter_topic=DEAD_LETTERS)
    huge = b"{" + b"x" * 1_200_000  # over librdkafka's message.max.bytes: produce() itself would refuse it
    processor = Processor(settings)
    processor.process([Message(topic=TOPIC, partition=0, offset=0, key=b"u1", value=huge)])
    assert store_for(settings).marks(TOPIC, [0]) == {0: 0}  # past it: the partition goes on
    processor.stop.set()
    processor.run()  # with stop set: closes its consumer and flushes its producer, then returns
    reader = Consumer({"bootstrap.servers": topics.bootstrap_servers, "group.id": "dead-reader"})
    reader.assign([TopicPartition(DEAD_LETTERS, 0, 0)])
    received: list[Message] = []

    def _one() -> bool:
        received.extend(m for m in reader.consume(10, 0.2) if m.error() is None)
        return bool(received)

    wait_until(_one, "the dead letter")
    reader.close()
    headers = dict(received[0].headers() or [])
    assert received[0].value() == huge[:DEAD_LETTER_MAX_BYTES]
    assert headers["value-bytes"] == str(len(huge)).encode()
    assert headers["error"] == str(_parse_error(huge)).encode()
