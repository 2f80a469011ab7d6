"""What a replacement does to the resources that point at the replaced one.

A replaced AWS resource comes back with a new id and ARN, but the offline renderer names both after the type and
logical name (infra/review/outputs.py), so both renders show the old ones and the resources that reference them look
unchanged. At deploy time each of those references changes: where the referencing property forces a replacement
(an MSK cluster's brokerNodeGroupInfo.securityGroups after its security group's description is edited), the
dependent is replaced too, and so on down the chain. This module finds those references in the new render.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from infra.review.graph import Resource
from infra.review.outputs import OFFLINE_PREFIX, synthesize_outputs

NEW_IDENTITY: Final = f"{OFFLINE_PREFIX}new-identity"
"""The new side of a reference to a replaced resource: shown as `(known after deploy)`."""
_REGION: Final = "REGION0"
_MIN_LENGTH: Final = 8  # shorter outputs ("1", "6379") are not identities


def identities(resource: Resource) -> list[re.Pattern[str]]:
    """Patterns of the id, ARN and other string outputs an AWS resource gets from the cloud (any region)."""
    if not resource.type.startswith("aws:"):
        return []
    resource_id, outputs = synthesize_outputs(resource.type, resource.name, dict(resource.inputs), _REGION)
    # An id or output equal to an input (a bucket's or log group's own name) survives the replacement unchanged.
    kept = {v for v in resource.inputs.values() if isinstance(v, str)}
    values = {resource_id, *(v for k, v in outputs.items() if isinstance(v, str) and k not in resource.inputs)} - kept
    return [re.compile(re.escape(v).replace(_REGION, "[a-z0-9-]+")) for v in sorted(values) if len(v) >= _MIN_LENGTH]


def _leaves(value: Any, parts: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, (*parts, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*parts, i))
    elif isinstance(value, str):
        if value[:1] in ("{", "["):
            try:
                yield from _leaves(json.loads(value), parts)
                return
            except ValueError:
                pass
        yield parts, value


def references(dependent: Resource, patterns: list[re.Pattern[str]]) -> list[tuple[tuple[str | int, ...], str]]:
    """(path parts, value) of each input leaf of `dependent` that names one of the identities."""
    if not patterns:
        return []
    return [(parts, value) for parts, value in _leaves(dependent.inputs)
            if any(pattern.search(value) for pattern in patterns)]
