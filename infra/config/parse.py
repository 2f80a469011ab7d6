"""Typed, validated stack config: `stacks/Pulumi.<stack>.yaml` → frozen pydantic models.

Each `modelplane:<section>` key is parsed on its own, so one bad section does not hide the
errors of another; then the cross-field rules of every section that parsed run, and finally
the rules that span sections. Every problem found is reported at once as a `ConfigError`
whose lines name the full key path (`modelplane:cluster.publicAccessCidrs[0]`), the value
and what is allowed. Nothing is registered with Pulumi until the whole config is valid.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from infra.config.base import Section
from infra.config.checks import stack_issues
from infra.config.cluster import SYSTEM_POOL, ClusterConfig, NodePoolConfig
from infra.config.errors import ConfigError, ConfigIssue
from infra.config.gpu import AddonsConfig, GpuPoolConfig, KarpenterConfig
from infra.config.issues import NAMESPACE, pydantic_issues
from infra.config.limits import LimitsConfig
from infra.config.logging import LoggingConfig
from infra.config.network import NetworkConfig
from infra.config.platform import MeshConfig, ObservabilityConfig
from infra.config.recommend import RecommendConfig
from infra.config.registry import RegistryConfig, parse_registry
from infra.config.storage import CacheConfig, StorageConfig
from infra.config.streaming import StreamingConfig
from infra.config.teams import TeamConfig
from infra.config.workloads import InferenceConfig, TrainingConfig

RESERVED_TAGS = frozenset({"environment", "managed-by", "project"})
"""Tag keys the platform sets itself; stack `tags` may not override them."""
REQUIRED_TAGS = ("owner", "cost-center")
"""Tag keys every stack must give (cost allocation), besides the reserved ones."""

Target = Literal["aws", "kubeconfig"]


class PlatformConfig(Section):
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
    storage: StorageConfig = StorageConfig()
    """The S3 model store (target aws). Defaults to the StorageConfig defaults."""
    cache: CacheConfig = CacheConfig()
    """The Redis cache (target aws). Defaults to the CacheConfig defaults."""
    gpu_pools: list[GpuPoolConfig] = []
    """Karpenter GPU NodePools (scale to zero). Defaults to none. AWS only."""
    karpenter: KarpenterConfig = KarpenterConfig()
    """The Karpenter controller and CPU NodePool (target aws). Defaults to the KarpenterConfig defaults."""
    addons: AddonsConfig = AddonsConfig()
    """Platform add-ons on/off; kubeconfig stacks may set only trainer. Defaults to the AddonsConfig defaults."""
    mesh: MeshConfig = MeshConfig()
    """Istio. Defaults to on for target aws, off for kubeconfig."""
    observability: ObservabilityConfig = ObservabilityConfig()
    """Prometheus, Alertmanager, Grafana. Defaults to on for target aws, off for kubeconfig."""
    logging: LoggingConfig = LoggingConfig()
    """Fluent Bit to CloudWatch Logs (and OpenSearch). Defaults to on for target aws, off for kubeconfig."""
    streaming: StreamingConfig = StreamingConfig()
    """Kafka (MSK on aws, in-cluster on kubeconfig) and its topics. Defaults to on for target aws, off for kubeconfig."""
    training: TrainingConfig = TrainingConfig()
    """Training jobs (TrainJob / JobSet) and their group restart policy. Defaults to none."""
    inference: InferenceConfig = InferenceConfig()
    """Inference services. Defaults to none."""
    teams: list[TeamConfig] = []
    """Teams sharing the fleet through Kueue queues and quotas (infra/config/teams.py). Defaults to none."""
    recommend: RecommendConfig = RecommendConfig()
    """The recommendation stream processor (needs streaming and a Redis). Defaults to off."""
    registry: RegistryConfig = RegistryConfig()
    """ECR repositories for our images and how workloads pull them (target aws). Defaults to RegistryConfig's."""
    tags: dict[str, str] = {}
    """Tags on every taggable AWS resource; must include owner and cost-center."""
    limits: LimitsConfig = LimitsConfig()
    """Whether the stack may go past the upper bounds of infra/config/limits.py. Defaults to within them."""

    @property
    def is_aws(self) -> bool:
        """True when the stack builds AWS resources."""
        return self.target == "aws"


