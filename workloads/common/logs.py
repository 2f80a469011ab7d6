"""JSON-line logs: one object per line, machine-readable by any log pipeline."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


def log_event(event: str, stream: TextIO | None = None, **fields: Any) -> None:
    """Write one JSON line `{"ts": ..., "event": event, **fields}` and flush it."""
    record = {"ts": round(time.time(), 3), "event": event, **fields}
    out = stream or sys.stdout
    out.write(json.dumps(record, default=str, sort_keys=True) + "\n")
    out.flush()
