"""IAM policy documents built as Python data (no invoke: they render offline and diff cleanly)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

PolicyStatement = dict[str, Any]


@dataclass(frozen=True)
class Grant:
    """Least-privilege statements one component hands to a principal (see `grant_*` helpers)."""

    statements: Sequence[pulumi.Input[PolicyStatement]] = field(default_factory=tuple)
    """IAM statements; resources may be Outputs (ARNs known only at deploy time)."""


def policy_document(statements: Sequence[pulumi.Input[PolicyStatement]]) -> pulumi.Output[str]:
    """A JSON policy document from statements whose values may be Outputs."""
    return pulumi.Output.all(*statements).apply(
        lambda resolved: json.dumps({"Version": "2012-10-17", "Statement": list(resolved)}, sort_keys=True)
    )


def service_trust_policy(*services: str, actions: Sequence[str] = ("sts:AssumeRole",)) -> str:
    """Trust policy letting AWS services (e.g. `eks.amazonaws.com`) assume a role."""
    statement = {"Effect": "Allow", "Principal": {"Service": sorted(services)}, "Action": list(actions)}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)


def managed_policy_arn(name: str) -> str:
    """ARN of an AWS-managed policy."""
    return f"arn:aws:iam::aws:policy/{name}"
