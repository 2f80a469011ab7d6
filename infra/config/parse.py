"""Typed, validated stack config: `stacks/Pulumi.<stack>.yaml` → frozen pydantic models.

Each `modelplane:<section>` key is parsed on its own, so one bad section does not hide the
errors of another; then the cross-field rules of every section that parsed run, and finally
the rules that span sections. Every problem found is reported at once as a `ConfigError`
whose lines name the full key path (`modelplane:cluster.publicAccessCidrs[0]`), the value
and what is allowed. Nothing is registered with Pulumi until the whole config is valid.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from infra import versions
from infra.config.base import Section
from infra.config.errors import ConfigError, ConfigIssue
from infra.config.gpu import AddonsConfig, GpuPoolConfig, KarpenterConfig
from infra.config.platform import MeshConfig, ObservabilityConfig
from infra.config.workloads import InferenceConfig, TrainingConfig

NAMESPACE = "modelplane"
RESERVED_TAGS = frozenset({"environment", "managed-by", "project"})
"""Tag keys the platform sets itself; stack `tags` may not override them."""
REQUIRED_TAGS = ("owner", "cost-center")
"""Tag keys every stack must give (cost allocation), besides the reserved ones."""
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
"""Valid EKS control-plane log types."""
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "sts", "logs", "ec2", "elasticloadbalancing", "sqs", "kms")
"""VPC interface endpoint services a stack may ask for."""


_Section = Section


class FlowLogsConfig(_Section):
    """VPC flow logs to CloudWatch Logs."""

    enabled: bool = True
    """Whether VPC flow logs are on. Defaults to true."""
    retention_days: int = Field(default=30, ge=1, le=3653)
    """CloudWatch retention of the flow-log group, in days. Defaults to 30."""
    traffic_type: Literal["ACCEPT", "REJECT", "ALL"] = "ALL"
    """Which traffic to log. Defaults to ALL. Valid values: ACCEPT, REJECT, ALL."""


class NetworkConfig(_Section):
    """The VPC: one public, one private and optionally one intra subnet per AZ."""

    cidr: ipaddress.IPv4Network
    """VPC CIDR block, e.g. 10.0.0.0/16."""
    availability_zones: list[str]
    """AZ names, in subnet order. Valid: 2 to 6 distinct zones."""
    public_subnets: list[ipaddress.IPv4Network]
    """One public subnet CIDR per AZ (load balancers, NAT gateways)."""
    private_subnets: list[ipaddress.IPv4Network]
    """One private subnet CIDR per AZ (nodes, pods, caches)."""
    intra_subnets: list[ipaddress.IPv4Network] = []
    """Optional isolated subnets per AZ with no internet route (control-plane ENIs). Defaults to none."""
    nat_gateways: Literal["perAz", "single"] = "perAz"
    """NAT layout: one per AZ (zone-resilient) or a single shared one (cheaper). Defaults to perAz."""
    interface_endpoints: list[str] = []
    """VPC interface endpoints to create (S3 always gets a gateway endpoint). Defaults to none."""
    flow_logs: FlowLogsConfig = FlowLogsConfig()
    """VPC flow logs settings."""

    def checks(self) -> list[tuple[str, str]]:
        """Cross-field rules: AZ count, subnets per AZ, inside the VPC and disjoint."""
        problems: list[tuple[str, str]] = []
        zones = self.availability_zones
        if not 2 <= len(zones) <= 6:
            problems.append(("availabilityZones", f"must list 2 to 6 zones (got {len(zones)})"))
        if len(set(zones)) != len(zones):
            problems.append(("availabilityZones", f"zones must be distinct (got {zones})"))
        seen: list[tuple[str, ipaddress.IPv4Network]] = []
        for key in ("publicSubnets", "privateSubnets", "intraSubnets"):
            subnets: list[ipaddress.IPv4Network] = getattr(self, _snake(key))
            if subnets and len(subnets) != len(zones):
                problems.append((key, f"needs one CIDR per availability zone ({len(zones)}), got {len(subnets)}"))
            for i, subnet in enumerate(subnets):
                path = f"{key}[{i}]"
                if not subnet.subnet_of(self.cidr):
                    problems.append((path, f"must be inside network.cidr {self.cidr} (got {subnet})"))
                for other_path, other in seen:
                    if subnet.overlaps(other):
                        problems.append((path, f"overlaps network.{other_path} {other} (got {subnet})"))
                seen.append((path, subnet))
        for i, service in enumerate(self.interface_endpoints):
            if service not in INTERFACE_ENDPOINT_SERVICES:
                problems.append((f"interfaceEndpoints[{i}]", _not_one_of(service, INTERFACE_ENDPOINT_SERVICES)))
        return problems


class ClusterConfig(_Section):
    """The EKS control plane."""

    version: str = versions.EKS_DEFAULT_VERSION
    """Kubernetes version. Defaults to the pinned default in infra/versions.py."""
    endpoint_public_access: bool = False
    """Expose the API server publicly (still limited to publicAccessCidrs). Defaults to false."""
    public_access_cidrs: list[ipaddress.IPv4Network] = []
    """CIDRs allowed to reach a public endpoint. Required and non-empty when the endpoint is public."""
    admin_role_arns: list[str] = []
    """IAM role ARNs given cluster-admin through EKS access entries. Defaults to none."""
    log_types: list[str] = ["api", "audit", "authenticator"]
    """Control-plane log types sent to CloudWatch. Defaults to api, audit, authenticator."""
    log_retention_days: int = Field(default=90, ge=1, le=3653)
    """Retention of the control-plane log group, in days. Defaults to 90."""

    def checks(self, production: bool) -> list[tuple[str, str]]:
        """Cross-field rules: version, endpoint allowlist, log types, role ARNs."""
        problems: list[tuple[str, str]] = []
        if self.version not in versions.EKS_VERSIONS:
            problems.append(("version", _not_one_of(self.version, versions.EKS_VERSIONS)))
        if self.endpoint_public_access and not self.public_access_cidrs:
            problems.append((
                "publicAccessCidrs",
                "must list at least one CIDR when endpointPublicAccess is true (got []); "
                "add your office/VPN CIDR or set endpointPublicAccess: false",
            ))
        if not self.endpoint_public_access and self.public_access_cidrs:
            problems.append(("publicAccessCidrs", "has no effect unless endpointPublicAccess is true; remove it"))
        for i, cidr in enumerate(self.public_access_cidrs):
            if cidr.prefixlen == 0:
                where = "in a production stack" if production else "when it is the whole internet"
                if production:
                    problems.append((f"publicAccessCidrs[{i}]", f"0.0.0.0/0 is not allowed {where}; list specific CIDRs"))
                else:
                    problems.append((f"publicAccessCidrs[{i}]", "0.0.0.0/0 defeats the allowlist; list specific CIDRs"))
        if production and self.endpoint_public_access:
            problems.append(("endpointPublicAccess", "must be false in a production stack (got true); use a VPN"))
        for i, log_type in enumerate(self.log_types):
            if log_type not in CONTROL_PLANE_LOG_TYPES:
                problems.append((f"logTypes[{i}]", _not_one_of(log_type, CONTROL_PLANE_LOG_TYPES)))
        missing = {"api", "audit", "authenticator"} - set(self.log_types)
        if missing:
            problems.append(("logTypes", f"must include api, audit and authenticator (missing {sorted(missing)})"))
        for i, arn in enumerate(self.admin_role_arns):
            if not arn.startswith("arn:aws:iam::") or ":role/" not in arn:
                problems.append((f"adminRoleArns[{i}]", f"must be an IAM role ARN arn:aws:iam::ACCOUNT:role/NAME (got {arn!r})"))
        return problems


class NodePoolConfig(_Section):
    """An EKS managed node group (the system pool and other always-on CPU pools)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    """Pool name; nodes are labelled modelplane.io/pool=<name>. Lowercase letters, digits, dashes."""
    instance_types: list[str] = Field(min_length=1)
    """EC2 instance types, in preference order."""
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    """ON_DEMAND or SPOT. Defaults to ON_DEMAND (the system pool must not be preempted)."""
    min_size: int = Field(ge=0)
    """Fewest nodes."""
    desired_size: int = Field(ge=0)
    """Nodes at creation (then managed by autoscaling)."""
    max_size: int = Field(ge=1)
    """Most nodes."""
    disk_size_gb: int = Field(default=50, ge=20, le=16384)
    """Encrypted gp3 root volume size in GiB. Defaults to 50."""
    labels: dict[str, str] = {}
    """Extra Kubernetes node labels."""

    def checks(self) -> list[tuple[str, str]]:
        """min ≤ desired ≤ max."""
        problems = []
        if self.desired_size < self.min_size:
            problems.append(("desiredSize", f"must be >= minSize (got {self.desired_size} < {self.min_size})"))
        if self.desired_size > self.max_size:
            problems.append(("desiredSize", f"must be <= maxSize (got {self.desired_size} > {self.max_size})"))
        if self.max_size < self.min_size:
            problems.append(("maxSize", f"must be >= minSize (got {self.max_size} < {self.min_size})"))
        return problems


