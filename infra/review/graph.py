"""The resource graph every review tool consumes: one stack's resources as the engine recorded them.

A render (`infra.review.engine`) produces it; `graph.json`, the policy adapter, diff, cost and
manifests read it. Inputs are in the camelCase wire format CrossGuard policies see, secrets
masked as "[secret]".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

HELM_RELEASE: Final = "kubernetes:helm.sh/v3:Release"
"""The type token of a Helm release: one plain resource whose chart and values are visible offline."""


@dataclass(frozen=True)
class Resource:
    """One registered resource, as the engine saw it."""

    urn: str
    """The resource's URN (project, stack, parent type chain, type token, name)."""
    type: str
    """The type token, e.g. `aws:s3/bucketV2:BucketV2` or `modelplane:identity:WorkloadIdentity`."""
    name: str
    """The logical name given to the resource."""
    parent: str
    """The parent's URN; empty for resources directly under the stack."""
    provider: str
    """The URN of the provider resource that manages it, without the provider's ID; empty for components."""
    inputs: dict[str, Any]
    """The inputs in camelCase wire format, secrets masked."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to graph.json."""
        return {"urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent,
                "provider": self.provider, "inputs": self.inputs}


@dataclass
class Graph:
    """Every resource of one stack, sorted by URN."""

    stack: str
    """The stack's name."""
    resources: list[Resource] = field(default_factory=list)
    """Every resource, sorted by URN."""

    def of_type(self, type_: str) -> list[Resource]:
        """All resources of exactly this type token."""
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Resource:
        """The single resource of this type (and name, when given); raises when not exactly one."""
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise LookupError(f"expected one {type_}{f' named {name}' if name else ''}, found {len(found)}: {names}")
        return found[0]

    def kubernetes_objects(self) -> Iterator[Resource]:
        """Every Kubernetes object (not providers, not Helm releases)."""
        for resource in self.resources:
            if resource.type.startswith("kubernetes:") and resource.type != HELM_RELEASE:
                yield resource

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, sorted resources, trailing newline."""
        doc = {"stack": self.stack, "resources": [r.to_dict() for r in self.resources]}
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Graph:
        """Inverse of `to_json`."""
        doc = json.loads(text)
        return cls(stack=doc["stack"], resources=[Resource(**r) for r in doc["resources"]])
