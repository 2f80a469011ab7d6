"""`Namespaces`: the platform's namespaces, with Pod Security Admission levels as data and a default-deny
NetworkPolicy (plus DNS) in each (infra/k8s/netpol.py); the components that run pods there add their allows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal

import pulumi
import pulumi_kubernetes as k8s

from infra.k8s.netpol import namespace_baseline
from workloads.common.vocab import MANAGED_BY_LABELS

PodSecurityLevel = Literal["privileged", "baseline", "restricted"]

TRAINING_NAMESPACE: Final = "training"
"""Namespace of training jobs."""
INFERENCE_NAMESPACE: Final = "inference"
"""Namespace of inference services."""
WORKLOAD_NAMESPACES: Final[Mapping[str, PodSecurityLevel]] = {TRAINING_NAMESPACE: "restricted",
                                                              INFERENCE_NAMESPACE: "restricted"}
"""Workload namespaces and their enforced Pod Security Standard."""


class Namespaces(pulumi.ComponentResource):
    """Namespaces that enforce, audit and warn at a Pod Security Standard level, each with `default-deny` and
    `allow-dns` NetworkPolicies.

    `namespaces` maps each name to its level; `labels` adds labels per namespace (e.g. Istio injection);
    `service_accounts` lists the service accounts to create per namespace (bound to IAM roles elsewhere).
    """

    names: dict[str, pulumi.Output[str]]
    """Namespace names by key."""

    def __init__(self, name: str, namespaces: Mapping[str, PodSecurityLevel], *,
                 labels: Mapping[str, Mapping[str, str]] | None = None,
                 service_accounts: Mapping[str, Sequence[str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:k8s:Namespaces", name, None, opts)
        labels, service_accounts = labels or {}, service_accounts or {}
        self.names = {}
        for namespace, level in sorted(namespaces.items()):
            namespace_labels = {
                # https://kubernetes.io/docs/concepts/security/pod-security-admission/
                "pod-security.kubernetes.io/enforce": level,
                "pod-security.kubernetes.io/audit": level,
                "pod-security.kubernetes.io/warn": level,
                **MANAGED_BY_LABELS,
                **labels.get(namespace, {}),
            }
            created = k8s.core.v1.Namespace(
                f"{name}-{namespace}", metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace, labels=namespace_labels),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.names[namespace] = created.metadata.name
            namespace_baseline(f"{name}-{namespace}", created.metadata.name, pulumi.ResourceOptions(parent=self))
            for account in service_accounts.get(namespace, ()):
                k8s.core.v1.ServiceAccount(
                    f"{name}-{namespace}-{account}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=account, namespace=namespace,
                                                        labels=dict(MANAGED_BY_LABELS)),
                    # Pods mount a token only when they ask; Pod Identity injects AWS credentials itself.
                    automount_service_account_token=False,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[created]),
                )
        self.register_outputs({"names": self.names})
