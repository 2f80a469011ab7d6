"""What a change does at deploy time: properties that force a replacement, and transitions the cloud rejects.

`modelplane diff` compares two offline renders; real Pulumi then asks each provider whether a changed
property can be updated in place. This module holds that answer for the resource types the program
uses, each entry copied from the provider's own source:

- AWS (pulumi-aws is bridged from the Terraform provider, so `ForceNew: true` in its schema is a
  replacement): hashicorp/terraform-provider-aws `internal/service/ec2/vpc.go` (`ResourceVPC`),
  `internal/service/ec2/vpc_subnet.go` (`resourceSubnet`) and `internal/service/eks/cluster.go` (`resourceCluster`).
- Kubernetes: pulumi/pulumi-kubernetes `provider/pkg/provider` `forceNew` table (`metadata.name`,
  `metadata.namespace` for every kind, plus the per-kind fields below; these are the fields the API
  server refuses to patch, e.g. a Deployment's selector).

Rejected transitions are errors, not replacements: AWS refuses the call outright.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from infra.review.engine import SECRET
from infra.review.outputs import DEFAULT_FOR_PREFIX, OFFLINE_PREFIX

_TF_VPC: Final = "terraform-provider-aws internal/service/ec2/vpc.go ResourceVPC ForceNew"
_TF_SUBNET: Final = "terraform-provider-aws internal/service/ec2/vpc_subnet.go resourceSubnet ForceNew"
_TF_EKS: Final = "terraform-provider-aws internal/service/eks/cluster.go resourceCluster ForceNew"
_K8S: Final = "pulumi-kubernetes provider forceNew table"


@dataclass(frozen=True)
class ForceNew:
    """Property paths (Pulumi camelCase) whose change replaces a resource of one type."""

    paths: tuple[str, ...]
    """Changing one of these, or anything under it, replaces the resource."""
    source: str
    """Where the provider declares it."""


REPLACE_ON: Final[Mapping[str, ForceNew]] = {
    "aws:ec2/vpc:Vpc": ForceNew(("cidrBlock",), _TF_VPC),
    "aws:ec2/subnet:Subnet": ForceNew(
        ("availabilityZone", "availabilityZoneId", "cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength",
         "ipv6IpamPoolId", "ipv6Native", "ipv6NetmaskLength", "outpostArn", "vpcId"), _TF_SUBNET),
    "aws:eks/cluster:Cluster": ForceNew(
        ("name", "roleArn", "bootstrapSelfManagedAddons", "accessConfig.bootstrapClusterCreatorAdminPermissions",
         "kubernetesNetworkConfig.ipFamily", "kubernetesNetworkConfig.serviceIpv4Cidr", "remoteNetworkConfig",
         "outpostConfig.controlPlaneInstanceType"), _TF_EKS),
    "kubernetes:apps/v1:Deployment": ForceNew(("spec.selector",), _K8S + " (deployment)"),
    "kubernetes:apps/v1:StatefulSet": ForceNew(
        ("spec.podManagementPolicy", "spec.revisionHistoryLimit", "spec.selector", "spec.serviceName",
         "spec.volumeClaimTemplates"), _K8S + " (statefulSet)"),
    "kubernetes:batch/v1:Job": ForceNew(("spec.selector", "spec.template"), _K8S + " (job)"),
    "kubernetes:core/v1:Service": ForceNew(("spec.clusterIP", "spec.type"), _K8S + " (core v1 Service)"),
    "kubernetes:core/v1:ConfigMap": ForceNew(("binaryData", "data"), _K8S + " (core v1 ConfigMap)"),
    "kubernetes:core/v1:Secret": ForceNew(("type", "stringData", "data"), _K8S + " (core v1 Secret)"),
    "kubernetes:storage.k8s.io/v1:StorageClass": ForceNew(("parameters", "provisioner"), _K8S + " (StorageClass)"),
}
"""Replace-forcing properties per resource type, with the provider source of each entry."""

_K8S_METADATA: Final = ForceNew(("metadata.name", "metadata.namespace"), _K8S + " (metadataForceNewProperties)")
# Helm releases and kustomize directories are Pulumi's own resources, not API objects with metadata.
_NOT_API_OBJECTS: Final = ("kubernetes:helm.sh/", "kubernetes:kustomize/", "kubernetes:yaml/")

PLACEHOLDERS: Final = re.compile(f"^({re.escape(DEFAULT_FOR_PREFIX)}|{re.escape(OFFLINE_PREFIX)})|^{re.escape(SECRET)}$")
"""Values the offline renderer invents for what AWS computes at deploy time (infra/review/outputs.py)."""


def is_placeholder(value: Any) -> bool:
    """True for a mock value (`default-for-1.35`, `offline-…`) that the real deploy will compute."""
    return isinstance(value, str) and bool(PLACEHOLDERS.search(value))


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def force_new_rules(type_: str) -> tuple[ForceNew, ...]:
    """The replace-forcing entries that apply to a resource type (none for unknown types)."""
    rules = [REPLACE_ON[type_]] if type_ in REPLACE_ON else []
    if type_.startswith("kubernetes:") and not type_.startswith(_NOT_API_OBJECTS) and ":providers:" not in type_:
        rules.append(_K8S_METADATA)
    return tuple(rules)


def forces_replacement(type_: str, path: str) -> str | None:
    """The source that makes changing `path` replace a `type_` resource, or None when it updates in place."""
    for rule in force_new_rules(type_):
        if any(_under(path, prefix) for prefix in rule.paths):
            return rule.source
    return None


_MINOR: Final = re.compile(r"^(\d+)\.(\d+)")


def _minor(version: Any) -> tuple[int, int] | None:
    found = _MINOR.match(str(version)) if version is not None else None
    return (int(found[1]), int(found[2])) if found else None


def _eks_version(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    # EKS UpdateClusterVersion: "you can update only one minor version at a time" and a cluster cannot be
    # downgraded (docs.aws.amazon.com/eks/latest/userguide/update-cluster.html).
    before, after = _minor(old.get("version")), _minor(new.get("version"))
    if before is None or after is None or before == after:
        return []
    if after < before:
        return [f"version {old.get('version')} → {new.get('version')}: EKS cannot downgrade a cluster. "
                f"Fix: keep {old.get('version')}, or create a new cluster and move workloads"]
    if after[0] != before[0] or after[1] > before[1] + 1:
        step = f"{before[0]}.{before[1] + 1}"
        return [f"version {old.get('version')} → {new.get('version')}: EKS upgrades one minor version at a time. "
                f"Fix: upgrade to {step} first, deploy, then continue"]
    return []


def _failover(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    # ElastiCache CreateReplicationGroup / ModifyReplicationGroup: automatic failover needs at least one replica,
    # i.e. NumCacheClusters >= 2 (docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateReplicationGroup.html).
    if new.get("automaticFailoverEnabled") is not True:
        return []
    nodes = new.get("numCacheClusters")
    if isinstance(nodes, int) and nodes < 2:
        return [f"numCacheClusters {old.get('numCacheClusters')} → {nodes} with automaticFailoverEnabled: "
                f"ElastiCache needs at least 2 nodes for automatic failover. Fix: keep numCacheClusters >= 2, "
                f"or turn automaticFailoverEnabled off first"]
    return []


_REJECTED: Final = {
    "aws:eks/cluster:Cluster": _eks_version,
    "aws:elasticache/replicationGroup:ReplicationGroup": _failover,
}


def rejected(type_: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why the cloud refuses to move a `type_` resource from inputs `old` to `new` (empty when it accepts)."""
    check = _REJECTED.get(type_)
    return check(old, new) if check else []
