"""The recommendation events: click/view/purchase as JSON with a versioned schema, keyed by user.

A message's key is the user id, so one user's events land on one partition in order (the processor's
per-partition marks rely on it). A consumer parses every value with `parse_event`; anything that is not a
valid event of a known `schema_version` raises `InvalidEventError` naming the field, the value and the rule.
"""

from __future__ import annotations

import json
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION: Final = 1
"""The event schema version this code writes and reads; a new version adds a model, it never edits this one."""

EventType = Literal["click", "view", "purchase"]
"""The kinds of interaction an event records."""
EVENT_TYPES: Final[tuple[EventType, ...]] = ("click", "view", "purchase")
"""Every event type, in a stable order (feature fields and metrics labels)."""
MAX_EVENT_TS: Final = 1e11
"""Exclusive upper bound of `ts` (Unix seconds, the year 5138). A producer's millisecond timestamp (1.7e12 in 2024)
or `Infinity` is refused as invalid: accepted, it would become the user's decay time forever after (every later
event is older, so the decayed counts stop decaying) until the features expire."""


class InvalidEventError(ValueError):
    """A message value that is not a valid event; the message names the field, the value and the rule."""


class Event(BaseModel):
    """One user interaction with an item (schema version 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    """Schema version of this event. Valid values: 1."""
    event_id: str = Field(min_length=1, max_length=64)
    """Unique id of the event (a UUID from the producer)."""
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    """The user; also the message key."""
    item_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    """The item interacted with."""
    type: EventType
    """What the user did. Valid values: click, view, purchase."""
    ts: float = Field(gt=0, allow_inf_nan=False)
    """Event time, Unix seconds, finite and below MAX_EVENT_TS (set by the producer when the interaction happened)."""

    @field_validator("ts")
    @classmethod
    def _seconds(cls, value: float) -> float:
        if value >= MAX_EVENT_TS:
            raise ValueError(f"must be Unix seconds below {MAX_EVENT_TS:.0e}: a millisecond timestamp? divide it by 1000")
        return value

    def key(self) -> bytes:
        """The Kafka message key: the user id."""
        return self.user_id.encode()

    def encode(self) -> bytes:
        """The Kafka message value: compact JSON."""
        return self.model_dump_json().encode()


def parse_event(value: bytes | None) -> Event:
    """The event in a message value; raises `InvalidEventError` naming every problem."""
    if value is None:
        raise InvalidEventError("message has no value: expected a JSON event object")
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(f"value is not JSON ({exc}): send an event object such as "
                           '{"schema_version": 1, "event_id": ..., "user_id": ..., "item_id": ..., "type": ..., "ts": ...}'
                           ) from exc
    if not isinstance(raw, dict):
        raise InvalidEventError(f"value is a JSON {type(raw).__name__}, not an event object")
    try:
        return Event.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"'{'.'.join(str(p) for p in err['loc'])}': {err['msg']}"
            + ("" if err["type"] == "missing" else f" (got {err.get('input')!r})") for err in exc.errors())
        raise InvalidEventError(f"invalid event: {problems}") from exc
