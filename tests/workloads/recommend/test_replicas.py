"""The processor as real processes: SIGKILL and restart loses and doubles nothing; replicas share and hand over
partitions; SIGTERM commits and exits 0. Exact counts are checked against what was produced."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.servers import RedisServer, free_port
from tests.workloads.recommend.conftest import (
    PARTITIONS,
    TOPIC,
    all_applied,
    assert_exact_counts,
    committed,
    merged,
    owned_partitions,
    processor_args,
    processor_settings,
    scrape,
    store_for,
    wait_until,
)
from workloads.common.metrics import RECOMMEND_EVENTS_TOTAL
from workloads.demo.kafka import TansuBroker
from workloads.recommend.events import Event
from workloads.recommend.loadgen import make_producer, produce, synthetic_events

Spawn = Callable[[str, list[str]], tuple[subprocess.Popen[bytes], Path]]
GROUP = "recommend-processor"
"""The processors' consumer group (the settings' default)."""
ALL = set(range(PARTITIONS))


def _applied(port: int) -> float:
    return scrape(port).get(RECOMMEND_EVENTS_TOTAL + '{outcome="applied"}', 0.0)


def _terminate(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


class _Stream:
    """Events produced in a background thread, paced, until `stop`: the stream is still flowing at any kill."""

    def __init__(self, broker: TansuBroker, rate: float) -> None:
        self.sent: list[Event] = []
        self.ends: dict[int, int] = {}
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(broker, rate), daemon=True)
        self._thread.start()

    def _events(self) -> Iterator[Event]:
        for event in synthetic_events(10**9, users=50, items=200, clusters=5, seed=3):
            if self._stop.is_set():
                return
            self.sent.append(event)
            yield event

    def _run(self, broker: TansuBroker, rate: float) -> None:
        try:
            self.ends = produce(make_producer(broker.bootstrap_servers), TOPIC, self._events(), rate=rate)
        except BaseException as exc:  # reported to the test by stop()
            self._errors.append(exc)

    def stop(self) -> None:
        """Stop producing, wait for every delivery, and re-raise a producer failure."""
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive() and not self._errors, self._errors


def test_a_processor_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
        topics: TansuBroker, redis: RedisServer, spawn: Spawn) -> None:
    args = processor_args(topics, redis, batch_size=50, recent_items=20)
    store = store_for(processor_settings(topics, redis, batch_size=50, recent_items=20))

    def progress() -> int:
        return sum(mark + 1 for mark in store.marks(TOPIC, sorted(ALL)).values())

    victim, victim_log = spawn("victim", args)
    wait_until(lambda: owned_partitions(victim_log) == ALL, "the first processor owning every partition")
    stream = _Stream(topics, rate=4000)
    try:
        wait_until(lambda: progress() >= 1000, "a thousand events applied")
        victim.kill()  # SIGKILL, while events still arrive: no commit, no flush, no leaving the group
        victim.wait()
        at_kill = progress()
        survivor, survivor_log = spawn("survivor", args)
        wait_until(lambda: owned_partitions(survivor_log) == ALL and progress() > at_kill,
                   "the restarted processor owning every partition and applying events")
    finally:
        stream.stop()
    wait_until(all_applied(store, stream.ends), "every event applied after the restart")
    wait_until(lambda: committed(topics, GROUP) == stream.ends, "every offset committed")
    assert_exact_counts(store, stream.sent, recent_items=20)
    assert _terminate(survivor) == 0


def test_two_processors_split_the_partitions_and_one_leaving_hands_its_over(
        topics: TansuBroker, redis: RedisServer, spawn: Spawn) -> None:
    ports = free_port(), free_port()
    (one, one_log), (two, two_log) = (spawn(name, processor_args(topics, redis, metrics_port=port))
                                      for name, port in zip(("one", "two"), ports, strict=True))
    store = store_for(processor_settings(topics, redis))

    def split() -> bool:
        mine, theirs = owned_partitions(one_log), owned_partitions(two_log)
        return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == ALL

    wait_until(split, "both processors owning a share of the partitions")
    first = list(synthetic_events(2_000, users=40, items=100, clusters=4, seed=5))
    ends = produce(make_producer(topics.bootstrap_servers), TOPIC, first)
    wait_until(all_applied(store, ends), "the first wave applied")
    wait_until(lambda: _applied(ports[0]) + _applied(ports[1]) == len(first), "both processors' counts adding up")
    assert _applied(ports[0]) > 0 and _applied(ports[1]) > 0
    # SIGTERM: the leaving processor commits, leaves the group and exits 0; the other takes every partition.
    assert _terminate(two) == 0
    wait_until(lambda: owned_partitions(one_log) == ALL, "the remaining processor owning every partition")
    before = _applied(ports[0])
    second = list(synthetic_events(2_000, users=40, items=100, clusters=4, seed=6))
    ends = merged(ends, produce(make_producer(topics.bootstrap_servers), TOPIC, second))
    wait_until(all_applied(store, ends), "the second wave applied")
    wait_until(lambda: committed(topics, GROUP) == ends, "every offset committed")
    assert _applied(ports[0]) - before == len(second)
    assert_exact_counts(store, first + second, recent_items=50)
    assert _terminate(one) == 0