class StorageConfig(_Section):
    """The S3 model store: datasets, checkpoints and models buckets."""

    force_destroy: bool = False
    """Let `pulumi destroy` delete non-empty buckets. Defaults to false; only for throwaway stacks."""
    noncurrent_version_expiration_days: int = Field(default=30, ge=1)
    """Days before noncurrent checkpoint versions expire. Defaults to 30."""
    abort_incomplete_multipart_days: int = Field(default=7, ge=1)
    """Days before incomplete multipart uploads are aborted. Defaults to 7."""
    kms_deletion_window_days: int = Field(default=30, ge=7, le=30)
    """Waiting period before the store's KMS key is deleted. Defaults to 30. Valid: 7 to 30."""


class CacheConfig(_Section):
    """The ElastiCache Redis response cache."""

    enabled: bool = True
    """Create the cache. Defaults to true."""
    node_type: str = "cache.t4g.small"
    """ElastiCache node type. Defaults to cache.t4g.small."""
    num_nodes: int = Field(default=1, ge=1, le=6)
    """Primary plus replicas. Defaults to 1. Valid: 1 to 6."""
    automatic_failover: bool = False
    """Promote a replica when the primary fails; needs numNodes >= 2. Defaults to false."""
    multi_az: bool = False
    """Spread nodes across AZs; needs automaticFailover. Defaults to false."""
    engine_version: str = "7.1"
    """Redis engine version. Defaults to 7.1."""
    snapshot_retention_days: int = Field(default=0, ge=0, le=35)
    """Days of daily snapshots kept (0 = none). Defaults to 0."""

    def checks(self, production: bool) -> list[tuple[str, str]]:
        """Failover needs replicas; multi-AZ needs failover; production needs both."""
        problems = []
        if self.automatic_failover and self.num_nodes < 2:
            problems.append(("numNodes", f"must be >= 2 when automaticFailover is true (got {self.num_nodes})"))
        if self.multi_az and not self.automatic_failover:
            problems.append(("multiAz", "requires automaticFailover: true (got false)"))
        if production and self.enabled and not (self.multi_az and self.automatic_failover):
            problems.append(("multiAz", "must be true with automaticFailover in a production stack (got false)"))
        if not self.node_type.startswith("cache."):
            problems.append(("nodeType", f"must be an ElastiCache node type like cache.r7g.large (got {self.node_type!r})"))
        return problems


