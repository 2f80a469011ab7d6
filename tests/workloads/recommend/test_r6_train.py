"""The training split counts each event id once: an at-least-once copy of a held-out event never stays in training."""

from __future__ import annotations

from workloads.recommend.events import Event
from workloads.recommend.train import split


def _event(n: int, item: str) -> Event:
    return Event(event_id=f"e{n}", user_id="u1", item_id=item, type="view", ts=1_700_000_000.0 + n)


def test_a_duplicated_event_is_one_interaction_and_a_held_out_copy_does_not_leak() -> None:
    events = [_event(0, "i0"), _event(1, "i1"), _event(2, "i2")]
    data = split([*events, events[2], events[0]], holdout=1)  # the log holds two events twice
    pairs = lambda rows: [(data.users[u], data.items[i]) for u, i in rows.tolist()]  # noqa: E731
    assert pairs(data.train) == [("u1", "i0"), ("u1", "i1")]
    assert pairs(data.held_out) == [("u1", "i2")]
