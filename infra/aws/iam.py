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


POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
"""The service principal EKS Pod Identity assumes workload roles as."""
POD_IDENTITY_TAG_KEYS = ("eks-cluster-name", "kubernetes-namespace", "kubernetes-service-account")
"""Session tags EKS Pod Identity adds to its AssumeRole request (EKS User Guide, pod-id-abac.html, "List of session
tags added by EKS Pod Identity") that a role's trust matches, so only its own service account can assume it."""


def pod_identity_trust_policy(cluster_name: pulumi.Input[str], namespace: str,
                              service_account: str) -> pulumi.Output[str]:
    """Trust policy for EKS Pod Identity, limited to `namespace/service_account` of `cluster_name` by the session tags
    Pod Identity sends (EKS User Guide, pod-id-role.html, "Setting Conditions"). Without the condition any
    association in the account (another stack's cluster, another namespace) that may pass the role could assume it."""
    def document(cluster: str) -> str:
        tags = dict(zip(POD_IDENTITY_TAG_KEYS, (cluster, namespace, service_account), strict=True))
        statement = {"Effect": "Allow", "Principal": {"Service": [POD_IDENTITY_SERVICE]},
                     "Action": ["sts:AssumeRole", "sts:TagSession"],
                     "Condition": {"StringEquals": {f"aws:RequestTag/{key}": value for key, value in tags.items()}}}
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)
    return pulumi.Output.from_input(cluster_name).apply(document)


def managed_policy_arn(name: str) -> str:
    """ARN of an AWS-managed policy."""
    return f"arn:aws:iam::aws:policy/{name}"