Target = Literal["aws", "kubeconfig"]


class PlatformConfig(_Section):
    """The whole stack's config (`modelplane:*` keys)."""

    stack: str
    """The stack name (also the `environment` tag)."""
    target: Target = "aws"
    """`aws` builds the full platform; `kubeconfig` targets an existing cluster with no AWS at all."""
    production: bool = False
    """Production strictness: private endpoint only, Redis failover, deletion protection. Defaults to false."""
    deletion_protection: bool = False
    """Protect stateful resources (Pulumi `protect`, EKS deletion protection). Defaults to false."""
    region: str | None = None
    """AWS region, from `aws:region`. Required when target is aws."""
    kube_context: str | None = None
    """kubeconfig context for target kubeconfig. Defaults to the current context."""
    network: NetworkConfig | None = None
    """The VPC. Required when target is aws."""
    cluster: ClusterConfig | None = None
    """The EKS cluster. Required when target is aws."""
    node_pools: list[NodePoolConfig] = []
    """Managed node groups; one must be named `system`. Required when target is aws."""
    storage: StorageConfig | None = None
    """The S3 model store. Defaults to the StorageConfig defaults when target is aws."""
    cache: CacheConfig | None = None
    """The Redis cache. Defaults to the CacheConfig defaults when target is aws."""
    gpu_pools: list[GpuPoolConfig] = []
    """Karpenter GPU NodePools (scale to zero). Defaults to none. AWS only."""
    karpenter: KarpenterConfig | None = None
    """The Karpenter controller and CPU NodePool. Defaults to the KarpenterConfig defaults when target is aws."""
    addons: AddonsConfig | None = None
    """GPU platform add-ons on/off. Defaults to the AddonsConfig defaults when target is aws."""
    mesh: MeshConfig = MeshConfig(enabled=False)
    """Istio. Defaults to on for target aws, off for kubeconfig."""
    observability: ObservabilityConfig = ObservabilityConfig(enabled=False)
    """Prometheus, Alertmanager, Grafana. Defaults to on for target aws, off for kubeconfig."""
    training: TrainingConfig = TrainingConfig()
    """Training jobs (PyTorchJob / TFJob). Defaults to none."""
    inference: InferenceConfig = InferenceConfig()
    """Inference services. Defaults to none."""
    tags: dict[str, str] = {}
    """Tags on every taggable AWS resource; must include owner and cost-center."""

    @property
    def is_aws(self) -> bool:
        """True when the stack builds AWS resources."""
        return self.target == "aws"


