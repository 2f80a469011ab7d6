"""Dead letters carry where their event came from (topic, partition, offset) and why it was invalid, as Kafka
headers, so an operator can re-read the original whole and reprocess it."""

from __future__ import annotations

from confluent_kafka import Consumer, Message, TopicPartition

from tests.support.servers import RedisServer
from tests.workloads.recommend.conftest import DEAD_LETTERS, TOPIC, processor_settings, running, wait_until
from workloads.demo.kafka import TansuBroker
from workloads.recommend.events import InvalidEventError, parse_event
from workloads.recommend.loadgen import make_producer, produce, synthetic_events
from workloads.recommend.processor import (
    DEAD_LETTER_ERROR_HEADER,
    DEAD_LETTER_OFFSET_HEADER,
    DEAD_LETTER_PARTITION_HEADER,
    DEAD_LETTER_SIZE_HEADER,
    DEAD_LETTER_TOPIC_HEADER,
)

INVALID = b'{"user": 7}'
"""An event value that parses as JSON but is no event."""


def _dead_letters(broker: TansuBroker, count: int) -> list[Message]:
    reader = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "dead-reader"})
    reader.assign([TopicPartition(DEAD_LETTERS, 0, 0)])
    received: list[Message] = []

    def _all() -> bool:
        received.extend(m for m in reader.consume(10, 0.2) if m.error() is None)
        return len(received) >= count

    try:
        wait_until(_all, f"{count} dead letters")
    finally:
        reader.close()
    return received


def _number(value: str | bytes | None) -> int:
    assert isinstance(value, bytes), value
    return int(value)


def test_each_dead_letter_names_its_source_topic_partition_offset_and_error(topics: TansuBroker,
                                                                            redis: RedisServer) -> None:
    good = list(synthetic_events(6, users=2, items=3, clusters=1, seed=3))
    # Two users, two keys: the invalid events land on the partitions of their keys, after the good ones.
    invalid = [(good[0].key(), INVALID), (good[-1].key(), b"{not json")]
    ends = produce(make_producer(topics.bootstrap_servers), TOPIC, [*good, *invalid])
    settings = processor_settings(topics, redis, dead_letter_topic=DEAD_LETTERS)
    with running(settings):
        letters = _dead_letters(topics, len(invalid))
    # Each dead letter points at a message of the source topic that holds exactly its value, with its parse error.
    source = Consumer({"bootstrap.servers": topics.bootstrap_servers, "group.id": "source-reader"})
    try:
        for letter in letters:
            headers = dict(letter.headers() or [])
            assert headers[DEAD_LETTER_TOPIC_HEADER] == TOPIC.encode()
            partition = _number(headers[DEAD_LETTER_PARTITION_HEADER])
            offset = _number(headers[DEAD_LETTER_OFFSET_HEADER])
            assert partition in ends and 0 <= offset < ends[partition]
            source.assign([TopicPartition(TOPIC, partition, offset)])
            [original] = source.consume(1, 10)
            assert (original.partition(), original.offset(), original.value()) == (partition, offset, letter.value())
            try:
                parse_event(letter.value())
            except InvalidEventError as exc:
                assert headers[DEAD_LETTER_ERROR_HEADER] == str(exc).encode()
            else:
                raise AssertionError(f"dead letter {letter.value()!r} parses as an event")
            assert DEAD_LETTER_SIZE_HEADER not in headers  # sent whole
    finally:
        source.close()
    assert sorted(letter.value() or b"" for letter in letters) == sorted(value for _, value in invalid)
