"""The `cluster` and `nodePools` sections: the EKS control plane and its managed node groups."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field

from infra import versions
from infra.config import instances
from infra.config.base import POOL_NAME, Section, not_one_of
from infra.config.logging import CLOUDWATCH_RETENTION_DAYS

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
"""Valid EKS control-plane log types."""
DOCUMENTATION_RANGES = tuple(ipaddress.IPv4Network(c) for c in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
"""TEST-NET-1/2/3, reserved for documentation by RFC 5737 section 3: no real client has these addresses."""
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
"""An IAM role ARN (any partition); the role's path may contain slashes."""
SYSTEM_POOL = "system"
"""The managed node group every stack must have: it runs cluster add-ons and platform controllers."""


class ClusterConfig(Section):
    """The EKS control plane."""

    version: str = versions.EKS_DEFAULT_VERSION
    """Kubernetes version. Defaults to the pinned default in infra/versions.py."""
    endpoint_public_access: bool = False
    """Expose the API server publicly (still limited to publicAccessCidrs). Defaults to false."""
    public_access_cidrs: list[ipaddress.IPv4Network] = []
    """CIDRs allowed to reach a public endpoint: required, real public ranges, when the endpoint is public."""
    admin_role_arns: list[str] = []
    """IAM role ARNs given cluster-admin through EKS access entries. Defaults to none."""
    deployer_role_arn: str = ""
    """Required: the IAM role that runs `pulumi up` (CI and the in-VPC CodeBuild deployer); it gets its own
    cluster-admin access entry. Its policy: docs/deployer-policy.json."""
    log_types: list[str] = ["api", "audit", "authenticator"]
    """Control-plane log types sent to CloudWatch. Defaults to api, audit, authenticator."""
    log_retention_days: int = Field(default=90, ge=1, le=3653)
    """Retention of the control-plane (and in-VPC deployer) log group, in days. Defaults to 90. Valid:
    CLOUDWATCH_RETENTION_DAYS."""
    kms_deletion_window_days: int = Field(default=30, ge=7, le=30)
    """Waiting period before the secrets KMS key is deleted. Defaults to 30. Valid: 7 to 30."""

    def checks(self, production: bool) -> list[tuple[str, str]]:
        """Cross-field rules: version, endpoint allowlist, log types, role ARNs."""
        problems: list[tuple[str, str]] = []
        if self.version not in versions.EKS_VERSIONS:
            problems.append(("version", not_one_of(self.version, versions.EKS_VERSIONS)))
        if self.endpoint_public_access and not self.public_access_cidrs:
            problems.append((
                "publicAccessCidrs",
                "must list at least one CIDR when endpointPublicAccess is true (got []); "
                "add your office/VPN egress CIDR or set endpointPublicAccess: false (deploys run inside the VPC)",
            ))
        if not self.endpoint_public_access and self.public_access_cidrs:
            problems.append(("publicAccessCidrs", f"has no effect unless endpointPublicAccess is true (got "
                                                  f"{[str(c) for c in self.public_access_cidrs]}); remove it or set "
                                                  "endpointPublicAccess: true"))
        for i, cidr in enumerate(self.public_access_cidrs):
            if cidr.prefixlen == 0:
                reason = "is not allowed in a production stack" if production else "defeats the allowlist"
                problems.append((f"publicAccessCidrs[{i}]", f"{cidr} {reason}; list specific CIDRs"))
            elif any(cidr.subnet_of(doc) for doc in DOCUMENTATION_RANGES):
                problems.append((f"publicAccessCidrs[{i}]", f"{cidr} is a documentation range (RFC 5737) that no "
                                                            "client comes from; use your office/VPN egress CIDR"))
            elif not cidr.is_global:
                problems.append((f"publicAccessCidrs[{i}]", f"{cidr} is not a public range, and the public endpoint "
                                                            "only sees public source addresses; use your office/VPN "
                                                            "egress CIDR"))
        if production and self.endpoint_public_access:
            problems.append(("endpointPublicAccess", "must be false in a production stack (got true); use a VPN"))
        for i, log_type in enumerate(self.log_types):
            if log_type not in CONTROL_PLANE_LOG_TYPES:
                problems.append((f"logTypes[{i}]", not_one_of(log_type, CONTROL_PLANE_LOG_TYPES)))
        if self.log_retention_days not in CLOUDWATCH_RETENTION_DAYS:
            problems.append(("logRetentionDays", "CloudWatch Logs " + not_one_of(
                str(self.log_retention_days), [str(d) for d in CLOUDWATCH_RETENTION_DAYS])))
        missing = {"api", "audit", "authenticator"} - set(self.log_types)
        if missing:
            problems.append(("logTypes", f"must include api, audit and authenticator (missing {sorted(missing)})"))
        if not self.deployer_role_arn:
            problems.append(("deployerRoleArn", "is required on an aws stack (got none): the IAM role that runs "
                                                "`pulumi up`, e.g. arn:aws:iam::ACCOUNT:role/modelplane-deployer "
                                                "(policy: docs/deployer-policy.json)"))
        for key, arn in [*((f"adminRoleArns[{i}]", a) for i, a in enumerate(self.admin_role_arns)),
                         *([("deployerRoleArn", self.deployer_role_arn)] if self.deployer_role_arn else [])]:
            if not ROLE_ARN.match(arn):
                problems.append((key, f"must be an IAM role ARN arn:aws:iam::ACCOUNT:role/NAME (got {arn!r})"))
        for i, arn in enumerate(self.admin_role_arns):
            if arn in self.admin_role_arns[:i]:
                # One access entry per principal (see below): a repeated role fails the deploy the same way.
                problems.append((f"adminRoleArns[{i}]", f"repeats adminRoleArns[{self.admin_role_arns.index(arn)}] "
                                                        f"(got {arn!r}); list each role once"))
        if self.deployer_role_arn in self.admin_role_arns:
            # EKS allows one access entry per principal: a second one for the same role fails the deploy.
            problems.append(("deployerRoleArn", f"is also in adminRoleArns (got {self.deployer_role_arn!r}); it gets "
                                                "its own access entry, so remove it from adminRoleArns"))
        return problems


