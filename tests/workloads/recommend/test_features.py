"""The feature store on a real redis-server: capped recent items, decayed and exact counts, TTLs, idempotent marks."""

from __future__ import annotations

import math

import redis as redis_py

from tests.support.servers import RedisServer
from workloads.recommend.events import Event
from workloads.recommend.features import FeatureStore, PartitionBatch


def _store(server: RedisServer, **extra: float) -> FeatureStore:
    options = {"recent_items": 3, "ttl_s": 600, "half_life_s": 10.0, **extra}
    return FeatureStore(redis_py.Redis.from_url(server.url), prefix="t:", recent_items=int(options["recent_items"]),
                        ttl_s=int(options["ttl_s"]), half_life_s=options["half_life_s"])


def _event(n: int, kind: str = "click", ts: float = 1000.0, user: str = "u1") -> Event:
    return Event(event_id=f"e{n}", user_id=user, item_id=f"i{n}", type=kind, ts=ts)


def test_recent_items_are_newest_first_and_capped_with_a_ttl(redis: RedisServer) -> None:
    store = _store(redis)
    events = [(offset, _event(offset)) for offset in range(5)]
    assert store.apply([PartitionBatch("t", 0, 4, events)]) == [5]
    assert store.user("u1").recent == ["i4", "i3", "i2"]
    client = redis_py.Redis.from_url(redis.url)
    assert 0 < client.ttl("t:u:u1:recent") <= 600
    assert 0 < client.ttl("t:u:u1:counts") <= 600


def test_counts_decay_exponentially_in_event_time(redis: RedisServer) -> None:
    store = _store(redis)
    batch = [(0, _event(0, ts=1000.0)), (1, _event(1, ts=1010.0)), (2, _event(2, ts=1005.0)), (3, _event(3, "view"))]
    store.apply([PartitionBatch("t", 0, 3, batch)])
    features = store.user("u1")
    # One half-life after the first click, plus one, plus a late click 5 s before the latest one.
    assert math.isclose(features.decayed["click"], 0.5 + 1 + 2 ** -0.5, rel_tol=1e-12)
    assert features.as_of["click"] == 1010.0
    assert features.counts == {"click": 3, "view": 1}


def test_a_replayed_batch_double_counts_nothing_and_only_new_offsets_apply(redis: RedisServer) -> None:
    store = _store(redis)
    first = PartitionBatch("t", 2, 11, [(10, _event(10)), (11, _event(11))])
    assert store.apply([first]) == [2]
    assert store.apply([first]) == [0]
    # A replay that overlaps the mark applies only the offsets above it; an invalid last message still moves it.
    assert store.apply([PartitionBatch("t", 2, 14, [(11, _event(11)), (12, _event(12))])]) == [1]
    assert store.marks("t", [2, 3]) == {2: 14, 3: -1}
    assert store.user("u1").counts == {"click": 3}
    assert store.user("u1").recent == ["i12", "i11", "i10"]


def test_marks_are_per_partition(redis: RedisServer) -> None:
    store = _store(redis)
    store.apply([PartitionBatch("t", 0, 5, [(5, _event(1, user="a"))]), PartitionBatch("t", 1, 0, [(0, _event(2, user="b"))])])
    # Offset 0 of partition 0 is below its mark; offset 1 of partition 1 is new.
    applied = store.apply([PartitionBatch("t", 0, 0, [(0, _event(3, user="a"))]),
                           PartitionBatch("t", 1, 1, [(1, _event(4, user="b"))])])
    assert applied == [0, 1]
    assert (store.user("a").counts, store.user("b").counts) == ({"click": 1}, {"click": 2})
