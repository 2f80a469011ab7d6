"""Readers for the camelCase wire format every rule receives (the same under Pulumi and offline)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyConfigSchema, ResourceValidationArgs, StackValidationArgs

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$")
_SUFFIX = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}


def setting(args: ResourceValidationArgs | StackValidationArgs, schema: PolicyConfigSchema, key: str) -> Any:
    """A rule's config value: the policy config when it sets `key`, else the schema's default."""
    config = args.get_config() or {}
    if key in config:
        return config[key]
    return schema.properties[key].get("default")


def as_list(value: Any) -> list[Any]:
    """A wire value that may be one item or a list of items, as a list (None is empty)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("8", 8, "1.5", "2Gi", "500m") as a number; None when absent or malformed."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        return None
    number, suffix = match.groups()
    return float(number) * (_SUFFIX[suffix] if suffix else 1.0)


def policy_document(value: Any) -> Mapping[str, Any] | None:
    """An IAM policy document given as a JSON string or a mapping; None when it is neither."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            document = json.loads(value)
        except ValueError:
            return None
        return document if isinstance(document, Mapping) else None
    return None


def statements(document: Mapping[str, Any] | None) -> Iterator[Mapping[str, Any]]:
    """Each statement of a policy document (a single statement object counts as a list of one)."""
    if document is None:
        return
    for statement in as_list(document.get("Statement")):
        if isinstance(statement, Mapping):
            yield statement


def tags_of(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """A resource's `tags` input, or an empty mapping."""
    tags = props.get("tags")
    return tags if isinstance(tags, Mapping) else {}
