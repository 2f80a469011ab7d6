"""The recommendation stream processor: events from Kafka into per-user features in Redis.

`python -m workloads.recommend.processor` joins a consumer group (auto-commit off), and per batch: parses the
events (invalid ones are counted, sent to the dead-letter topic if one is set, cut to DEAD_LETTER_MAX_BYTES, with
their source topic, partition, offset and error as headers, and skipped), writes the features and the partitions'
high-water marks in one Redis pipeline (see workloads.recommend.features), then commits the offsets. A crash between
the write and the commit replays offsets at or below the marks, which are skipped.
Replicas share the partitions; on revocation the revoked partitions' pending offsets are committed first.
Idempotency rests on the marks alone (not on keying or on who owns a partition), so a replica that lost its
partitions mid-batch and the new owner can both write: whichever script runs second skips what the first applied.
Dead letters are sent before the batch's features are written, so a replay may send one again (at least once).
SIGTERM finishes the batch, commits and exits 0.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from types import FrameType
from typing import Any, Final

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from workloads.common.logs import log_event
from workloads.common.metrics import (
    FRESHNESS_BUCKETS,
    RECOMMEND_CONSUMER_LAG,
    RECOMMEND_ERRORS_TOTAL,
    RECOMMEND_EVENTS_TOTAL,
    RECOMMEND_FEATURE_FRESHNESS,
)
from workloads.common.settings import SettingsError
from workloads.recommend.events import Event, InvalidEventError, parse_event
from workloads.recommend.features import FeatureStore, PartitionBatch
from workloads.recommend.kafka import client_config
from workloads.recommend.settings import ProcessorSettings

DEAD_LETTER_ERROR_HEADER: Final = "error"
"""Dead-letter header: why the event was invalid (the parse error's message)."""
DEAD_LETTER_TOPIC_HEADER: Final = "source-topic"
"""Dead-letter header: the topic the invalid event was read from."""
DEAD_LETTER_PARTITION_HEADER: Final = "source-partition"
"""Dead-letter header: its partition (decimal)."""
DEAD_LETTER_OFFSET_HEADER: Final = "source-offset"
"""Dead-letter header: its offset (decimal); with the topic and partition, where to re-read it whole to reprocess
it (a cut value is only its start)."""
DEAD_LETTER_SIZE_HEADER: Final = "value-bytes"
"""Dead-letter header: the size of a value cut to DEAD_LETTER_MAX_BYTES (absent when the value was sent whole)."""
DEAD_LETTER_MAX_BYTES: Final = 100_000
"""Most bytes of an invalid value a dead letter carries; a longer one is cut, its size in the `value-bytes` header.
The value's start is evidence enough, and a whole one can exceed what a producer may send (librdkafka's
message.max.bytes, 1,000,000 by default, under the broker's 1,048,588): produce() would then raise on every replay
and the message would stop its partition for good."""


class ProcessorMetrics:
    """The processor's Prometheus series, in their own registry (one per processor, so tests stay independent)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        """The registry /metrics serves."""
        self.events = Counter(RECOMMEND_EVENTS_TOTAL.removesuffix("_total"), "Events consumed, by outcome.",
                              ["outcome"], registry=self.registry)
        """Events consumed, labelled outcome: applied, duplicate or invalid."""
        self.lag = Gauge(RECOMMEND_CONSUMER_LAG, "Messages behind the partition end.", ["topic", "partition"],
                         registry=self.registry)
        """Consumer lag per assigned partition."""
        self.freshness = Histogram(RECOMMEND_FEATURE_FRESHNESS, "Event time to features visible in Redis.",
                                   buckets=FRESHNESS_BUCKETS, registry=self.registry)
        """Event time to visible in Redis, per applied event."""
        self.errors = Counter(RECOMMEND_ERRORS_TOTAL.removesuffix("_total"), "Processing errors, by reason.",
                              ["reason"], registry=self.registry)
        """Errors, labelled reason."""


def split_batch(messages: Sequence[Message]) -> tuple[list[PartitionBatch], list[tuple[Message, InvalidEventError]]]:
    """Group a batch by partition, parsing each value; returns the partition batches and the invalid messages."""
    events: dict[tuple[str, int], list[tuple[int, Event]]] = defaultdict(list)
    last: dict[tuple[str, int], int] = {}
    invalid: list[tuple[Message, InvalidEventError]] = []
    for message in messages:
        where = (str(message.topic()), int(message.partition() or 0))
        offset = int(message.offset() or 0)
        last[where] = max(offset, last.get(where, -1))
        try:
            events[where].append((offset, parse_event(message.value())))
        except InvalidEventError as exc:
            invalid.append((message, exc))
    batches = [PartitionBatch(topic=t, partition=p, last_offset=o, events=events.get((t, p), []))
               for (t, p), o in sorted(last.items())]
    return batches, invalid


class Processor:
    """One consumer-group member: consume, write features, commit."""

    def __init__(self, settings: ProcessorSettings, metrics: ProcessorMetrics | None = None) -> None:
        self.settings = settings
        """The processor's settings."""
        self.metrics = metrics or ProcessorMetrics()
        """Its Prometheus series."""
        self.store = FeatureStore(redis.Redis.from_url(settings.redis_url), prefix=settings.key_prefix,
                                  recent_items=settings.recent_items, ttl_s=settings.feature_ttl_s,
                                  half_life_s=settings.half_life_s)
        """The Redis feature store."""
        self.stop = threading.Event()
        """Set to finish the current batch, commit and return from `run`."""
        self._pending: dict[tuple[str, int], int] = {}
        self._lag_series: set[tuple[str, str]] = set()
        self._assigned: set[tuple[str, str]] = set()
        self._consumer = Consumer({
            **client_config(settings),
            "group.id": settings.group_id,
            # Offsets are committed by hand, only after the features are written.
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.session_timeout_ms,
            # Kafka's rule: heartbeats at most a third of the session timeout. librdkafka's default (3 s) against a
            # short session lost the partitions every few seconds (measured: a 3 s session, stalls of 4-7 s).
            "heartbeat.interval.ms": max(100, settings.session_timeout_ms // 3),
            "max.poll.interval.ms": settings.max_poll_interval_ms,
            "statistics.interval.ms": settings.stats_interval_ms,
            "stats_cb": self._on_stats,
            "error_cb": self._on_error,
        })
        self._dead_letters = (Producer({**client_config(settings), "enable.idempotence": True})
                              if settings.dead_letter_topic else None)

    def run(self) -> None:
        """Consume until `stop` is set; always commits what was written and leaves the group."""
        self._consumer.subscribe([self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        log_event("processor_started", topic=self.settings.topic, group=self.settings.group_id)
        try:
            while not self.stop.is_set():
                messages = self._consumer.consume(self.settings.batch_size, self.settings.poll_timeout_s)
                self.process(messages)
                self._commit_pending()
        finally:
            self._commit_pending()
            self._consumer.close()
            if self._dead_letters is not None:
                self._dead_letters.flush(10)
            log_event("processor_stopped")

    def process(self, messages: Sequence[Message]) -> None:
        """Write one batch's features (and dead letters) and record its offsets as pending commit."""
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                self.metrics.errors.labels(reason="kafka").inc()
                log_event("consume_error", error=str(error))
        if not records:
            return
        batches, invalid = split_batch(records)
        if invalid:
            self._dead_letter(invalid)
        applied = self._write(batches)
        visible = time.time()
        self.metrics.events.labels(outcome="invalid").inc(len(invalid))
        for batch, count in zip(batches, applied, strict=True):
            self.metrics.events.labels(outcome="applied").inc(count)
            self.metrics.events.labels(outcome="duplicate").inc(len(batch.events) - count)
            # Only the applied events (a partition's last `count`) just became visible; replayed ones were earlier.
            for _, event in batch.events[len(batch.events) - count:]:
                self.metrics.freshness.observe(max(0.0, visible - event.ts))
            self._pending[(batch.topic, batch.partition)] = batch.last_offset + 1

    @retry(retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)), stop=stop_after_attempt(5),
           wait=wait_exponential(multiplier=0.2, max=5), reraise=True)
    def _write(self, batches: list[PartitionBatch]) -> list[int]:
        try:
            return self.store.apply(batches)
        except redis.RedisError:
            self.metrics.errors.labels(reason="redis").inc()
            raise

    def _dead_letter(self, invalid: list[tuple[Message, InvalidEventError]]) -> None:
        failures: list[str] = []

        def _delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(str(error))

        for message, exc in invalid:
            log_event("invalid_event", topic=message.topic(), partition=message.partition(), offset=message.offset(),
                      error=str(exc))
            if self._dead_letters is not None:
                value = message.value()
                headers: list[tuple[str, str | bytes | None]] = [
                    (DEAD_LETTER_ERROR_HEADER, str(exc).encode()),
                    (DEAD_LETTER_TOPIC_HEADER, str(message.topic()).encode()),
                    (DEAD_LETTER_PARTITION_HEADER, str(message.partition()).encode()),
                    (DEAD_LETTER_OFFSET_HEADER, str(message.offset()).encode())]
                if value is not None and len(value) > DEAD_LETTER_MAX_BYTES:
                    headers.append((DEAD_LETTER_SIZE_HEADER, str(len(value)).encode()))
                    value = value[:DEAD_LETTER_MAX_BYTES]
                self._dead_letters.produce(self.settings.dead_letter_topic, key=message.key(), value=value,
                                           headers=headers, on_delivery=_delivered)
        if self._dead_letters is None:
            return
        # flush() counts only messages still queued: one the broker refused (no such topic, not authorised) has left
        # the queue with its error in the delivery report, so both are checked.
        left = self._dead_letters.flush(30)
        if left or failures:
            # Unsent dead letters must not be committed past: fail the batch, it is replayed idempotently.
            self.metrics.errors.labels(reason="dead_letter").inc()
            problems = ([f"{len(failures)} refused ({'; '.join(sorted(set(failures)))})"] if failures else []) + (
                [f"{left} not delivered within 30s"] if left else [])
            raise RuntimeError(f"dead letters to {self.settings.dead_letter_topic!r}: {', '.join(problems)}")

    def _commit_pending(self, only: set[tuple[str, int]] | None = None) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items() if only is None or (t, p) in only]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # A commit lost to a rebalance is harmless: the next owner replays from the last commit, and the
            # Redis marks skip what was already applied.
            self.metrics.errors.labels(reason="commit").inc()
            log_event("commit_failed", error=str(exc))
        for tp in offsets:
            self._pending.pop((tp.topic, tp.partition), None)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(tp.topic, str(tp.partition)) for tp in partitions}
        log_event("partitions_assigned", partitions=sorted(tp.partition for tp in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit_pending({(tp.topic, tp.partition) for tp in partitions})
        self._forget(partitions)
        log_event("partitions_revoked", partitions=sorted(tp.partition for tp in partitions))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so do not commit; the marks keep replays exact.
        for tp in partitions:
            self._pending.pop((tp.topic, tp.partition), None)
        self._forget(partitions)
        log_event("partitions_lost", partitions=sorted(tp.partition for tp in partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            series = (tp.topic, str(tp.partition))
            self._assigned.discard(series)
            if series in self._lag_series:
                self._lag_series.discard(series)
                self.metrics.lag.remove(*series)

    def _on_stats(self, raw: str) -> None:
        # librdkafka statistics: topics.<t>.partitions.<p>.consumer_lag, -1 while unknown or not consumed here.
        # https://github.com/confluentinc/librdkafka/blob/master/STATISTICS.md
        # Only assigned partitions: a partition revoked in a rebalance stays in this client's statistics with its last
        # known lag (measured: the former owner went on reporting every partition beside the new owner's series), and
        # the HPA and the lag alerts sum the replicas' series, so it would count twice, frozen at that value.
        stats: dict[str, Any] = json.loads(raw)
        for topic, data in stats.get("topics", {}).items():
            for pid, part in data.get("partitions", {}).items():
                lag = int(part.get("consumer_lag", -1))
                if (topic, pid) in self._assigned and lag >= 0:
                    self.metrics.lag.labels(topic=topic, partition=pid).set(lag)
                    self._lag_series.add((topic, pid))

    def _on_error(self, error: KafkaError) -> None:
        self.metrics.errors.labels(reason="kafka").inc()
        log_event("kafka_error", error=str(error), fatal=error.fatal())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the processor until SIGTERM or SIGINT; exit 0 after the last commit, 2 on bad settings."""
    try:
        settings = ProcessorSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    processor = Processor(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=processor.metrics.registry)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log_event("stopping", signal=signal.Signals(signum).name)
        processor.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    processor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
