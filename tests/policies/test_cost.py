"""Cost rules: GPU NodePool limits, the per-stack GPU budget, spot outside production, required tags."""

import pytest

from policies.rules.cost import GPU_BUDGET, GPU_NODEPOOL_LIMIT, GPU_SPOT_NONPRODUCTION, REQUIRED_TAGS
from tests.policies.helpers import Res, k8s, k8s_type, stack_violations, violations

TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}


def nodepool(name: str, *, limits: dict | None, capacity: list[str] | None = None, taint: bool = True,
             requirements: list[dict] | None = None) -> dict:
    reqs = list(requirements if requirements is not None else
                [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g6"]}])
    if capacity is not None:
        reqs.append({"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity})
    spec: dict = {"template": {"spec": {"requirements": reqs, "taints": [TAINT] if taint else [],
                                        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                         "name": "gpu"}}}}
    if limits is not None:
        spec["limits"] = limits
    return k8s("karpenter.sh/v1", "NodePool", name, spec, namespace=None)


def check(policy, obj: dict, **kwargs) -> list[str]:
    return violations(policy, k8s_type(obj), obj, name=f"gpu-pool-{obj['metadata']['name']}", **kwargs)


@pytest.mark.parametrize("limit", [8, "8"])
def test_gpu_pool_with_a_limit_complies(limit) -> None:
    assert check(GPU_NODEPOOL_LIMIT, nodepool("a10g", limits={"nvidia.com/gpu": limit})) == []


@pytest.mark.parametrize("limits", [None, {"cpu": 1000}, {"nvidia.com/gpu": 0}])
def test_gpu_pool_without_a_limit_is_reported(limits) -> None:
    found = check(GPU_NODEPOOL_LIMIT, nodepool("a10g", limits=limits))
    assert len(found) == 1 and "NodePool a10g" in found[0] and "gpuLimit" in found[0]


@pytest.mark.parametrize("requirements", [
    [{"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["g"]}],
    [{"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]}],
    [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p5.48xlarge"]}],
])
def test_gpu_pools_are_recognised_without_a_taint(requirements) -> None:
    assert check(GPU_NODEPOOL_LIMIT, nodepool("x", limits=None, taint=False, requirements=requirements))


def test_cpu_pools_need_no_gpu_limit() -> None:
    cpu = nodepool("cpu", limits={"cpu": 64}, taint=False,
                   requirements=[{"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m"]}])
    assert check(GPU_NODEPOOL_LIMIT, cpu) == []


def pool(name: str, limit: int | None) -> Res:
    obj = nodepool(name, limits={"nvidia.com/gpu": limit} if limit is not None else None)
    return Res(k8s_type(obj), f"gpu-pool-{name}", obj)


def test_pools_within_the_stack_budget_comply() -> None:
    assert stack_violations(GPU_BUDGET, [pool("a", 8), pool("b", 8)], stack="dev") == []


def test_pools_over_the_stack_budget_are_reported() -> None:
    found = stack_violations(GPU_BUDGET, [pool("a", 12), pool("b", 8)], stack="dev")
    assert len(found) == 1 and "20 GPUs" in found[0][1] and "budget of 16" in found[0][1]


def test_an_unbounded_pool_breaks_the_budget() -> None:
    found = stack_violations(GPU_BUDGET, [pool("a", 4), pool("b", None)], stack="prod")
    assert len(found) == 1 and "gpu-pool-b" in found[0][1]


def test_budgets_are_configurable_per_stack() -> None:
    config = {"maxGpusByStack": {"research": 256}, "maxGpus": 4}
    assert stack_violations(GPU_BUDGET, [pool("a", 200)], stack="research", config=config) == []
    assert stack_violations(GPU_BUDGET, [pool("a", 8)], stack="other", config=config)


@pytest.mark.parametrize("capacity", [["spot"], ["spot", "on-demand"]])
def test_spot_gpu_pools_comply_outside_production(capacity) -> None:
    assert check(GPU_SPOT_NONPRODUCTION, nodepool("a", limits={"nvidia.com/gpu": 4}, capacity=capacity)) == []


@pytest.mark.parametrize("capacity", [None, ["on-demand"]])
def test_on_demand_only_gpu_pools_are_reported_outside_production(capacity) -> None:
    obj = nodepool("a", limits={"nvidia.com/gpu": 4}, capacity=capacity)
    found = check(GPU_SPOT_NONPRODUCTION, obj, stack="staging")
    assert len(found) == 1 and "'staging'" in found[0] and "spot" in found[0]
    assert check(GPU_SPOT_NONPRODUCTION, obj, stack="prod", production=True) == []


TAGS = {"environment": "dev", "owner": "ml-platform", "cost-center": "cc-4100"}


def test_tagged_resources_comply() -> None:
    assert violations(REQUIRED_TAGS, "aws:ec2/vpc:Vpc", {"tags": TAGS}) == []


@pytest.mark.parametrize("tags", [None, {"environment": "dev"}, {**TAGS, "owner": ""}])
def test_untagged_taggable_resources_are_reported(tags) -> None:
    found = violations(REQUIRED_TAGS, "aws:s3/bucket:Bucket", {"tags": tags} if tags else {}, name="models-datasets")
    assert len(found) == 1 and "Bucket 'models-datasets'" in found[0] and "owner" in found[0]


def test_untaggable_resources_are_ignored() -> None:
    assert violations(REQUIRED_TAGS, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", {}) == []
    assert violations(REQUIRED_TAGS, "kubernetes:core/v1:Namespace", {}) == []


def test_required_tags_are_configurable() -> None:
    assert violations(REQUIRED_TAGS, "aws:ec2/vpc:Vpc", {"tags": TAGS}, config={"requiredTags": ["team"]})
