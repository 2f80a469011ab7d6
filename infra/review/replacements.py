"""What a change does at deploy time: properties that force a replacement, and transitions the cloud rejects.

`modelplane diff` compares two offline renders; real Pulumi then asks each provider whether a changed
property can be updated in place. This module holds that answer for the resource types the program
uses, each entry copied from the provider's own source:

- AWS (pulumi-aws is bridged from the Terraform provider, so `ForceNew: true` in its schema is a
  replacement): hashicorp/terraform-provider-aws `internal/service/<service>/*.go`, the resource function named in
  each entry's source. Terraform's SDK applies `ForceNew` on a nested block (`TypeList`, `MaxItems: 1`, which Pulumi
  renders as an object) to adding or removing the block only; its fields replace only where they are `ForceNew`
  themselves, so such blocks are listed under `blocks`, their `ForceNew` fields under `paths`. Value-dependent
  replacements (a `CustomizeDiff` with `ForceNewIf`, e.g. a version downgrade) are in `REPLACE_IF`. The security
  group, bucket, role, log group and KMS key entries were read (2026-11) from the provider's main branch. The node group,
  ElastiCache, MSK and OpenSearch entries were read (2026-11) from the provider's v6 sources, the major line that
  pulumi-aws 7.x bridges (replication_group.go at 001b6364, node_group.go at 012e0a32, parameter_group.go at
  0593466d); the exact upstream commit pinned by pulumi-aws 7.51.1 was not compared.
- Kubernetes: pulumi/pulumi-kubernetes `provider/pkg/provider` `forceNew` table (`metadata.name`,
  `metadata.namespace` for every kind, plus the per-kind fields below; these are the fields the API
  server refuses to patch, e.g. a Deployment's selector).

Rejected transitions are errors, not replacements: AWS refuses the call outright.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from infra.review.engine import SECRET
from infra.review.outputs import DEFAULT_FOR_PREFIX, OFFLINE_PREFIX

_TF_VPC: Final = "terraform-provider-aws internal/service/ec2/vpc.go ResourceVPC ForceNew"
_TF_SUBNET: Final = "terraform-provider-aws internal/service/ec2/vpc_subnet.go resourceSubnet ForceNew"
_TF_EKS: Final = "terraform-provider-aws internal/service/eks/cluster.go resourceCluster ForceNew"
_K8S: Final = "pulumi-kubernetes provider forceNew table"
_TF_NODE_GROUP: Final = "terraform-provider-aws internal/service/eks/node_group.go resourceNodeGroup ForceNew"
_TF_CACHE_RG: Final = ("terraform-provider-aws internal/service/elasticache/replication_group.go "
                       "resourceReplicationGroup ForceNew")
_TF_CACHE_SUBNETS: Final = ("terraform-provider-aws internal/service/elasticache/subnet_group.go "
                            "ResourceSubnetGroup ForceNew")
_TF_CACHE_PARAMS: Final = ("terraform-provider-aws internal/service/elasticache/parameter_group.go "
                           "resourceParameterGroup ForceNew")
_TF_MSK: Final = "terraform-provider-aws internal/service/kafka/cluster.go resourceCluster ForceNew"
_TF_MSK_CONFIG: Final = "terraform-provider-aws internal/service/kafka/configuration.go resourceConfiguration ForceNew"
_TF_OPENSEARCH: Final = "terraform-provider-aws internal/service/opensearch/domain.go resourceDomain ForceNew"
_TF_SG: Final = "terraform-provider-aws internal/service/ec2/vpc_security_group.go resourceSecurityGroup ForceNew"
_TF_BUCKET: Final = "terraform-provider-aws internal/service/s3/bucket.go resourceBucket ForceNew"
_TF_ROLE: Final = "terraform-provider-aws internal/service/iam/role.go resourceRole ForceNew"
_TF_LOG_GROUP: Final = "terraform-provider-aws internal/service/logs/group.go resourceGroup ForceNew"
_TF_KMS_KEY: Final = "terraform-provider-aws internal/service/kms/key.go resourceKey ForceNew"


@dataclass(frozen=True)
class ForceNew:
    """Property paths (Pulumi camelCase) whose change replaces a resource of one type."""

    paths: tuple[str, ...]
    """Changing one of these, or anything under it, replaces the resource."""
    source: str
    """Where the provider declares it."""
    blocks: tuple[str, ...] = ()
    """Nested blocks whose addition or removal (the whole block, not a field in it) replaces the resource."""


REPLACE_ON: Final[Mapping[str, ForceNew]] = {
    "aws:ec2/vpc:Vpc": ForceNew(("cidrBlock",), _TF_VPC),
    "aws:ec2/subnet:Subnet": ForceNew(
        ("availabilityZone", "availabilityZoneId", "cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength",
         "ipv6IpamPoolId", "ipv6Native", "ipv6NetmaskLength", "outpostArn", "vpcId"), _TF_SUBNET),
    "aws:eks/cluster:Cluster": ForceNew(
        ("name", "roleArn", "bootstrapSelfManagedAddons", "accessConfig.bootstrapClusterCreatorAdminPermissions",
         "kubernetesNetworkConfig.ipFamily", "kubernetesNetworkConfig.serviceIpv4Cidr", "remoteNetworkConfig",
         "outpostConfig.controlPlaneInstanceType"), _TF_EKS),
    "aws:eks/nodeGroup:NodeGroup": ForceNew(
        ("amiType", "capacityType", "clusterName", "diskSize", "instanceTypes", "launchTemplate.id",
         "launchTemplate.name", "nodeGroupName", "nodeGroupNamePrefix", "nodeRoleArn", "remoteAccess", "subnetIds"),
        _TF_NODE_GROUP),
    "aws:elasticache/replicationGroup:ReplicationGroup": ForceNew(
        ("atRestEncryptionEnabled", "dataTieringEnabled", "globalReplicationGroupId", "kmsKeyId", "networkType",
         "port", "replicationGroupId", "securityGroupNames", "snapshotArns", "snapshotName", "subnetGroupName"),
        _TF_CACHE_RG),
    "aws:elasticache/subnetGroup:SubnetGroup": ForceNew(("name",), _TF_CACHE_SUBNETS),
    "aws:elasticache/parameterGroup:ParameterGroup": ForceNew(("description", "family", "name"), _TF_CACHE_PARAMS),
    "aws:msk/cluster:Cluster": ForceNew(
        ("brokerNodeGroupInfo.azDistribution", "brokerNodeGroupInfo.clientSubnets", "brokerNodeGroupInfo.securityGroups",
         "clusterName", "encryptionInfo.encryptionAtRestKmsKeyArn", "encryptionInfo.encryptionInTransit.inCluster"),
        _TF_MSK, blocks=("brokerNodeGroupInfo", "encryptionInfo")),
    "aws:msk/configuration:Configuration": ForceNew(("kafkaVersions", "name"), _TF_MSK_CONFIG),
    "aws:opensearch/domain:Domain": ForceNew(("domainName", "encryptAtRest.kmsKeyId"), _TF_OPENSEARCH,
                                             blocks=("vpcOptions",)),
    # A security group's description is fixed at creation (EC2 has no call to change it): editing the text replaces
    # the group, and everything that lists its id (an MSK cluster's brokerNodeGroupInfo.securityGroups) with it.
    "aws:ec2/securityGroup:SecurityGroup": ForceNew(("description", "name", "namePrefix", "vpcId"), _TF_SG),
    "aws:s3/bucket:Bucket": ForceNew(("bucket", "bucketPrefix"), _TF_BUCKET),
    "aws:iam/role:Role": ForceNew(("name", "namePrefix", "path"), _TF_ROLE),
    "aws:cloudwatch/logGroup:LogGroup": ForceNew(("logGroupClass", "name", "namePrefix"), _TF_LOG_GROUP),
    "aws:kms/key:Key": ForceNew(("customKeyStoreId", "customerMasterKeySpec", "keyUsage", "multiRegion", "xksKeyId"),
                                _TF_KMS_KEY),
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



def _version(value: Any) -> tuple[int, ...] | None:
    found = re.match(r"^\d+(?:\.\d+)*", str(value)) if isinstance(value, str) else None
    return tuple(int(part) for part in found[0].split(".")) if found else None


def _goes_down(old: Any, new: Any) -> bool:
    before, after = _version(old), _version(new)
    return before is not None and after is not None and after < before


def _turned_off(old: Any, new: Any) -> bool:
    return old is True and new is False


def _engine_swap(old: Any, new: Any) -> bool:
    # ElastiCache upgrades Redis OSS to Valkey in place; every other engine change recreates the group.
    return isinstance(old, str) and isinstance(new, str) and old != new and (old, new) != ("redis", "valkey")


@dataclass(frozen=True)
class ForceNewIf:
    """A property whose change replaces a resource only for some old → new values (a provider CustomizeDiff)."""

    path: str
    """The property path."""
    when: Callable[[Any, Any], bool]
    """True for the (old, new) values that replace."""
    source: str
    """Where the provider decides it, and for which values."""


REPLACE_IF: Final[Mapping[str, tuple[ForceNewIf, ...]]] = {
    "aws:elasticache/replicationGroup:ReplicationGroup": (
        ForceNewIf("engineVersion", _goes_down,
                   _TF_CACHE_RG.replace("ForceNew", "customizeDiffEngineVersionForceNewOnDowngrade (a downgrade)")),
        ForceNewIf("engine", _engine_swap,
                   _TF_CACHE_RG.replace("ForceNew", "customizeDiffEngineForceNewOnDowngrade (any but redis to valkey)")),
    ),
    "aws:msk/cluster:Cluster": (
        ForceNewIf("kafkaVersion", _goes_down, _TF_MSK.replace("ForceNew", "ForceNewIfChange kafka_version (a downgrade)")),
    ),
    # A domain on OpenSearch (not Elasticsearch < 6.7) turns encryption on in place; turning it off replaces.
    "aws:opensearch/domain:Domain": tuple(
        ForceNewIf(path, _turned_off, _TF_OPENSEARCH.replace("ForceNew", f"ForceNewIf {path} (true to false)"))
        for path in ("encryptAtRest.enabled", "nodeToNodeEncryption.enabled", "advancedSecurityOptions.enabled")
    ),
}
"""Value-dependent replacements per resource type, with the provider source of each entry."""

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


def forces_replacement(type_: str, path: str, old: Any = None, new: Any = None) -> str | None:
    """The source that makes changing `path` (from `old` to `new`) replace a `type_` resource, or None when it
    updates in place."""
    for rule in force_new_rules(type_):
        if path in rule.blocks or any(_under(path, prefix) for prefix in rule.paths):
            return rule.source
    for conditional in REPLACE_IF.get(type_, ()):
        if path == conditional.path and conditional.when(old, new):
            return conditional.source
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
