"""The EC2 instance table (infra/config/instances.yaml): families and types in pools are checked against it, a typo
gets the closest name, and the cost price table prices only types it knows, with the same figures."""

from typing import Any

import pytest

from infra.config import instances
from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from infra.review.cost.prices import load_prices
from tests.support.graph import stack_config_with

GPU_POOL = {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4}
SYSTEM = {"name": "system", "instanceTypes": ["t3.large"], "minSize": 1, "desiredSize": 2, "maxSize": 3}


def _messages(changes: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", stack_config_with("dev", changes))
    return {issue.path: issue.message for issue in info.value.issues}


# (description, changes to the dev stack, key path, the start of the message)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("misspelt GPU family", {"modelplane:gpuPools": [{**GPU_POOL, "instanceFamilies": ["g6", "g6ee"]}]},
     "modelplane:gpuPools[0].instanceFamilies[1]",
     "must be an EC2 instance family with NVIDIA GPUs (got 'g6ee'); did you mean 'g6e'? GPU families: g4dn, g5,"),
    ("family that does not exist", {"modelplane:gpuPools": [{**GPU_POOL, "instanceFamilies": ["p5x"]}]},
     "modelplane:gpuPools[0].instanceFamilies[0]",
     "must be an EC2 instance family with NVIDIA GPUs (got 'p5x'); did you mean 'p5'?"),
    ("CPU family in a GPU pool", {"modelplane:gpuPools": [{**GPU_POOL, "instanceFamilies": ["m7i"]}]},
     "modelplane:gpuPools[0].instanceFamilies[0]",
     "must be an EC2 instance family with NVIDIA GPUs (got 'm7i', a general family); GPU families:"),
    ("GPU type of a size that does not exist", {"modelplane:gpuPools": [
        {**GPU_POOL, "instanceFamilies": [], "instanceTypes": ["g6e.12xlarg"]}]},
     "modelplane:gpuPools[0].instanceTypes[0]",
     "must be an EC2 instance type like g6.12xlarge (got 'g6e.12xlarg'); did you mean 'g6e.12xlarge'? g6e sizes: "
     "xlarge, 2xlarge, 4xlarge, 8xlarge, 12xlarge, 16xlarge, 24xlarge, 48xlarge"),
    ("CPU type in a GPU pool", {"modelplane:gpuPools": [
        {**GPU_POOL, "instanceFamilies": [], "instanceTypes": ["m7i.large"]}]},
     "modelplane:gpuPools[0].instanceTypes[0]",
     "must be an EC2 instance type like g6.12xlarge (got 'm7i.large', a type without GPUs)"),
    ("misspelt node group type", {"modelplane:nodePools": [{**SYSTEM, "instanceTypes": ["t3.lareg"]}]},
     "modelplane:nodePools[0].instanceTypes[0]",
     "must be an EC2 instance type like m7i.xlarge (amd64, no GPUs) (got 't3.lareg'); did you mean 't3.large'?"),
    ("Graviton type in a node group", {"modelplane:nodePools": [{**SYSTEM, "instanceTypes": ["m7g.large"]}]},
     "modelplane:nodePools[0].instanceTypes[0]",
     "must be an EC2 instance type like m7i.xlarge (amd64, no GPUs) (got 'm7g.large', an arm64 type, and managed "
     "node groups run AL2023_x86_64_STANDARD)"),
    ("GPU type in a node group", {"modelplane:nodePools": [{**SYSTEM, "instanceTypes": ["t3.large", "g5.xlarge"]}]},
     "modelplane:nodePools[0].instanceTypes[1]",
     "must be an EC2 instance type like m7i.xlarge (amd64, no GPUs) (got 'g5.xlarge', a type with GPUs; put GPUs in "
     "gpuPools)"),
    ("GPUs per node that no type of the pool has", {"modelplane:gpuPools": [
        {**GPU_POOL, "instanceFamilies": ["p5"], "gpusPerNode": {"min": 2, "max": 4}, "gpuLimit": 8}]},
     "modelplane:gpuPools[0].gpusPerNode",
     "admits none of the pool's instance types (got 2 to 4; they have 1, 8 GPUs); the pool could never launch a node"),
    ("CPU pool category that does not exist", {"modelplane:karpenter": {"cpuPool": {"instanceCategories": ["c", "z"]}}},
     "modelplane:karpenter.cpuPool.instanceCategories[1]", "must be one of c, m, r, t (got 'z')"),
]


