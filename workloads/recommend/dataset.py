"""The logged interactions the recommender trains on: recommendation events as JSON Lines (gzip) under a prefix.

Each line is one `workloads.recommend.events.Event` (schema version 1), so the log and the stream share one
schema and a consumer that archives the topic writes the same format. `synthetic_log` draws the events from the
load generator's generator (`loadgen.synthetic_events`: the same planted clusters and seed logic) and stamps them
one second apart from a fixed start, so the same seed writes the same bytes.

`python -m workloads.recommend.dataset --out s3://BUCKET/PREFIX --events N` writes a log for the demo and benches.
"""

from __future__ import annotations

import gzip
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.recommend import storage
from workloads.recommend.events import Event, parse_event
from workloads.recommend.loadgen import synthetic_events
from workloads.recommend.model_settings import DatasetSettings

LOG_START_TS: Final = 1_700_000_000.0
"""Event time of a synthetic log's first event (Unix seconds); later events follow one second apart."""
SHARD_SUFFIXES: Final = (".jsonl", ".jsonl.gz")
"""File names a log reader takes; anything else under the prefix (a _SUCCESS marker) is ignored."""
SHARD_NAME: Final = re.compile(r"^part-\d{5}\.jsonl\.gz$")
"""Names of the shards `write_log` writes; a rewrite deletes those it did not write this time."""


class InvalidLogError(ValueError):
    """A log file line that is not a valid event; the message names the file, the line and the problem."""


def synthetic_log(count: int, *, users: int, items: int, clusters: int, seed: int) -> list[Event]:
    """`count` events of the load generator's planted structure, stamped in order from LOG_START_TS."""
    return [event.model_copy(update={"ts": LOG_START_TS + i})
            for i, event in enumerate(synthetic_events(count, users=users, items=items, clusters=clusters, seed=seed))]


def encode_shard(events: Iterable[Event]) -> bytes:
    """Events as gzip-compressed JSON Lines (mtime 0, so the same events give the same bytes)."""
    lines = b"".join(event.encode() + b"\n" for event in events)
    return gzip.compress(lines, mtime=0)


def write_log(events: Sequence[Event], out: str, *, shard_events: int) -> list[str]:
    """Write the events as `part-NNNNN.jsonl.gz` shards under `out` (S3 or a folder); returns where they went.

    Shards of an older, longer log under `out` are deleted, so a reader gets exactly these events.
    """
    written, names = [], set()
    for number, start in enumerate(range(0, len(events), shard_events)):
        name = f"part-{number:05d}.jsonl.gz"
        written.append(storage.write_bytes(out, name, encode_shard(events[start:start + shard_events])))
        names.add(name)
    for stale in [n for n in storage.list_names(out) if SHARD_NAME.match(n) and n not in names]:
        storage.delete(out, stale)
    return written


def _lines(name: str, body: bytes) -> Iterator[bytes]:
    data = gzip.decompress(body) if name.endswith(".gz") else body
    yield from data.splitlines()


def read_log(location: str) -> list[Event]:
    """Every event of the log under `location` (S3 or a folder), shard by shard in name order.

    Raises `InvalidLogError` naming the file and line of the first invalid event, naming a corrupt or truncated
    gzip shard, and when there is no shard.
    """
    names = [n for n in storage.list_names(location) if n.endswith(SHARD_SUFFIXES)]
    if not names:
        raise InvalidLogError(f"{location}: no {' or '.join('*' + s for s in SHARD_SUFFIXES)} files under it; "
                              "write a log with `python -m workloads.recommend.dataset --out ...`")
    events = []
    for name in names:
        try:
            lines = list(_lines(name, storage.read_bytes(location, name)))
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut-off stream an EOFError
            raise InvalidLogError(f"{location}/{name}: not a readable gzip file ({exc or type(exc).__name__}); "
                                  "rewrite the shard, or remove it from the log") from exc
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                events.append(parse_event(line))
            except ValueError as exc:
                raise InvalidLogError(f"{location}/{name} line {number}: {exc}") from exc
    return events


def main(argv: Sequence[str] | None = None) -> int:
    """Write the configured synthetic log; exit 0, or 2 on bad settings."""
    try:
        settings = DatasetSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    events = synthetic_log(settings.events, users=settings.users, items=settings.items, clusters=settings.clusters,
                           seed=settings.seed)
    shards = write_log(events, settings.out, shard_events=settings.shard_events)
    log_event("dataset_written", out=settings.out, events=len(events), shards=len(shards))
    return 0


if __name__ == "__main__":
    sys.exit(main())
