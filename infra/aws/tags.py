"""Global tags, applied to every taggable AWS resource by one stack transform.

Precedence (highest first), documented in the README and tested:
1. the platform's own tags: `environment` (the stack), `project`, `managed-by`;
2. the tags a component sets on one resource (e.g. `Name`, subnet role tags);
3. the stack's `modelplane:tags` (owner, cost-center, ...).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws


def platform_tags(stack: str) -> dict[str, str]:
    """The tags modelplane always sets and a stack cannot override."""
    return {"environment": stack, "project": "modelplane", "managed-by": "pulumi"}


def merge_tags(stack_tags: Mapping[str, str], resource_tags: Mapping[str, str] | None, stack: str) -> dict[str, str]:
    """Merge the three layers in precedence order (see the module docstring)."""
    return {**stack_tags, **(resource_tags or {}), **platform_tags(stack)}


@functools.cache
def _type_to_class() -> dict[str, tuple[str, str]]:
    # pulumi_aws registers every resource class with a JSON table in its __init__; it is the
    # provider's own type-token → Python-class map, so taggability comes from the real SDK.
    source = inspect.getsource(pulumi_aws)
    match = re.search(r'resource_modules="""(.*?)"""', source, re.S)
    if match is None:
        raise RuntimeError("pulumi_aws no longer embeds its resource module table; update infra/aws/tags.py")
    table: dict[str, tuple[str, str]] = {}
    for module in json.loads(match.group(1)):
        for token, cls in module["classes"].items():
            table[token] = (module["fqn"], cls)
    return table


@functools.cache
def is_taggable(type_: str) -> bool:
    """True when the AWS resource type accepts a `tags` input."""
    entry = _type_to_class().get(type_)
    if entry is None:
        return False
    cls = getattr(importlib.import_module(entry[0]), entry[1])
    return "tags" in inspect.signature(cls._internal_init).parameters


def tag_transform(stack: str, stack_tags: Mapping[str, str]) -> pulumi.ResourceTransform:
    """A stack transform that merges the global tags into every taggable AWS resource."""

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if not args.custom or not args.type_.startswith("aws:") or not is_taggable(args.type_):
            return None
        props: dict[str, Any] = dict(args.props)
        props["tags"] = merge_tags(stack_tags, props.get("tags"), stack)
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)

    return transform
