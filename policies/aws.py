"""What the rules need to know about AWS resource types, read from the pulumi-aws SDK the pack runs with.

The SDK is the provider's own description of its resources, so the pack never keeps a list of
taggable types by hand, and it never asks the program (it is published on its own).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import re
from typing import Final

_MODULE_TABLE: Final = re.compile(r'resource_modules="""(.*?)"""', re.S)


@functools.cache
def _resource_classes() -> dict[str, tuple[str, str]]:
    # pulumi_aws/__init__.py registers every resource class from one embedded JSON table:
    # [{"fqn": "pulumi_aws.s3", "classes": {"aws:s3/bucket:Bucket": "Bucket", ...}}, ...].
    spec = importlib.util.find_spec("pulumi_aws")
    if spec is None or spec.origin is None:
        raise RuntimeError("the policy pack needs the pulumi-aws SDK installed next to pulumi-policy")
    with open(spec.origin, encoding="utf-8") as source:
        match = _MODULE_TABLE.search(source.read())
    if match is None:
        raise RuntimeError(f"{spec.origin} no longer embeds its resource module table; update policies/aws.py")
    return {token: (module["fqn"], cls) for module in json.loads(match.group(1))
            for token, cls in module["classes"].items()}


@functools.cache
def is_taggable(resource_type: str) -> bool:
    """True when the AWS resource type (`aws:s3/bucket:Bucket`) accepts a `tags` input."""
    entry = _resource_classes().get(resource_type)
    if entry is None:
        return False
    cls = getattr(importlib.import_module(entry[0]), entry[1])
    return "tags" in inspect.signature(cls._internal_init).parameters