# Sections parsed one by one so each reports its own errors. The value is the model for one item
# (lists are parsed item by item for the same reason).
_SECTIONS: dict[str, type[_Section]] = {
    "network": NetworkConfig,
    "cluster": ClusterConfig,
    "nodePools": NodePoolConfig,
    "storage": StorageConfig,
    "cache": CacheConfig,
    "gpuPools": GpuPoolConfig,
    "karpenter": KarpenterConfig,
    "addons": AddonsConfig,
    "mesh": MeshConfig,
    "observability": ObservabilityConfig,
    "training": TrainingConfig,
    "inference": InferenceConfig,
}
_AWS_ONLY = ("network", "cluster", "nodePools", "storage", "cache", "gpuPools", "karpenter", "addons")
_SCALARS: dict[str, Callable[[Any], bool]] = {
    "target": lambda v: v in ("aws", "kubeconfig"),
    "production": lambda v: isinstance(v, bool),
    "deletionProtection": lambda v: isinstance(v, bool),
    "kubeContext": lambda v: isinstance(v, str) and bool(v),
    "tags": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
}
_SCALAR_HELP = {
    "target": "one of 'aws', 'kubeconfig'",
    "production": "true or false",
    "deletionProtection": "true or false",
    "kubeContext": "a non-empty kubeconfig context name",
    "tags": "a map of string keys to string values",
}
_KNOWN_KEYS = sorted({*_SECTIONS, *_SCALARS})

