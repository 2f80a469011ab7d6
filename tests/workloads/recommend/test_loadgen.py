"""The load generator's command: it delivers exactly the events asked for, keyed by user, and reports its rate."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from confluent_kafka import Consumer, Message, TopicPartition

from tests.support.dockerfile import REPO_ROOT
from tests.workloads.recommend.conftest import PARTITIONS, TOPIC, WAIT_S
from workloads.demo.kafka import TansuBroker
from workloads.recommend.events import parse_event


def _read_all(broker: TansuBroker, count: int) -> list[Message]:
    # Assigned, not subscribed: no group join to wait for.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    messages: list[Message] = []
    deadline = time.monotonic() + WAIT_S
    while len(messages) < count and time.monotonic() < deadline:
        messages.extend(m for m in consumer.consume(100, 0.2) if m.error() is None)
    # Anything beyond `count` would be a duplicate: read on briefly to catch one.
    messages.extend(m for m in consumer.consume(100, 0.5) if m.error() is None)
    consumer.close()
    return messages


def test_the_load_generator_delivers_each_event_once_keyed_by_user(topics: TansuBroker) -> None:
    result = subprocess.run([sys.executable, "-m", "workloads.recommend.loadgen", "--bootstrap-servers",
                             topics.bootstrap_servers, "--topic", TOPIC, "--events", "500", "--users", "7"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert (report["event"], report["events"]) == ("loadgen_done", 500) and report["events_per_s"] > 0
    messages = _read_all(topics, 500)
    events = [parse_event(m.value()) for m in messages]
    assert len(events) == 500 and len({e.event_id for e in events}) == 500
    assert all(m.key() == e.key() for m, e in zip(messages, events, strict=True))
    assert {e.user_id for e in events} == {f"u{n}" for n in range(7)}
    # Keyed by user: each user's events sit on one partition.
    assert all(len({m.partition() for m, e in zip(messages, events, strict=True) if e.user_id == user}) == 1
               for user in {e.user_id for e in events})
