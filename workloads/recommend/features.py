"""Per-user features in Redis, written idempotently: each partition's batch and its high-water mark move together.

Keys (prefix from settings, default `rec:`):
- `<prefix>u:<user>:recent`: list of the user's latest item ids, newest first, capped, with a TTL;
- `<prefix>u:<user>:counts`: hash with, per event type, `<type>` (count decayed exponentially in event time),
  `<type>:ts` (event time the decayed count is as of) and `<type>:n` (exact count), with a TTL;
- `<prefix>hwm:<topic>:<partition>`: the highest offset whose event is applied (no TTL).

One Lua script per partition per batch applies only the events above the mark and raises the mark, atomically
(Redis runs a script as one unit: https://redis.io/docs/latest/develop/programmability/eval-intro/). So a replay
after a crash, whose offsets were written but not committed, double-counts nothing. All the batch's scripts go
in one pipeline: one round trip per batch. The keys are declared to the script, as Redis requires; they are not
hash-tagged to one slot, so this targets a non-cluster Redis (ElastiCache with cluster mode off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from workloads.recommend.events import EVENT_TYPES, Event

# ARGV: max offset of the batch (valid or not), ttl, cap, half-life, then (offset, item, type, ts) per event.
# KEYS: the mark, then (recent, counts) per event. Returns how many events it applied.
_APPLY_LUA = """
local mark = tonumber(redis.call('GET', KEYS[1]) or '-1')
local ttl, cap, half = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ln2 = 0.6931471805599453
local applied = 0
for i = 0, (#ARGV - 4) / 4 - 1 do
  local offset = tonumber(ARGV[5 + 4 * i])
  if offset > mark then
    local item, kind, ts = ARGV[6 + 4 * i], ARGV[7 + 4 * i], tonumber(ARGV[8 + 4 * i])
    local recent, counts = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
    redis.call('LPUSH', recent, item)
    redis.call('LTRIM', recent, 0, cap - 1)
    redis.call('EXPIRE', recent, ttl)
    local old = redis.call('HMGET', counts, kind, kind .. ':ts')
    local score, asof = tonumber(old[1]), tonumber(old[2])
    if asof == nil then
      score, asof = 1, ts
    elseif ts >= asof then
      score, asof = score * math.exp(-ln2 * (ts - asof) / half) + 1, ts
    else
      score = score + math.exp(-ln2 * (asof - ts) / half)
    end
    redis.call('HSET', counts, kind, string.format('%.17g', score), kind .. ':ts', string.format('%.17g', asof))
    redis.call('HINCRBY', counts, kind .. ':n', 1)
    redis.call('EXPIRE', counts, ttl)
    applied = applied + 1
  end
end
local last = tonumber(ARGV[1])
if last > mark then
  redis.call('SET', KEYS[1], last)
end
return applied
"""


@dataclass(frozen=True)
class PartitionBatch:
    """One partition's share of a consumed batch: its valid events and the last offset consumed (valid or not)."""

    topic: str
    """The topic."""
    partition: int
    """The partition."""
    last_offset: int
    """The highest offset in the batch, so invalid trailing messages also move the mark."""
    events: list[tuple[int, Event]]
    """(offset, event) of every valid message, in offset order."""


@dataclass(frozen=True)
class UserFeatures:
    """What the store holds for one user."""

    recent: list[str]
    """Latest item ids, newest first."""
    decayed: dict[str, float]
    """Per event type, the count decayed to the type's last event time."""
    as_of: dict[str, float]
    """Per event type, the event time its decayed count is as of."""
    counts: dict[str, int]
    """Per event type, the exact number of events applied."""


class FeatureStore:
    """The Redis side of the processor: idempotent batch writes and feature reads."""

    def __init__(self, client: redis.Redis, *, prefix: str, recent_items: int, ttl_s: int, half_life_s: float) -> None:
        self._client = client
        self._prefix = prefix
        self._recent_items = recent_items
        self._ttl_s = ttl_s
        self._half_life_s = half_life_s
        self._script = client.register_script(_APPLY_LUA)

    def mark_key(self, topic: str, partition: int) -> str:
        """The key of a partition's high-water mark."""
        return f"{self._prefix}hwm:{topic}:{partition}"

    def _user_keys(self, user: str) -> tuple[str, str]:
        return f"{self._prefix}u:{user}:recent", f"{self._prefix}u:{user}:counts"

    def apply(self, batches: list[PartitionBatch]) -> list[int]:
        """Apply every partition's events above its mark and raise the marks, in one pipeline.

        Returns, per batch, how many events it applied: always its last ones, those above the old mark.
        """
        if not batches:
            return []
        pipe = self._client.pipeline(transaction=False)
        for batch in batches:
            keys = [self.mark_key(batch.topic, batch.partition)]
            args: list[Any] = [batch.last_offset, self._ttl_s, self._recent_items, repr(self._half_life_s)]
            for offset, event in batch.events:
                keys.extend(self._user_keys(event.user_id))
                args.extend((offset, event.item_id, event.type, repr(event.ts)))
            self._script(keys=keys, args=args, client=pipe)
        return [int(n) for n in pipe.execute()]

    def marks(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """The high-water mark of each partition (-1 where nothing was applied yet)."""
        values = self._client.mget([self.mark_key(topic, p) for p in partitions])
        return {p: int(v) if v is not None else -1 for p, v in zip(partitions, values, strict=True)}

    def user(self, user_id: str) -> UserFeatures:
        """The features of one user (empty when the user has none or they expired)."""
        recent_key, counts_key = self._user_keys(user_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.lrange(recent_key, 0, -1)
        pipe.hgetall(counts_key)
        recent, raw = pipe.execute()
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        present = [t for t in EVENT_TYPES if t in fields]
        return UserFeatures(
            recent=[item.decode() for item in recent],
            decayed={t: float(fields[t]) for t in present},
            as_of={t: float(fields[f"{t}:ts"]) for t in present},
            counts={t: int(fields[f"{t}:n"]) for t in present},
        )
