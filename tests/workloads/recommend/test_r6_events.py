"""Event times a producer gets wrong (`Infinity`, milliseconds) are invalid events, not features that stop decaying."""

from __future__ import annotations

import json

import pytest
import redis as redis_py
from confluent_kafka import Message

from tests.support.servers import RedisServer
from workloads.recommend.events import InvalidEventError, parse_event
from workloads.recommend.features import FeatureStore
from workloads.recommend.processor import split_batch

GOOD = {"schema_version": 1, "event_id": "e1", "user_id": "u1", "item_id": "i9", "type": "click", "ts": 1_700_000_000.5}
HALF_LIFE_S = 10.0
"""Half-life of the store under test: an event one half-life later halves the earlier count."""


def _value(ts: str) -> bytes:
    # Python's json writes `Infinity` for inf, as a sloppy producer's JSON library may.
    return json.dumps({**GOOD, "ts": "TS"}).replace('"TS"', ts).encode()


@pytest.mark.parametrize(("ts", "message"), [
    ("Infinity", "'ts': Input should be a finite number (got inf)"),
    ("NaN", "'ts': Input should be a finite number (got nan)"),
    ("1700000000000", "a millisecond timestamp? divide it by 1000 (got 1700000000000"),
], ids=["infinity", "nan", "milliseconds"])
def test_an_event_time_that_is_not_finite_unix_seconds_is_invalid(ts: str, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(_value(ts))
    assert message in str(info.value)


def test_a_bad_event_time_is_skipped_and_later_events_still_decay(redis: RedisServer) -> None:
    store = FeatureStore(redis_py.Redis.from_url(redis.url), prefix="r6:", recent_items=5, ttl_s=600,
                         half_life_s=HALF_LIFE_S)
    values = [_value("1000"), _value("Infinity"), _value("1700000000000"), _value(str(1000 + HALF_LIFE_S))]
    messages = [Message(topic="events", partition=0, offset=n, key=b"u1", value=v) for n, v in enumerate(values)]
    batches, invalid = split_batch(messages)
    assert [m.offset() for m, _ in invalid] == [1, 2]
    assert store.apply(batches) == [2]
    features = store.user("u1")
    assert features.counts == {"click": 2}
    assert features.as_of == {"click": 1000 + HALF_LIFE_S}
    assert features.decayed["click"] == pytest.approx(1.5)  # 1 halved by one half-life, plus 1
    assert store.marks("events", [0]) == {0: 3}
