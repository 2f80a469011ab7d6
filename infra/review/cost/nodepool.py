"""NodePool pricing: which instance types a Karpenter NodePool's requirements admit, and the pool at its limit.

NodePools scale from zero, so a pool's ceiling is the pool at its limit (GPUs for a GPU pool, else
vCPUs) filled with the admitted instance type that makes that ceiling most expensive: nothing stops
Karpenter from choosing it. Karpenter never launches a node that would take the pool past its limits
(kubernetes-sigs/karpenter pkg/controllers/provisioning/scheduling, `filterByRemainingResources`), so a
type fills a pool with floor(limit / its size) nodes and a type larger than the limit is never launched.
Requirements are matched against the instance types of the price table, using the labels Karpenter
gives each type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from infra.review.cost.prices import InstancePrice, PriceTable
from policies.kube import is_gpu_nodepool, nodepool_limits, requirements
from policies.wire import as_list, quantity
from workloads.common.vocab import GPU_RESOURCE

_FAMILY: Final = re.compile(r"^(?P<category>[a-z]+)(?P<generation>[0-9]+)(?P<options>[a-z0-9-]*)$")


@dataclass(frozen=True)
class PoolCeiling:
    """A NodePool at its limit, filled with its most expensive admitted instance type."""

    gpu_pool: bool
    """True for a GPU NodePool: only GPU instance types fill it and its GPU limit bounds it."""
    unknown: tuple[str, ...]
    """Instance families (`g9.*`) and types the pool asks for that the price table lacks."""
    limit: str | None
    """The limit that bounds the pool, e.g. `8 GPU limit`; None when none does (the pool is unbounded)."""
    instance_type: str | None = None
    """The instance type that makes the pool at its limit most expensive; None when no type in the table fits."""
    nodes: int = 0
    """Nodes of `instance_type` at the limit."""
    hourly: float = 0.0
    """On-demand hourly price of one `instance_type` node."""


def pool_ceiling(props: Mapping[str, Any], prices: PriceTable) -> PoolCeiling:
    """The pool described by NodePool inputs `props`, at its limit."""
    gpu_pool = is_gpu_nodepool(props)
    candidates = {k: s for k, s in prices.ec2.items()
                  if (s.gpus > 0 or not gpu_pool) and all(admits(k, s, req) for req in requirements(props))}
    unknown = tuple(unknown_names(props, prices))
    limits = nodepool_limits(props)
    gpu_limit, cpu_limit = quantity(limits.get(GPU_RESOURCE)), quantity(limits.get("cpu"))
    if (gpu_pool and not gpu_limit) or (not gpu_pool and not cpu_limit):
        return PoolCeiling(gpu_pool=gpu_pool, unknown=unknown, limit=None)
    limit = f"{int(gpu_limit)} GPU limit" if gpu_pool and gpu_limit else f"{int(cpu_limit or 0)} vCPU limit"

    def nodes(spec: InstancePrice) -> int:
        bounds = [math.floor(gpu_limit / spec.gpus)] if gpu_pool and gpu_limit else []
        if cpu_limit:
            bounds.append(math.floor(cpu_limit / spec.vcpu))
        return min(bounds)

    fitting = {k: spec for k, spec in candidates.items() if nodes(spec) >= 1}
    if not fitting:
        return PoolCeiling(gpu_pool=gpu_pool, unknown=unknown, limit=limit)
    kind = max(fitting, key=lambda k: (nodes(fitting[k]) * fitting[k].hourly, k))
    return PoolCeiling(gpu_pool=gpu_pool, unknown=unknown, limit=limit, instance_type=kind,
                       nodes=nodes(candidates[kind]), hourly=candidates[kind].hourly)


def _numeric_ok(value: float, operator: str, targets: list[float]) -> bool:
    checks = {"In": lambda: value in targets, "NotIn": lambda: value not in targets,
              "Gt": lambda: value > targets[0], "Lt": lambda: value < targets[0],
              "Gte": lambda: value >= targets[0], "Lte": lambda: value <= targets[0]}
    return checks.get(operator, lambda: True)()


def admits(kind: str, spec: InstancePrice, req: Mapping[str, Any]) -> bool:
    """True when one NodePool requirement admits this instance type (requirements on other keys admit all)."""
    family, _, size = kind.partition(".")
    parts = _FAMILY.match(family)
    category, generation, options = (parts["category"], int(parts["generation"]), parts["options"]) if parts else ("", 0, "")
    arch = "arm64" if "g" in options else "amd64"  # Graviton families carry a g after the generation (m7g, c7gn, g5g)
    key, operator = str(req.get("key")), str(req.get("operator"))
    values = [str(v) for v in as_list(req.get("values"))]
    labels: dict[str, str | float] = {
        "node.kubernetes.io/instance-type": kind, "karpenter.k8s.aws/instance-family": family,
        "karpenter.k8s.aws/instance-category": category, "karpenter.k8s.aws/instance-size": size,
        "karpenter.k8s.aws/instance-generation": generation, "karpenter.k8s.aws/instance-cpu": spec.vcpu,
        "karpenter.k8s.aws/instance-memory": spec.memory_gib * 1024, "karpenter.k8s.aws/instance-gpu-count": spec.gpus,
        "karpenter.k8s.aws/instance-gpu-name": spec.gpu or "", "kubernetes.io/arch": arch,
        "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia" if spec.gpus else "",
    }
    if key not in labels:
        return True  # zones, OS, capacity type: not a property of the instance type
    label = labels[key]
    if operator == "Exists":
        return label not in ("", 0)
    if operator == "DoesNotExist":
        return label in ("", 0)
    if isinstance(label, str):
        return (label in values) if operator == "In" else (label not in values) if operator == "NotIn" else True
    return _numeric_ok(float(label), operator, [float(v) for v in values])


def unknown_names(props: Mapping[str, Any], prices: PriceTable) -> list[str]:
    """Families and types a pool asks for that the table does not know: reported, never silently dropped."""
    known_families = {k.partition(".")[0] for k in prices.ec2}
    unknown = []
    for req in requirements(props):
        if req.get("operator") != "In":
            continue
        if req.get("key") == "node.kubernetes.io/instance-type":
            unknown += [str(v) for v in as_list(req.get("values")) if str(v) not in prices.ec2]
        elif req.get("key") == "karpenter.k8s.aws/instance-family":
            unknown += [f"{v}.*" for v in as_list(req.get("values")) if str(v) not in known_families]
    return unknown