class NodePoolConfig(Section):
    """An EKS managed node group (the system pool and other always-on CPU pools)."""

    name: str = Field(pattern=POOL_NAME)
    """Pool name; nodes are labelled modelplane.io/pool=<name>. Lowercase letters, digits, dashes."""
    instance_types: list[str] = Field(min_length=1)
    """EC2 instance types, in preference order. Valid values: the amd64 types without GPUs of
    infra/config/instances.yaml (the node groups run versions.SYSTEM_AMI_TYPE)."""
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    """ON_DEMAND or SPOT. Defaults to ON_DEMAND (the system pool must not be preempted)."""
    min_size: int = Field(ge=0)
    """Fewest nodes. At most 50 (limits.MAX_NODE_GROUP_SIZE) unless modelplane:limits.allowLarge is true."""
    desired_size: int = Field(ge=0)
    """Nodes at creation (then managed by autoscaling). At most 50 (limits.MAX_NODE_GROUP_SIZE) unless
    modelplane:limits.allowLarge is true."""
    max_size: int = Field(ge=1)
    """Most nodes. At most 50 (limits.MAX_NODE_GROUP_SIZE) unless modelplane:limits.allowLarge is true."""
    disk_size_gb: int = Field(default=50, ge=20, le=16384)
    """Encrypted gp3 root volume size in GiB. Defaults to 50."""
    labels: dict[str, str] = {}
    """Extra Kubernetes node labels."""

    def checks(self) -> list[tuple[str, str]]:
        """Instance types from the table; min ≤ desired ≤ max."""
        problems = [(f"instanceTypes[{i}]", message) for i, kind in enumerate(self.instance_types)
                    if (message := instances.instance_type_problem(kind, gpu=False))]
        if self.desired_size < self.min_size:
            problems.append(("desiredSize", f"must be >= minSize (got {self.desired_size} < {self.min_size})"))
        if self.desired_size > self.max_size:
            problems.append(("desiredSize", f"must be <= maxSize (got {self.desired_size} > {self.max_size})"))
        if self.max_size < self.min_size:
            problems.append(("maxSize", f"must be >= minSize (got {self.max_size} < {self.min_size})"))
        return problems