# Sections parsed one by one so each reports its own errors. The value is the model for one item
# (lists are parsed item by item for the same reason).
_SECTIONS: dict[str, type[Section]] = {
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
    "logging": LoggingConfig,
    "streaming": StreamingConfig,
    "training": TrainingConfig,
    "inference": InferenceConfig,
    "recommend": RecommendConfig,
    "registry": RegistryConfig,
    "limits": LimitsConfig,
    "teams": TeamConfig,
}
_AWS_ONLY = ("network", "cluster", "nodePools", "storage", "cache", "gpuPools", "karpenter", "registry")
_KUBECONFIG_ADDONS = ("trainer",)
"""The `addons` keys that apply to a kubeconfig stack (the others install onto GPU nodes, which only aws has)."""
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

M = TypeVar("M", bound=Section)


def _parse(
    section: str, model: type[M], value: Any, issues: list[ConfigIssue], loc: tuple[int | str, ...] = ()
) -> M | None:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        issues.extend(pydantic_issues(section, model, exc, loc))
        return None


def _scoped(issues: list[ConfigIssue], prefix: str, problems: list[tuple[str, str]]) -> None:
    issues.extend(ConfigIssue(f"{NAMESPACE}:{prefix}.{key}", message) for key, message in problems)


def parse_config(stack: str, raw: Mapping[str, Any], *, source: str = "",
                 secret_keys: Collection[str] = ()) -> PlatformConfig:
    """Parse a stack's config map (`{"modelplane:network": {...}, "aws:region": ...}`); `secret_keys` are the keys
    Pulumi holds as secrets (a stack file shows them as `secure:` values instead).

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
        fields.update(_parse_kubeconfig_addons(ours, issues))
    elif target == "aws":
        if not isinstance(region, str) or not region:
            issues.append(ConfigIssue("aws:region", "is required when modelplane:target is 'aws' (e.g. us-east-1)"))
        for key in ("network", "cluster", "nodePools"):
            if key not in ours:
                issues.append(ConfigIssue(f"{NAMESPACE}:{key}", "is required when modelplane:target is 'aws' (got "
                                          f"no {NAMESPACE}:{key}); add a {NAMESPACE}:{key} section to the stack"))
        fields.update(_parse_sections(ours, production, issues))

    if target in ("aws", "kubeconfig"):
        fields.update(_parse_platform_services(ours, target == "aws", production, issues))

    streaming, network = fields.get("streaming"), fields.get("network")
    if streaming and network and streaming.enabled and streaming.zones > len(network.availability_zones):
        issues.append(ConfigIssue(f"{NAMESPACE}:streaming.zones", f"must not exceed network.availabilityZones "
                                  f"({len(network.availability_zones)}) (got {streaming.zones}); lower it or add a zone"))

    if target in ("aws", "kubeconfig"):
        gpu_pools = {p.name: p for p in fields.get("gpu_pools", [])}
        fields.update(_parse_workloads(ours, gpu_pools, issues))
        redis = target == "kubeconfig" or fields.get("cache", CacheConfig()).enabled  # kubeconfig: in-cluster Redis
        for i, svc in enumerate(fields["inference"].services if "inference" in fields else []):
            _scoped(issues, f"inference.services[{i}]", svc.stack_problems(has_cache=redis))
        recommend = _parse("recommend", RecommendConfig, ours.get("recommend", {}), issues)
        if recommend is not None:
            fields["recommend"] = recommend
            _scoped(issues, "recommend", recommend.checks(fields.get("streaming"), has_cache=redis))
        # Trainers, model servers (and their gateway), the processor and the topics Job all run our images.
        uses = (("training", "jobs"), ("inference", "services"), ("recommend", "enabled"), ("streaming", "topics"))
        runs_ours = any(getattr(fields.get(section), attr, None) for section, attr in uses)
        if target == "aws" and (registry := parse_registry(ours.get("registry", {}), runs_our_images=runs_ours,
                                                           issues=issues)):
            fields["registry"] = registry

    if "tags" in ours and isinstance(ours["tags"], dict):
        _check_tags(ours["tags"], issues)
    elif target == "aws" and "tags" not in ours:
        issues.append(ConfigIssue(f"{NAMESPACE}:tags", f"is required and must include {', '.join(REQUIRED_TAGS)}; add a "
                                                       f"{NAMESPACE}:tags map to the stack"))

    issues += stack_issues(stack, raw, ours, fields, secret_keys=secret_keys,
                           schema={**_SECTIONS, **dict.fromkeys(_SCALARS)})
    if issues:
        raise ConfigError(issues, source=source)
    return PlatformConfig.model_validate({**fields, "stack": stack, "region": region})


def _parse_workloads(ours: dict[str, Any], gpu_pools: dict[str, GpuPoolConfig],
                     issues: list[ConfigIssue]) -> dict[str, Any]:
    """`training.jobs` and `inference.services`: per-item rules, unique names, GPU pools that exist, workloads that
    fit their pool."""
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
            elif item.gpu_pool:
                _scoped(issues, prefix, item.fit_problems(gpu_pools[item.gpu_pool]))
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


def _parse_platform_services(ours: dict[str, Any], is_aws: bool, production: bool,
                             issues: list[ConfigIssue]) -> dict[str, Any]:
    """`mesh`, `observability`, `logging` and `streaming`, on every target; `enabled` left unset is on for aws, off
    for kubeconfig."""
    fields: dict[str, Any] = {}
    for key, model in (("mesh", MeshConfig), ("observability", ObservabilityConfig), ("logging", LoggingConfig),
                       ("streaming", StreamingConfig)):
        parsed = _parse(key, model, ours.get(key, {}), issues)
        if isinstance(parsed, (MeshConfig, ObservabilityConfig, LoggingConfig, StreamingConfig)):
            if parsed.enabled is None:
                parsed = parsed.model_copy(update={"enabled": is_aws})
            fields[key] = parsed
            _scoped(issues, key, parsed.checks(production, is_aws) if isinstance(parsed, (LoggingConfig, StreamingConfig))
                    else parsed.checks(production))
    return fields


def _parse_kubeconfig_addons(ours: dict[str, Any], issues: list[ConfigIssue]) -> dict[str, Any]:
    """`addons` on a kubeconfig stack: only the keys in `_KUBECONFIG_ADDONS`."""
    value = ours.get("addons", {})
    if isinstance(value, dict):
        for key in value:
            if key not in _KUBECONFIG_ADDONS and key not in AddonsConfig.MOVED_KEYS:
                issues.append(ConfigIssue(f"{NAMESPACE}:addons.{key}", f"has no effect with target 'kubeconfig' (only "
                                                                       f"{', '.join(_KUBECONFIG_ADDONS)} applies); "
                                                                       "remove it"))
        # A moved key stays in, so the model reports where it went.
        value = {key: v for key, v in value.items() if key in _KUBECONFIG_ADDONS or key in AddonsConfig.MOVED_KEYS}
    addons = _parse("addons", AddonsConfig, value, issues)
    return {"addons": addons} if addons is not None else {}


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
    if parsed_pools and SYSTEM_POOL not in names and len(parsed_pools) == len(pools):
        issues.append(ConfigIssue(f"{NAMESPACE}:nodePools", f"must include a pool named {SYSTEM_POOL!r} (runs cluster "
                                                            f"add-ons; got {sorted(names)}); add one or rename a pool"))
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
    from pulumi.runtime.config import CONFIG, get_config_env, get_config_secret_keys_env, is_config_secret

    raw: dict[str, Any] = {**get_config_env(), **CONFIG.get()}
    secret = {*get_config_secret_keys_env(), *(key for key in raw if is_config_secret(key))}
    return parse_config(stack, {key: _decode(value) for key, value in raw.items()}, secret_keys=secret)


def _decode(value: Any) -> Any:
    import json

    if (isinstance(value, str) and value[:1] in ("{", "[")) or value in ("true", "false"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