@pytest.mark.parametrize(("changes", "path", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_an_instance_the_table_lacks_is_rejected_with_the_closest_name(
    changes: dict[str, Any], path: str, message: str
) -> None:
    messages = _messages(changes)
    assert path in messages, messages
    assert messages[path].startswith(message), messages[path]


def test_every_family_and_size_of_the_table_is_accepted_where_it_belongs() -> None:
    gpu_families = [name for name, family in instances.families().items() if family.gpu]
    pools = [{**GPU_POOL, "name": f"gpu-{i}", "instanceFamilies": [name]} for i, name in enumerate(gpu_families)]
    pools.append({**GPU_POOL, "name": "gpu-types", "instanceFamilies": [],
                  "instanceTypes": [k for k, spec in instances.instance_types().items() if spec.gpus]})
    cpu_types = [k for k, spec in instances.instance_types().items()
                 if not spec.gpus and instances.families()[spec.family].arch == "amd64"]
    config = parse_config("dev", stack_config_with("dev", {
        "modelplane:gpuPools": pools, "modelplane:nodePools": [{**SYSTEM, "instanceTypes": cpu_types}],
        "modelplane:karpenter": {"cpuPool": {"instanceCategories": instances.cpu_categories()}},
        "modelplane:training": {"jobs": []}, "modelplane:inference": {"services": []}, "modelplane:teams": None}))
    assert [p.instance_families for p in config.gpu_pools][:len(gpu_families)] == [[f] for f in gpu_families]


def test_the_gpu_families_carry_the_gpus_aws_lists() -> None:
    gpus = {name: (family.gpu.name, family.gpu.memory_mib) for name, family in instances.families().items()
            if family.gpu}
    assert gpus["g5"] == ("a10g", 22888) and gpus["p5en"] == ("h200", 144384) and gpus["p6-b200"] == ("b200", 183359)
    kinds = instances.instance_types()
    assert (kinds["g6e.12xlarge"].gpus, kinds["p4de.24xlarge"].gpus, kinds["g4dn.metal"].gpus) == (4, 8, 8)
    assert all(family.sizes for family in instances.families().values())
    assert all(family.category != "gpu" or family.gpu for family in instances.families().values())


def test_jobs_are_sized_against_cuda_memory_where_it_was_measured() -> None:
    assert instances.gpu_of("g5") == instances.Gpu("A10G 24 GB", 23028)
    assert instances.gpu_of("p6-b200") == instances.Gpu("B200 179 GB", 183359)  # AWS's figure: none measured
    assert instances.gpu_of("m7i") is None and instances.gpu_of("nope") is None


def test_every_priced_instance_type_is_in_the_table_with_the_same_hardware() -> None:
    known, missing, differ = instances.instance_types(), [], []
    for kind, price in load_prices().ec2.items():
        if kind not in known:
            missing.append(kind)
            continue
        spec = known[kind]
        gpu = instances.families()[spec.family].gpu
        if (spec.vcpu, spec.memory_gib, spec.gpus, gpu.name if gpu else None) != \
                (price.vcpu, price.memory_gib, price.gpus, price.gpu):
            differ.append(f"{kind}: table {spec} vs prices {price}")
    assert not missing, f"priced but not in infra/config/instances.yaml: {missing}"
    assert not differ, "\n".join(differ)


def test_every_priced_gpu_family_is_admitted() -> None:
    priced = {kind.partition(".")[0] for kind, price in load_prices().ec2.items() if price.gpus}
    admitted = {name for name, family in instances.families().items() if family.gpu}
    assert priced <= admitted, f"priced GPU families missing from infra/config/instances.yaml: {priced - admitted}"
