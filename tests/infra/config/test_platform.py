"""Rules of the GPU platform and platform-service sections (`gpuPools`, `karpenter`, `mesh`, `observability`).

Each rule lives once, on its section model, and is reported at its `modelplane:` key path with the
value; the components (GpuNodePools, Mesh, Observability) take the parsed sections and check nothing
again. These cases complete tests/infra/config/test_parse.py for the rules the components used to repeat.
"""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with

POOL = {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4}

# (description, changes deep-merged into the dev stack, expected key path, expected message)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("no capacity type", {"modelplane:gpuPools": [{**POOL, "capacityTypes": []}]},
     "modelplane:gpuPools[0].capacityTypes", "must list at least one of spot, on-demand (got [])"),
    ("pool weight above 100", {"modelplane:gpuPools": [{**POOL, "weight": 101}]},
     "modelplane:gpuPools[0].weight", "Input should be less than or equal to 100 (got 101)"),
    ("bad instance type", {"modelplane:gpuPools": [{"name": "gpu-train", "instanceTypes": ["g6"], "gpuLimit": 4}]},
     "modelplane:gpuPools[0].instanceTypes[0]", "must be an EC2 instance type like g6.12xlarge (got 'g6')"),
    ("bad GPU pool memory limit", {"modelplane:gpuPools": [{**POOL, "memoryLimit": "4T"}]},
     "modelplane:gpuPools[0].memoryLimit", "must be a Kubernetes memory quantity like 2048Gi (Ki, Mi, Gi or Ti) (got '4T')"),
    ("no Karpenter controller", {"modelplane:karpenter": {"replicas": 0}},
     "modelplane:karpenter.replicas", "Input should be greater than or equal to 1 (got 0)"),
    ("bad Karpenter memory", {"modelplane:karpenter": {"memory": "1G"}},
     "modelplane:karpenter.memory", "must be a Kubernetes memory quantity like 1Gi (Ki, Mi, Gi or Ti) (got '1G')"),
    ("no CPU pool category", {"modelplane:karpenter": {"cpuPool": {"instanceCategories": []}}},
     "modelplane:karpenter.cpuPool.instanceCategories", "must list at least one category like c (got [])"),
    ("bad CPU pool category", {"modelplane:karpenter": {"cpuPool": {"instanceCategories": ["c5"]}}},
     "modelplane:karpenter.cpuPool.instanceCategories[0]", "must be one of c, m, r, t (got 'c5'); did you mean 'c'?"),
    ("bad CPU pool memory limit", {"modelplane:karpenter": {"cpuPool": {"memoryLimit": "lots"}}},
     "modelplane:karpenter.cpuPool.memoryLimit",
     "must be a Kubernetes memory quantity like 256Gi (Ki, Mi, Gi or Ti) (got 'lots')"),
    ("bad CPU pool lifetime", {"modelplane:karpenter": {"cpuPool": {"expireAfter": "30d"}}},
     "modelplane:karpenter.cpuPool.expireAfter", "must be a duration like 30s, 10m, 1h30m or Never (got '30d')"),
    ("no istiod", {"modelplane:mesh": {"replicas": 0}},
     "modelplane:mesh.replicas", "Input should be greater than or equal to 1 (got 0)"),
    ("too many istiods", {"modelplane:mesh": {"replicas": 11}},
     "modelplane:mesh.replicas", "Input should be less than or equal to 10 (got 11)"),
    ("negative Prometheus volume", {"modelplane:observability": {"storageGb": -1}},
     "modelplane:observability.storageGb", "Input should be greater than or equal to 0 (got -1)"),
    ("zero retention size", {"modelplane:observability": {"retentionSizeGb": 0}},
     "modelplane:observability.retentionSizeGb", "Input should be greater than or equal to 1 (got 0)"),
]


@pytest.mark.parametrize(("changes", "path", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_platform_section_rule_names_its_key_path_and_value(changes: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", stack_config_with("dev", changes))
    messages = {issue.path: issue.message for issue in info.value.issues}
    assert path in messages, messages
    assert messages[path].startswith(message), messages[path]
