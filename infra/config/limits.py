"""Upper bounds on pool sizes, pool limits and replica counts, and `modelplane:limits`, the switch that lifts them.

A bound catches a slipped digit (`gpuLimit: 5000`, `maxReplicas: 10000`) at render, before it reaches a NodePool or
an HPA; a stack that really needs more sets `modelplane:limits.allowLarge: true`, which shows up in the stack file's
review. Each bounded field's docstring names its bound; `BOUNDS` is the one list of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from pydantic.alias_generators import to_camel

from infra.config.base import Section
from infra.config.cluster import NodePoolConfig
from infra.config.errors import ConfigIssue
from infra.config.gpu import CpuPoolConfig, GpuPoolConfig
from infra.config.issues import NAMESPACE
from infra.config.recommend import RecommendConfig
from infra.config.workloads import InferenceServiceConfig, TrainingJobConfig

MAX_NODE_GROUP_SIZE: Final = 50
"""Most nodes of one managed node group (minSize, desiredSize, maxSize)."""
MAX_POOL_GPUS: Final = 64
"""Most GPUs one GPU NodePool may hold (gpuLimit): eight 8-GPU nodes."""
MAX_POOL_VCPUS: Final = 1024
"""Most vCPUs one NodePool may hold (a GPU pool's or the CPU pool's cpuLimit)."""
MAX_TRAINING_REPLICAS: Final = 32
"""Most replicas of one training job."""
MAX_SERVICE_REPLICAS: Final = 50
"""Most pods of one inference service (minReplicas, maxReplicas)."""
MAX_PROCESSOR_REPLICAS: Final = 32
"""Most replicas of the recommendation stream processor (minReplicas, maxReplicas)."""

BOUNDS: Final[dict[tuple[type[Section], str], int]] = {
    (NodePoolConfig, "min_size"): MAX_NODE_GROUP_SIZE,
    (NodePoolConfig, "desired_size"): MAX_NODE_GROUP_SIZE,
    (NodePoolConfig, "max_size"): MAX_NODE_GROUP_SIZE,
    (GpuPoolConfig, "gpu_limit"): MAX_POOL_GPUS,
    (GpuPoolConfig, "cpu_limit"): MAX_POOL_VCPUS,
    (CpuPoolConfig, "cpu_limit"): MAX_POOL_VCPUS,
    (TrainingJobConfig, "replicas"): MAX_TRAINING_REPLICAS,
    (InferenceServiceConfig, "min_replicas"): MAX_SERVICE_REPLICAS,
    (InferenceServiceConfig, "max_replicas"): MAX_SERVICE_REPLICAS,
    (RecommendConfig, "min_replicas"): MAX_PROCESSOR_REPLICAS,
    (RecommendConfig, "max_replicas"): MAX_PROCESSOR_REPLICAS,
}
"""(section model, field) -> the most it may be unless `modelplane:limits.allowLarge` is true."""


class LimitsConfig(Section):
    """`modelplane:limits`: whether the stack may go past the platform's upper bounds."""

    allow_large: bool = False
    """Lift the upper bounds on pool sizes, pool GPU and vCPU limits and replica counts (infra/config/limits.py:
    node groups 50 nodes, GPU pools 64 GPUs, pools 1024 vCPUs, training jobs 32 replicas, inference services 50,
    the stream processor 32). Defaults to false."""


def _fields(model: Section, path: str) -> Iterator[tuple[Section, str, str, Any]]:
    """(model, field name, key path, value) of every field of `model` and of the sections nested in it."""
    for name in type(model).model_fields:
        value, key = getattr(model, name), f"{path}.{to_camel(name)}"
        if isinstance(value, Section):
            yield from _fields(value, key)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Section):
                    yield from _fields(item, f"{key}[{i}]")
        yield model, name, key, value


def bound_issues(sections: Mapping[str, Any]) -> list[ConfigIssue]:
    """Every bounded field of the parsed `sections` (PlatformConfig field name -> section or list) over its bound."""
    issues = []
    for field, value in sections.items():
        roots = [(item, f"[{i}]") for i, item in enumerate(value)] if isinstance(value, list) else [(value, "")]
        for root, index in roots:
            if not isinstance(root, Section):
                continue
            for model, name, key, got in _fields(root, f"{NAMESPACE}:{to_camel(field)}{index}"):
                bound = BOUNDS.get((type(model), name))
                if bound is not None and isinstance(got, int) and got > bound:
                    issues.append(ConfigIssue(key, (
                        f"must be at most {bound} (got {got}), the platform's bound (infra/config/limits.py); lower "
                        f"it, or set {NAMESPACE}:limits.allowLarge: true if the stack really needs this much")))
    return issues
