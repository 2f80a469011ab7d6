"""A load generator of recommendation events, for demos and benchmarks.

`python -m workloads.recommend.loadgen --bootstrap-servers HOST:PORT --events N [--rate R]` writes N events keyed
by user with an idempotent producer (so a retried send is not written twice), and logs one JSON line with the
rate it reached. Users and items have planted structure: each user mostly picks items of its own cluster, so a
recommender trained on the log has something to find.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.recommend.events import Event, EventType
from workloads.recommend.kafka import client_config
from workloads.recommend.settings import LoadgenSettings

TYPE_WEIGHTS: dict[EventType, float] = {"view": 0.7, "click": 0.25, "purchase": 0.05}
"""How often each event type occurs."""
IN_CLUSTER_SHARE = 0.8
"""Share of a user's events on items of the user's own cluster."""


def synthetic_events(count: int, *, users: int, items: int, clusters: int, seed: int) -> Iterator[Event]:
    """`count` events, stamped with the time each is generated; the same seed gives the same users, items and ids."""
    rng = random.Random(seed)
    kinds, weights = list(TYPE_WEIGHTS), list(TYPE_WEIGHTS.values())
    for _ in range(count):
        user = rng.randrange(users)
        cluster = user % clusters if rng.random() < IN_CLUSTER_SHARE else rng.randrange(clusters)
        # Items i with i % clusters == cluster form a cluster (at least item `cluster` when items < clusters).
        members = max(1, (items - cluster + clusters - 1) // clusters)
        item = min(items - 1, cluster + clusters * rng.randrange(members))
        yield Event(event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), user_id=f"u{user}",
                    item_id=f"i{item}", type=rng.choices(kinds, weights)[0], ts=time.time())


def make_producer(client: Mapping[str, Any] | str) -> Producer:
    """An idempotent producer (acks=all, no duplicates on retry) that batches for throughput.

    `client` is the connection's librdkafka config (`client_config(settings)`), or bare bootstrap servers
    (tests, benchmarks and the demo talk plaintext to a local broker).
    """
    base = {"bootstrap.servers": client} if isinstance(client, str) else dict(client)
    return Producer({**base, "enable.idempotence": True, "linger.ms": 5})


def produce(producer: Producer, topic: str, events: Iterable[Event | tuple[bytes, bytes]], *, rate: float = 0.0,
            timeout_s: float = 60.0) -> dict[int, int]:
    """Send events (or raw key/value pairs) keyed by user, at most `rate` per second (0: unpaced).

    Returns each partition's end offset (the last delivered offset + 1); raises if any send failed or was not
    delivered within `timeout_s` of the last one.
    """
    failures: list[str] = []
    ends: dict[int, int] = {}

    def _delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(str(error))
        else:
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            ends[partition] = max(ends.get(partition, 0), offset + 1)

    start, sent = time.monotonic(), 0
    for event in events:
        key, value = (event.key(), event.encode()) if isinstance(event, Event) else event
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=_delivered)
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: serve deliveries, then retry
        sent += 1
        producer.poll(0)
        if rate > 0 and (ahead := start + sent / rate - time.monotonic()) > 0:
            time.sleep(ahead)
    left = producer.flush(timeout_s)
    if left or failures:
        raise RuntimeError(f"{left} of {sent} events not delivered within {timeout_s}s; errors: {failures[:3]}")
    return ends


def main(argv: Sequence[str] | None = None) -> int:
    """Produce the configured events; exit 0 when all were delivered, 2 on bad settings."""
    try:
        settings = LoadgenSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    events = synthetic_events(settings.events, users=settings.users, items=settings.items, clusters=settings.clusters,
                              seed=settings.seed)
    start = time.monotonic()
    produce(make_producer(client_config(settings)), settings.topic, events, rate=settings.rate)
    seconds = time.monotonic() - start
    log_event("loadgen_done", topic=settings.topic, events=settings.events, seconds=round(seconds, 3),
              events_per_s=round(settings.events / seconds, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
