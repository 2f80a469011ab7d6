"""The event schema: versioned JSON keyed by user; every invalid value is rejected naming the field and the value."""

from __future__ import annotations

import json

import pytest

from workloads.recommend.events import Event, InvalidEventError, parse_event
from workloads.recommend.loadgen import synthetic_events

GOOD = {"schema_version": 1, "event_id": "e1", "user_id": "u1", "item_id": "i9", "type": "click", "ts": 1_700_000_000.5}


def test_an_event_round_trips_through_its_json_and_is_keyed_by_user() -> None:
    event = parse_event(json.dumps(GOOD).encode())
    assert event == Event(**GOOD)
    assert parse_event(event.encode()) == event
    assert event.key() == b"u1"


@pytest.mark.parametrize(("value", "message"), [
    (b"not json", "value is not JSON"),
    (b"[1, 2]", "value is a JSON list, not an event object"),
    (None, "message has no value"),
    (json.dumps({**GOOD, "schema_version": 2}).encode(), "'schema_version': Input should be 1 (got 2)"),
    (json.dumps({**GOOD, "type": "like"}).encode(), "'type': Input should be 'click', 'view' or 'purchase' (got 'like')"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "user_id"}).encode(), "'user_id': Field required"),
    (json.dumps({**GOOD, "ts": -1}).encode(), "'ts': Input should be greater than 0 (got -1)"),
    (json.dumps({**GOOD, "extra": 1}).encode(), "'extra': Extra inputs are not permitted (got 1)"),
], ids=["not-json", "not-object", "no-value", "unknown-version", "unknown-type", "no-user", "bad-ts", "extra-field"])
def test_invalid_values_are_rejected_naming_the_field_and_the_value(value: bytes | None, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(value)
    assert message in str(info.value)


def test_the_load_generator_is_reproducible_and_plants_user_clusters() -> None:
    first = list(synthetic_events(2000, users=20, items=100, clusters=5, seed=7))
    again = list(synthetic_events(2000, users=20, items=100, clusters=5, seed=7))
    assert [(e.event_id, e.user_id, e.item_id, e.type) for e in first] == \
        [(e.event_id, e.user_id, e.item_id, e.type) for e in again]
    assert len({e.event_id for e in first}) == 2000
    in_cluster = sum(int(e.item_id[1:]) % 5 == int(e.user_id[1:]) % 5 for e in first) / len(first)
    assert 0.75 < in_cluster < 0.9  # 80% planted, plus 1/5 of the rest by chance
    assert {e.type for e in first} == {"click", "view", "purchase"}
