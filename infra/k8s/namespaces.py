"""`Namespaces`: the workload namespaces, with Pod Security Admission levels as data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

PodSecurityLevel = Literal["privileged", "baseline", "restricted"]

DEFAULT_NAMESPACES: Mapping[str, PodSecurityLevel] = {"training": "restricted", "inference": "restricted"}
"""Workload namespaces and their enforced Pod Security Standard."""


@dataclass(frozen=True, kw_only=True)
class NamespacesArgs:
    """Inputs of `Namespaces`."""

    namespaces: Mapping[str, PodSecurityLevel] = field(default_factory=lambda: dict(DEFAULT_NAMESPACES))
    """Namespace name → enforced Pod Security level. Defaults to training and inference, restricted."""
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Extra labels per namespace (e.g. Istio injection)."""
    service_accounts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Service accounts to create per namespace (bound to IAM roles by WorkloadIdentity). Defaults to none."""


class Namespaces(pulumi.ComponentResource):
    """Namespaces that enforce, audit and warn at a Pod Security Standard level."""

    names: dict[str, pulumi.Output[str]]
    """Namespace names by key."""

    def __init__(self, name: str, args: NamespacesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:k8s:Namespaces", name, None, opts)
        self.names = {}
        for namespace, level in sorted(args.namespaces.items()):
            labels = {
                # https://kubernetes.io/docs/concepts/security/pod-security-admission/
                "pod-security.kubernetes.io/enforce": level,
                "pod-security.kubernetes.io/audit": level,
                "pod-security.kubernetes.io/warn": level,
                "app.kubernetes.io/managed-by": "modelplane",
                **args.labels.get(namespace, {}),
            }
            created = k8s.core.v1.Namespace(
                f"{name}-{namespace}", metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace, labels=labels),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.names[namespace] = created.metadata.name
            for account in args.service_accounts.get(namespace, ()):
                k8s.core.v1.ServiceAccount(
                    f"{name}-{namespace}-{account}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=account, namespace=namespace,
                                                        labels={"app.kubernetes.io/managed-by": "modelplane"}),
                    # Pods mount a token only when they ask; Pod Identity injects AWS credentials itself.
                    automount_service_account_token=False,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[created]),
                )
        self.register_outputs({"names": self.names})