M = TypeVar("M", bound=_Section)


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _not_one_of(value: object, allowed: tuple[str, ...] | list[str]) -> str:
    hint = difflib.get_close_matches(str(value), list(allowed), n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"must be one of {', '.join(allowed)} (got {value!r}){suggestion}"


def _path(section: str, loc: tuple[int | str, ...]) -> str:
    out = f"{NAMESPACE}:{section}"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _pydantic_issues(
    section: str, model: type[_Section], exc: ValidationError, prefix: tuple[int | str, ...]
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            issues.append(ConfigIssue(_path(section, prefix + loc), _unknown_key_message(model, loc)))
            continue
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        issues.append(ConfigIssue(_path(section, prefix + loc), f"{err['msg']}{shown}"))
    return issues


def _unknown_key_message(model: type[_Section], loc: tuple[int | str, ...]) -> str:
    # Walk the model tree along loc to find which keys were allowed where the unknown one sat.
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        annotation = field.annotation if field else None
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    allowed = sorted(f.alias or n for n, f in current.model_fields.items()) if current else []
    key = str(loc[-1])
    hint = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown key {key!r}{suggestion} Allowed keys: {', '.join(allowed)}"


def _parse(
    section: str, model: type[M], value: Any, issues: list[ConfigIssue], loc: tuple[int | str, ...] = ()
) -> M | None:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        issues.extend(_pydantic_issues(section, model, exc, loc))
        return None


def _scoped(issues: list[ConfigIssue], prefix: str, problems: list[tuple[str, str]]) -> None:
    issues.extend(ConfigIssue(f"{NAMESPACE}:{prefix}.{key}", message) for key, message in problems)


def parse_config(stack: str, raw: Mapping[str, Any], *, source: str = "") -> PlatformConfig:
    """Parse a stack's config map (`{"modelplane:network": {...}, "aws:region": ...}`).

    Raises `ConfigError` listing every problem; returns a frozen `PlatformConfig` otherwise.
    """
    issues: list[ConfigIssue] = []
    ours: dict[str, Any] = {}
    for full_key, value in raw.items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        if key not in _SECTIONS and key not in _SCALARS:
            hint = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
            suggestion = f"; did you mean '{NAMESPACE}:{hint[0]}'?" if hint else ""
            issues.append(ConfigIssue(full_key, f"unknown key{suggestion} Allowed keys: {', '.join(_KNOWN_KEYS)}"))
            continue
        ours[key] = value

    for key, check in _SCALARS.items():
        if key in ours and not check(ours[key]):
            issues.append(ConfigIssue(f"{NAMESPACE}:{key}", f"must be {_SCALAR_HELP[key]} (got {ours[key]!r})"))

    target = ours.get("target", "aws")
    production = ours.get("production") is True
    region = raw.get("aws:region")
    fields: dict[str, Any] = {k: v for k, v in ours.items() if k in _SCALARS}

    if target == "kubeconfig":
        for key in _AWS_ONLY:
            if key in ours:
                issues.append(ConfigIssue(f"{NAMESPACE}:{key}", "has no effect with target 'kubeconfig' (no AWS); remove it"))
    elif target == "aws":
        if not isinstance(region, str) or not region:
            issues.append(ConfigIssue("aws:region", "is required when modelplane:target is 'aws' (e.g. us-east-1)"))
        for key in ("network", "cluster", "nodePools"):
            if key not in ours:
                issues.append(ConfigIssue(f"{NAMESPACE}:{key}", "is required when modelplane:target is 'aws'"))
        fields.update(_parse_sections(ours, production, issues))

    if target in ("aws", "kubeconfig"):
        fields.update(_parse_platform_services(ours, target == "aws", production, issues))

    if target in ("aws", "kubeconfig"):
        gpu_pool_names = {p.name for p in fields.get("gpu_pools", [])}
        fields.update(_parse_workloads(ours, gpu_pool_names, issues))

    if "tags" in ours and isinstance(ours["tags"], dict):
        _check_tags(ours["tags"], issues)
    elif target == "aws":
        issues.append(ConfigIssue(f"{NAMESPACE}:tags", f"is required and must include {', '.join(REQUIRED_TAGS)}"))

    if issues:
        raise ConfigError(issues, source=source)
    return PlatformConfig.model_validate({**fields, "stack": stack, "region": region})


def _parse_workloads(ours: dict[str, Any], gpu_pools: set[str], issues: list[ConfigIssue]) -> dict[str, Any]:
    """`training.jobs` and `inference.services`: per-item rules, unique names, GPU pools that exist."""
    fields: dict[str, Any] = {}
    for key, model, items_key in (("training", TrainingConfig, "jobs"), ("inference", InferenceConfig, "services")):
        parsed = _parse(key, model, ours.get(key, {}), issues)
        if parsed is None:
            continue
        fields[key] = parsed
        seen: dict[str, int] = {}
        for i, item in enumerate(getattr(parsed, items_key)):
            prefix = f"{key}.{items_key}[{i}]"
            _scoped(issues, prefix, item.checks())
            if item.name in seen:
                issues.append(ConfigIssue(f"{NAMESPACE}:{prefix}.name",
                                          f"duplicate name {item.name!r} (also {items_key}[{seen[item.name]}])"))
            seen.setdefault(item.name, i)
            if item.gpu_pool and item.gpu_pool not in gpu_pools:
                allowed = ", ".join(sorted(gpu_pools)) or "none configured"
                issues.append(ConfigIssue(f"{NAMESPACE}:{prefix}.gpuPool",
                                          f"no gpuPools entry named {item.gpu_pool!r} (gpuPools: {allowed})"))
    return fields


def _parse_sections(ours: dict[str, Any], production: bool, issues: list[ConfigIssue]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("network", "cluster", "storage", "cache"):
        value = ours.get(key, {} if key in ("storage", "cache") else None)
        if value is None:
            continue
        parsed = _parse(key, _SECTIONS[key], value, issues)
        if parsed is None:
            continue
        fields[key] = parsed
        if isinstance(parsed, NetworkConfig):
            _scoped(issues, key, parsed.checks())
        elif isinstance(parsed, (ClusterConfig, CacheConfig)):
            _scoped(issues, key, parsed.checks(production))
    pools = ours.get("nodePools")
    if pools is not None:
        fields["node_pools"] = _parse_pools(pools, issues)
    fields.update(_parse_gpu_platform(ours, production, [p.name for p in fields.get("node_pools", [])], issues))
    return fields


def _parse_gpu_platform(ours: dict[str, Any], production: bool, node_pool_names: list[str],
                        issues: list[ConfigIssue]) -> dict[str, Any]:
    """`karpenter`, `addons` and the `gpuPools` table; pool names are unique across nodePools, cpuPool and gpuPools."""
    fields: dict[str, Any] = {}
    taken = {name: "nodePools" for name in node_pool_names}
    karpenter = _parse("karpenter", KarpenterConfig, ours.get("karpenter", {}), issues)
    if karpenter is not None:
        fields["karpenter"] = karpenter
        _scoped(issues, "karpenter", karpenter.checks())
        cpu_pool = karpenter.cpu_pool
        if cpu_pool.enabled and cpu_pool.name in taken:
            issues.append(ConfigIssue(f"{NAMESPACE}:karpenter.cpuPool.name",
                                      f"duplicate pool name {cpu_pool.name!r} (also in nodePools)"))
        elif cpu_pool.enabled:
            taken[cpu_pool.name] = "karpenter.cpuPool"
    addons = _parse("addons", AddonsConfig, ours.get("addons", {}), issues)
    if addons is not None:
        fields["addons"] = addons
        _scoped(issues, "addons", addons.checks())
    pools = ours.get("gpuPools", [])
    if not isinstance(pools, list):
        issues.append(ConfigIssue(f"{NAMESPACE}:gpuPools", f"must be a list of GPU pools (got {pools!r})"))
        return fields
    parsed_pools: list[GpuPoolConfig] = []
    for i, item in enumerate(pools):
        pool = _parse("gpuPools", GpuPoolConfig, item, issues, loc=(i,))
        if pool is None:
            continue
        _scoped(issues, f"gpuPools[{i}]", pool.checks(production))
        if pool.name in taken:
            issues.append(ConfigIssue(f"{NAMESPACE}:gpuPools[{i}].name",
                                      f"duplicate pool name {pool.name!r} (also in {taken[pool.name]})"))
        taken.setdefault(pool.name, f"gpuPools[{i}]")
        parsed_pools.append(pool)
    fields["gpu_pools"] = parsed_pools
    return fields


def _parse_platform_services(ours: dict[str, Any], default_on: bool, production: bool,
                             issues: list[ConfigIssue]) -> dict[str, Any]:
    """`mesh` and `observability`, on every target; `enabled` defaults to on for aws, off for kubeconfig."""
    fields: dict[str, Any] = {}
    for key, model in (("mesh", MeshConfig), ("observability", ObservabilityConfig)):
        value = ours.get(key, {})
        if isinstance(value, dict):
            value = {"enabled": default_on, **value}
        parsed = _parse(key, model, value, issues)
        if isinstance(parsed, (MeshConfig, ObservabilityConfig)):
            fields[key] = parsed
            _scoped(issues, key, parsed.checks(production))
    return fields


def _parse_pools(pools: Any, issues: list[ConfigIssue]) -> list[NodePoolConfig]:
    if not isinstance(pools, list) or not pools:
        issues.append(ConfigIssue(f"{NAMESPACE}:nodePools", f"must be a non-empty list of pools (got {pools!r})"))
        return []
    parsed_pools: list[NodePoolConfig] = []
    names: dict[str, int] = {}
    for i, item in enumerate(pools):
        pool = _parse("nodePools", NodePoolConfig, item, issues, loc=(i,))
        if pool is None:
            continue
        _scoped(issues, f"nodePools[{i}]", pool.checks())
        if pool.name in names:
            issues.append(ConfigIssue(f"{NAMESPACE}:nodePools[{i}].name",
                                      f"duplicate pool name {pool.name!r} (also nodePools[{names[pool.name]}])"))
        names.setdefault(pool.name, i)
        parsed_pools.append(pool)
    if parsed_pools and "system" not in names and len(parsed_pools) == len(pools):
        issues.append(ConfigIssue(f"{NAMESPACE}:nodePools", "must include a pool named 'system' (runs cluster add-ons)"))
    return parsed_pools


def _check_tags(tags: dict[str, Any], issues: list[ConfigIssue]) -> None:
    for key in tags:
        if key in RESERVED_TAGS:
            issues.append(ConfigIssue(f"{NAMESPACE}:tags.{key}", "is set by modelplane itself; remove it"))
    for key in REQUIRED_TAGS:
        if not tags.get(key):
            issues.append(ConfigIssue(f"{NAMESPACE}:tags.{key}", "is required (cost allocation); add it to the stack's tags"))


def from_pulumi_runtime(stack: str) -> PlatformConfig:
    """The stack's config as the Pulumi engine hands it to a real `pulumi up` (JSON strings for objects)."""
    from pulumi.runtime.config import CONFIG, get_config_env

    raw: dict[str, Any] = {**get_config_env(), **CONFIG.get()}
    return parse_config(stack, {key: _decode(value) for key, value in raw.items()})


def _decode(value: Any) -> Any:
    import json

    if (isinstance(value, str) and value[:1] in ("{", "[")) or value in ("true", "false"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
