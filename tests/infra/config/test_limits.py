"""Upper bounds on pool sizes, pool limits and replica counts, and `modelplane:limits.allowLarge`, which lifts them."""

from typing import Any

import pytest

from infra.config import limits
from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with

SYSTEM = {"name": "system", "instanceTypes": ["m7i.xlarge"], "minSize": 3, "desiredSize": 3, "maxSize": 6}
GPU_POOL = {"name": "h100-train", "instanceFamilies": ["p5"], "gpusPerNode": {"min": 8, "max": 8}, "gpuLimit": 32}
INFER_POOL = {"name": "gpu-infer", "purpose": "inference", "instanceFamilies": ["g6e", "g6"], "gpuLimit": 16}

# (description, changes to the prod stack, key path, bound, value)
OVER: list[tuple[str, dict[str, Any], str, int, int]] = [
    ("node group max size", {"modelplane:nodePools": [{**SYSTEM, "maxSize": 500}]},
     "modelplane:nodePools[0].maxSize", limits.MAX_NODE_GROUP_SIZE, 500),
    ("node group desired size", {"modelplane:nodePools": [{**SYSTEM, "desiredSize": 60, "maxSize": 60}]},
     "modelplane:nodePools[0].desiredSize", limits.MAX_NODE_GROUP_SIZE, 60),
    ("GPU pool GPU limit", {"modelplane:gpuPools": [{**GPU_POOL, "gpuLimit": 5000}, INFER_POOL]},
     "modelplane:gpuPools[0].gpuLimit", limits.MAX_POOL_GPUS, 5000),
    ("GPU pool vCPU limit", {"modelplane:gpuPools": [{**GPU_POOL, "cpuLimit": 100000}, INFER_POOL]},
     "modelplane:gpuPools[0].cpuLimit", limits.MAX_POOL_VCPUS, 100000),
    ("CPU pool vCPU limit", {"modelplane:karpenter": {"cpuPool": {"cpuLimit": 4096}}},
     "modelplane:karpenter.cpuPool.cpuLimit", limits.MAX_POOL_VCPUS, 4096),
    ("training replicas", {"modelplane:training": {"jobs": [{"name": "big", "framework": "tensorflow", "replicas": 200,
                                                             "dataset": "digits/"}]}},
     "modelplane:training.jobs[0].replicas", limits.MAX_TRAINING_REPLICAS, 200),
    ("inference max replicas", {"modelplane:inference": {"services": [
        {"name": "lm", "model": "lm-7b", "minReplicas": 2, "maxReplicas": 900}]}},
     "modelplane:inference.services[0].maxReplicas", limits.MAX_SERVICE_REPLICAS, 900),
    ("processor replicas", {"modelplane:recommend": {"minReplicas": 40, "maxReplicas": 40}},
     "modelplane:recommend.minReplicas", limits.MAX_PROCESSOR_REPLICAS, 40),
]


def _issues(changes: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config("prod", stack_config_with("prod", changes))
    return {issue.path: issue.message for issue in info.value.issues}


@pytest.mark.parametrize(("changes", "path", "bound", "value"), [c[1:] for c in OVER], ids=[c[0] for c in OVER])
def test_a_value_over_its_bound_is_rejected_naming_the_bound_and_the_switch(
    changes: dict[str, Any], path: str, bound: int, value: int
) -> None:
    issues = _issues(changes)
    assert issues.get(path) == (f"must be at most {bound} (got {value}), the platform's bound "
                                "(infra/config/limits.py); lower it, or set modelplane:limits.allowLarge: true if the "
                                "stack really needs this much"), issues


def test_allow_large_lifts_every_bound() -> None:
    changes = {"modelplane:nodePools": [{**SYSTEM, "maxSize": 500}],
               "modelplane:gpuPools": [{**GPU_POOL, "gpuLimit": 512}, INFER_POOL],
               "modelplane:karpenter": {"cpuPool": {"cpuLimit": 4096}}}
    assert set(_issues(changes)) == {"modelplane:nodePools[0].maxSize", "modelplane:gpuPools[0].gpuLimit",
                                     "modelplane:karpenter.cpuPool.cpuLimit"}
    config = parse_config("prod", stack_config_with("prod", {**changes, "modelplane:limits": {"allowLarge": True}}))
    assert (config.node_pools[0].max_size, config.gpu_pools[0].gpu_limit) == (500, 512)


def test_a_value_at_its_bound_passes() -> None:
    config = parse_config("prod", stack_config_with("prod", {
        "modelplane:gpuPools": [{**GPU_POOL, "gpuLimit": limits.MAX_POOL_GPUS}, INFER_POOL],
        "modelplane:nodePools": [{**SYSTEM, "maxSize": limits.MAX_NODE_GROUP_SIZE}]}))
    assert config.gpu_pools[0].gpu_limit == limits.MAX_POOL_GPUS


def test_a_misspelt_switch_is_an_unknown_key() -> None:
    issues = _issues({"modelplane:limits": {"allowlarge": True}})
    assert issues["modelplane:limits.allowlarge"].startswith("unknown key 'allowlarge'; did you mean 'allowLarge'?")


@pytest.mark.parametrize(("model", "field"), list(limits.BOUNDS), ids=[f"{m.__name__}.{f}" for m, f in limits.BOUNDS])
def test_each_bounded_field_documents_its_bound_and_the_switch(model: type, field: str) -> None:
    description = " ".join((model.model_fields[field].description or "").split())
    assert f"at most {limits.BOUNDS[(model, field)]} (limits." in description.lower(), description
    assert "modelplane:limits.allowLarge" in description, description
