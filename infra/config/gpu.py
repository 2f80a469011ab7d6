"""Stack config for the GPU platform: `modelplane:gpuPools`, `modelplane:karpenter` and `modelplane:addons`.

Kept apart from the base platform sections so each module stays one concern; parsing and error
reporting are the same: frozen pydantic models, camelCase keys, key-path errors collected and
reported at once. Valid values and patterns come from infra/config/karpenter.py, which cites the
Karpenter CRDs they mirror. `GpuNodePools` (infra/k8s/gpu.py) takes these models as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from infra.config import instances, karpenter
from infra.config.base import POOL_NAME, Section, cpu_problems, memory_problems, not_one_of

_SCRAPE_INTERVAL = re.compile(r"^([0-9]+)(s|m)$")
_MAX_DCGM_SCRAPE_SECONDS = 60
"""Longest DCGM scrape interval: the GPU rules (infra/k8s/rules/gpu.yaml) need several samples inside Prometheus's
5-minute lookback (a missed scrape must not end a `for: 5m`/`30m` and reset it) and inside GPUXidError's
`changes(...[15m])` window; 1m leaves 5 and 15 samples."""


def _capacity_problems(capacity_types: list[str]) -> list[tuple[str, str]]:
    if not capacity_types:
        return [("capacityTypes", f"must list at least one of {', '.join(karpenter.CAPACITY_TYPES)} (got [])")]
    return [(f"capacityTypes[{i}]", not_one_of(value, karpenter.CAPACITY_TYPES))
            for i, value in enumerate(capacity_types) if value not in karpenter.CAPACITY_TYPES]


def _duration_problems(**durations: str) -> list[tuple[str, str]]:
    problems = []
    for key, value in durations.items():
        pattern = karpenter.GRACE_PERIOD if key == "terminationGracePeriod" else karpenter.DURATION
        if not pattern.match(value):
            allowed = "like 30s, 10m, 1h30m" + ("" if key == "terminationGracePeriod" else " or Never")
            problems.append((key, f"must be a duration {allowed} (got {value!r})"))
    return problems


class GpusPerNodeConfig(Section):
    """Bounds on the GPUs of one node (Karpenter's instance-gpu-count requirement)."""

    min: int = Field(default=1, ge=1, le=16)
    """Fewest GPUs per node. Defaults to 1."""
    max: int = Field(default=8, ge=1, le=16)
    """Most GPUs per node. Defaults to 8."""


class GpuPoolConfig(Section):
    """One GPU NodePool: which instances, how they are bought, how many GPUs in total, how nodes are recycled."""

    name: str = Field(pattern=POOL_NAME)
    """Pool name; nodes get modelplane.io/pool=<name> and modelplane.io/gpu-pool=<name>. Lowercase, digits, dashes."""
    purpose: Literal["training", "inference"] = "training"
    """What runs here. Defaults to training. Valid values: training, inference (production: on-demand only)."""
    instance_families: list[str] = []
    """EC2 instance families, e.g. [g6, g6e]. Set this or instanceTypes. Valid values: the GPU families of
    infra/config/instances.yaml."""
    instance_types: list[str] = []
    """EC2 instance types, e.g. [g6.12xlarge]. Set this or instanceFamilies. Valid values: the GPU types of
    infra/config/instances.yaml."""
    capacity_types: list[str] = ["on-demand"]
    """How nodes are bought. Defaults to [on-demand]. Valid values: spot, on-demand."""
    gpus_per_node: GpusPerNodeConfig = GpusPerNodeConfig()
    """GPUs per node bounds. Defaults to 1..8."""
    gpu_limit: int
    """Total nvidia.com/gpu the pool may hold (NodePool limits). Required; > 0 and >= gpusPerNode.min; at most 64
    (limits.MAX_POOL_GPUS) unless modelplane:limits.allowLarge is true."""
    cpu_limit: int | None = Field(default=None, ge=1)
    """Total vCPUs the pool may hold. Defaults to no CPU limit (the GPU limit bounds the pool). At most 1024
    (limits.MAX_POOL_VCPUS) unless modelplane:limits.allowLarge is true."""
    memory_limit: str | None = None
    """Total memory the pool may hold, e.g. 4Ti. Defaults to no memory limit."""
    ami_family: karpenter.AmiFamily = "al2023"
    """AMI family; Karpenter picks its NVIDIA variant for GPU instances. Defaults to al2023."""
    disk_size_gb: int = Field(default=200, ge=50, le=16384)
    """Encrypted gp3 volume for images and containers, in GiB. Defaults to 200 (CUDA images are large)."""
    consolidation_policy: karpenter.ConsolidationPolicy = "WhenEmpty"
    """Which nodes Karpenter may consolidate. Defaults to WhenEmpty (never repack running GPU work)."""
    consolidate_after: str = "10m"
    """How long a node must be consolidatable before Karpenter acts. Defaults to 10m."""
    expire_after: str = "720h"
    """Maximum node lifetime. Defaults to 720h. Valid: a duration or Never."""
    termination_grace_period: str = "24h"
    """How long a draining node may wait on do-not-disrupt pods before it is terminated. Defaults to 24h."""
    disruption_budget: str = "10%"
    """Nodes that may be voluntarily disrupted at once: a count or a percentage. Defaults to 10%."""
    weight: int = Field(default=10, ge=1, le=100)
    """Priority among pools that fit a pod (higher first). Defaults to 10. Valid: 1 to 100."""
    time_slicing_replicas: int | None = Field(default=None, ge=2, le=64)
    """Share each GPU between this many pods (NVIDIA time-slicing; al2023 only). Defaults to no sharing."""

    def checks(self, production: bool) -> list[tuple[str, str]]:
        """Capacity types, instance lists, GPU bounds and limit, durations, budget, production on-demand."""
        problems = _capacity_problems(self.capacity_types)
        instance_problems = self._instance_problems()
        problems += instance_problems
        gpus = self.gpus_per_node
        counts = instances.gpu_counts(self.instance_families or self.instance_types)
        if gpus.max < gpus.min:
            problems.append(("gpusPerNode.max", f"must be >= gpusPerNode.min (got {gpus.max} < {gpus.min})"))
        elif not instance_problems and not any(gpus.min <= n <= gpus.max for n in counts):
            problems.append(("gpusPerNode", f"admits none of the pool's instance types (got {gpus.min} to {gpus.max}; "
                                            f"they have {', '.join(map(str, counts))} GPUs); the pool could never "
                                            "launch a node"))
        if self.gpu_limit <= 0:
            problems.append(("gpuLimit", f"must be > 0 (got {self.gpu_limit}); it caps the pool's total nvidia.com/gpu"))
        elif self.gpu_limit < gpus.min:
            problems.append(("gpuLimit", f"must be >= gpusPerNode.min (got {self.gpu_limit} < {gpus.min}); "
                                         "the pool could never launch a node"))
        problems += _duration_problems(consolidateAfter=self.consolidate_after, expireAfter=self.expire_after,
                                       terminationGracePeriod=self.termination_grace_period)
        if not karpenter.BUDGET_NODES.match(self.disruption_budget):
            problems.append(("disruptionBudget", f"must be a node count like 1 or a percentage like 10% "
                                                 f"(got {self.disruption_budget!r})"))
        if self.memory_limit is not None:
            problems += memory_problems("memoryLimit", self.memory_limit, "2048Gi")
        if self.time_slicing_replicas is not None and self.ami_family == "bottlerocket":
            problems.append(("timeSlicingReplicas", "is not supported with amiFamily bottlerocket (its built-in "
                                                    "device plugin is set through Bottlerocket settings); use al2023 "
                                                    "or remove it"))
        if production and self.purpose == "inference" and self.capacity_types != ["on-demand"]:
            problems.append(("capacityTypes", f"must be only on-demand for an inference pool in a production stack "
                                              f"(got {self.capacity_types}); spot reclaims would drop serving capacity"))
        return problems

    def _instance_problems(self) -> list[tuple[str, str]]:
        if self.instance_families and self.instance_types:
            return [("instanceTypes", f"set instanceFamilies or instanceTypes, not both (got instanceFamilies "
                                      f"{self.instance_families} and instanceTypes {self.instance_types}); "
                                      "remove one")]
        if not self.instance_families and not self.instance_types:
            return [("instanceFamilies", "must list at least one instance family like g6 (or set instanceTypes) "
                                         "(got [])")]
        problems = [(f"instanceFamilies[{i}]", message) for i, family in enumerate(self.instance_families)
                    if (message := instances.gpu_family_problem(family))]
        problems += [(f"instanceTypes[{i}]", message) for i, kind in enumerate(self.instance_types)
                     if (message := instances.instance_type_problem(kind, gpu=True))]
        return problems


class CpuPoolConfig(Section):
    """The Karpenter NodePool for workloads that need no GPU (CPU training, batch, tools)."""

    enabled: bool = True
    """Create the CPU NodePool. Defaults to true."""
    name: str = Field(default="cpu", pattern=POOL_NAME)
    """Pool name; nodes get modelplane.io/pool=<name>. Defaults to cpu."""
    instance_categories: list[str] = ["c", "m", "r"]
    """EC2 instance categories. Defaults to c, m, r. Valid values: the CPU categories of infra/config/instances.yaml
    (c, m, r, t)."""
    min_generation: int = Field(default=5, ge=1)
    """Oldest instance generation allowed: 5 admits m5 and newer. Defaults to 5."""
    capacity_types: list[str] = ["on-demand"]
    """How nodes are bought. Defaults to [on-demand]. Valid values: spot, on-demand."""
    cpu_limit: int = Field(default=64, ge=1)
    """Total vCPUs the pool may hold. Defaults to 64. At most 1024 (limits.MAX_POOL_VCPUS) unless
    modelplane:limits.allowLarge is true."""
    memory_limit: str = "256Gi"
    """Total memory the pool may hold. Defaults to 256Gi."""
    disk_size_gb: int = Field(default=50, ge=20, le=16384)
    """Encrypted gp3 root volume in GiB. Defaults to 50."""
    consolidation_policy: karpenter.ConsolidationPolicy = "WhenEmptyOrUnderutilized"
    """Which nodes Karpenter may consolidate. Defaults to WhenEmptyOrUnderutilized."""
    consolidate_after: str = "1m"
    """Wait before consolidating. Defaults to 1m."""
    expire_after: str = "720h"
    """Maximum node lifetime. Defaults to 720h."""

    def checks(self) -> list[tuple[str, str]]:
        """Capacity types, categories, limits and durations."""
        problems = _capacity_problems(self.capacity_types)
        problems += [(f"instanceCategories[{i}]", not_one_of(category, instances.cpu_categories()))
                     for i, category in enumerate(self.instance_categories)
                     if category not in instances.cpu_categories()]
        if not self.instance_categories:
            problems.append(("instanceCategories", "must list at least one category like c (got [])"))
        problems += memory_problems("memoryLimit", self.memory_limit, "256Gi")
        return problems + _duration_problems(consolidateAfter=self.consolidate_after, expireAfter=self.expire_after)


class KarpenterConfig(Section):
    """`modelplane:karpenter`: the controller and the CPU NodePool."""

    replicas: int = Field(default=2, ge=1, le=5)
    """Controller replicas (one leader, the rest standby). Defaults to 2."""
    cpu: str = "1"
    """Controller CPU request and limit. Defaults to 1 (the getting-started sizing)."""
    memory: str = "1Gi"
    """Controller memory request and limit. Defaults to 1Gi."""
    cpu_pool: CpuPoolConfig = CpuPoolConfig()
    """The CPU NodePool."""

    def checks(self) -> list[tuple[str, str]]:
        """Resource quantities and the CPU pool's rules."""
        problems = cpu_problems("cpu", self.cpu, "1") + memory_problems("memory", self.memory, "1Gi")
        return problems + [(f"cpuPool.{key}", message) for key, message in self.cpu_pool.checks()]


class AddonsConfig(Section):
    """`modelplane:addons`: cluster add-ons, switched per stack; kubeconfig stacks may set only trainer."""

    nvidia_device_plugin: bool = True
    """NVIDIA device plugin on al2023 GPU nodes (Bottlerocket ships its own). Defaults to true."""
    dcgm_exporter: bool = True
    """DCGM exporter on GPU nodes, scraped through a ServiceMonitor. Defaults to true."""
    dcgm_scrape_interval: str = "15s"
    """How often Prometheus scrapes DCGM. Defaults to 15s (the chart's default). Valid: 1s to 1m."""
    trainer: bool = True
    """Install JobSet and Kubeflow Trainer v2 (TrainJob), on every target, when the stack has training jobs or teams.
    Defaults to true."""

    MOVED_KEYS: ClassVar[Mapping[str, str]] = {"trainingOperator": "modelplane:addons.trainer"}
    """Keys this section once had, by where they live now: JobSet and Trainer v2 replaced the v1 training operator."""

    def checks(self) -> list[tuple[str, str]]:
        """The scrape interval is a Prometheus duration from 1s to 1m."""
        match = _SCRAPE_INTERVAL.match(self.dcgm_scrape_interval)
        if not match:
            return [("dcgmScrapeInterval", f"must be a duration like 15s or 1m (got {self.dcgm_scrape_interval!r})")]
        seconds = int(match[1]) * (60 if match[2] == "m" else 1)
        if not 0 < seconds <= _MAX_DCGM_SCRAPE_SECONDS:
            return [("dcgmScrapeInterval", f"must be from 1s to 1m (got {self.dcgm_scrape_interval!r}): the GPU alerts "
                                           "need several samples within Prometheus's 5m lookback and the XID rule's "
                                           "15m window; set e.g. 15s (the default) or 30s")]
        return []
