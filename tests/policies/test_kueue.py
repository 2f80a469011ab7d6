"""kueue-queue-label and kueue-quota-fits-pools: GPU jobs in team namespaces are queued; quotas fit the pools."""

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.k8s import kueue
from infra.review.graph import Graph
from infra.review.policy import evaluate
from policies.rules.kueue import KUEUE_QUEUE_LABEL, KUEUE_QUOTA_FITS_POOLS
from tests.policies.helpers import Res, edit, graph, k8s, k8s_type, modelplane, scratch_copy, stack_violations, urn
from workloads.common.vocab import POOL_LABEL

QUEUE_LABEL = {"kueue.x-k8s.io/queue-name": "team-a"}
GPU = {"limits": {"nvidia.com/gpu": 1}}
CPU = {"requests": {"cpu": "2", "memory": "4Gi"}}


def obj(api_version: str, kind: str, name: str, spec: dict[str, Any], *, namespace: str | None = "team-a",
        labels: dict[str, str] | None = None) -> Res:
    made = k8s(api_version, kind, name, spec, namespace=namespace, labels=labels)
    return Res(k8s_type(made), f"{kind.lower()}-{name}", made)


def local_queue(namespace: str = "team-a") -> Res:
    return obj(kueue.API_VERSION, "LocalQueue", namespace, {"clusterQueue": namespace}, namespace=namespace)


def pod_template(resources: dict[str, Any], *, init: bool = False, container: str = "trainer") -> dict[str, Any]:
    main = {"name": container, "image": "trainer:1", "resources": {} if init else resources}
    spec: dict[str, Any] = {"containers": [main], "restartPolicy": "Never"}
    if init:
        spec["initContainers"] = [{"name": "warmup", "image": "trainer:1", "resources": resources}]
    return {"spec": spec}


def job(resources: dict[str, Any], *, labels: dict[str, str] | None = None, namespace: str = "team-a",
        init: bool = False) -> Res:
    return obj("batch/v1", "Job", "train", {"template": pod_template(resources, init=init)}, namespace=namespace,
               labels=labels)


def jobset(resources: dict[str, Any], labels: dict[str, str] | None = None) -> Res:
    replicated = [{"name": "workers", "replicas": 2, "template": {"spec": {"template": pod_template(resources)}}}]
    return obj("jobset.x-k8s.io/v1alpha2", "JobSet", "train", {"replicatedJobs": replicated}, labels=labels)


def trainjob(resources: dict[str, Any] | None, labels: dict[str, str] | None = None, *,
             runtime_ref: dict[str, str] | None = None) -> Res:
    trainer: dict[str, Any] = {"numNodes": 2}
    if resources is not None:
        trainer["resourcesPerNode"] = resources
    spec = {"runtimeRef": runtime_ref or {"name": "modelplane-torch"}, "trainer": trainer}
    return obj("trainer.kubeflow.org/v1alpha1", "TrainJob", "train", spec, labels=labels)


def runtime(resources: dict[str, Any], *, kind: str = "ClusterTrainingRuntime", namespace: str | None = None,
            initializer: dict[str, Any] | None = None) -> Res:
    """A training runtime whose trainer Job's `node` container asks for `resources` (and, with `initializer`, a
    dataset-initializer Job asking for those)."""
    replicated = [{"name": "node", "template": {
        "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
        "spec": {"template": pod_template(resources, container="node")}}}]
    if initializer is not None:
        replicated.insert(0, {"name": "dataset-initializer", "template": {
            "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "dataset-initializer"}},
            "spec": {"template": pod_template(initializer, container="dataset-initializer")}}})
    spec = {"mlPolicy": {"torch": {}}, "template": {"spec": {"replicatedJobs": replicated}}}
    return obj("trainer.kubeflow.org/v1alpha1", kind, "modelplane-torch", spec, namespace=namespace)


BUILDERS = [job, jobset, trainjob]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_a_gpu_workload_without_the_queue_label_in_a_team_namespace_is_a_violation(build: Callable[..., Res]) -> None:
    workload = build(GPU)
    found = stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), workload])
    assert [u for u, _ in found] == [urn(workload.type, workload.name)]
    assert "requests nvidia.com/gpu" in found[0][1] and "team namespace team-a" in found[0][1]
    assert "metadata.labels['kueue.x-k8s.io/queue-name'] to one of its LocalQueues ['team-a']" in found[0][1]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_a_gpu_workload_with_the_queue_label_complies(build: Callable[..., Res]) -> None:
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), build(GPU, labels=QUEUE_LABEL)]) == []


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_a_queue_label_naming_no_local_queue_of_the_namespace_is_a_violation(build: Callable[..., Res]) -> None:
    workload = build(GPU, labels={"kueue.x-k8s.io/queue-name": "team-b"})
    found = stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), local_queue("team-b"), workload])
    assert [u for u, _ in found] == [urn(workload.type, workload.name)]
    assert "sets kueue.x-k8s.io/queue-name='team-b', but namespace team-a has no LocalQueue named 'team-b'" in found[0][1]
    assert "to one of its LocalQueues ['team-a']" in found[0][1]


def test_a_queue_label_is_not_checked_where_the_namespace_queues_are_unknown() -> None:
    found = stack_violations(KUEUE_QUEUE_LABEL, [job(GPU, namespace="research", labels={"kueue.x-k8s.io/queue-name": "x"})],
                             config={"teamNamespaces": ["research"]})
    assert found == []


def test_the_message_names_where_the_gpu_is_requested() -> None:
    found = stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), jobset(GPU)])
    assert "spec.replicatedJobs[workers].template.spec.template.spec.containers[trainer].resources.limits" in found[0][1]
    found = stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), trainjob({"requests": {"nvidia.com/gpu": "8"}})])
    assert "spec.trainer.resourcesPerNode.requests" in found[0][1]


def test_an_init_container_requesting_gpus_counts() -> None:
    found = stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), job(GPU, init=True)])
    assert len(found) == 1 and "spec.template.spec.initContainers[warmup].resources.limits" in found[0][1]


@pytest.mark.parametrize("resources", [CPU, {"limits": {"nvidia.com/gpu": 0}}, {}], ids=["cpu", "zero-gpu", "none"])
def test_a_workload_without_gpus_needs_no_label(resources: dict[str, Any]) -> None:
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), job(resources), trainjob(resources)]) == []


def test_namespaces_without_a_local_queue_are_not_team_namespaces() -> None:
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), job(GPU, namespace="training")]) == []
    assert stack_violations(KUEUE_QUEUE_LABEL, [job(GPU)]) == []


def test_team_namespaces_are_configurable() -> None:
    found = stack_violations(KUEUE_QUEUE_LABEL, [job(GPU, namespace="research")],
                             config={"teamNamespaces": ["research"]})
    assert len(found) == 1 and "to the team's LocalQueue" in found[0][1]


GPU_RUNTIME_PATH = ("ClusterTrainingRuntime modelplane-torch spec.template.spec.replicatedJobs[node].template.spec.template"
                    ".spec.containers[node].resources.limits")


def test_a_trainjob_without_gpu_resources_of_its_own_inherits_its_runtimes_gpus() -> None:
    for resources in (None, CPU):
        found = stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), runtime(GPU), trainjob(resources)])
        assert len(found) == 1 and f"requests nvidia.com/gpu ({GPU_RUNTIME_PATH})" in found[0][1]
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), runtime(GPU), trainjob(None, labels=QUEUE_LABEL)]) == []


def test_a_trainjob_naming_a_gpu_amount_overrides_its_runtimes() -> None:
    no_gpus = {"limits": {"nvidia.com/gpu": 0}}
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), runtime(GPU), trainjob(no_gpus)]) == []
    found = stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), runtime(CPU), trainjob(GPU)])
    assert len(found) == 1 and "spec.trainer.resourcesPerNode.limits" in found[0][1] and "Runtime" not in found[0][1]


def test_a_trainjobs_gpu_amount_leaves_the_gpus_of_its_runtimes_other_jobs() -> None:
    no_gpus = {"limits": {"nvidia.com/gpu": 0}}
    found = stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), runtime(GPU, initializer=GPU), trainjob(no_gpus)])
    assert len(found) == 1 and "replicatedJobs[dataset-initializer]" in found[0][1]
    assert "replicatedJobs[node]" not in found[0][1]


def test_only_the_runtime_a_trainjob_references_counts() -> None:
    other = trainjob(None, runtime_ref={"name": "torch-distributed"})
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), runtime(GPU), other]) == []
    namespaced = {"name": "modelplane-torch", "kind": "TrainingRuntime"}
    elsewhere = runtime(GPU, kind="TrainingRuntime", namespace="team-b")
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), elsewhere, trainjob(None, runtime_ref=namespaced)]) == []
    here = runtime(GPU, kind="TrainingRuntime", namespace="team-a")
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), here, trainjob(None, runtime_ref=namespaced)])


def test_other_kinds_are_out_of_scope() -> None:
    deployment = obj("apps/v1", "Deployment", "serve", {"template": pod_template(GPU)})
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), deployment]) == []


def test_the_label_and_gpu_resource_are_configurable() -> None:
    config = {"queueLabel": "example.com/queue", "gpuResource": "amd.com/gpu"}
    amd = {"limits": {"amd.com/gpu": 1}}
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), job(amd, labels=QUEUE_LABEL)], config=config)
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), job(amd, labels={"example.com/queue": "team-a"})],
                            config=config) == []
    assert stack_violations(KUEUE_QUEUE_LABEL, [local_queue(), job(GPU)], config=config) == []


def nodepool(name: str, limits: dict[str, Any], *, capacity: tuple[str, ...] = ("spot", "on-demand")) -> Res:
    requirements = [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(capacity)}]
    spec = {"limits": limits, "template": {"metadata": {"labels": {POOL_LABEL: name}},
                                           "spec": {"requirements": requirements}}}
    return obj("karpenter.sh/v1", "NodePool", name, spec, namespace=None)


def flavor(name: str, node_labels: dict[str, str] | None) -> Res:
    spec = {"nodeLabels": node_labels} if node_labels is not None else {}
    return obj(kueue.API_VERSION, "ResourceFlavor", name, spec, namespace=None)


def cluster_queue(name: str, quotas: dict[str, dict[str, Any]]) -> Res:
    flavors = [{"name": f, "resources": [{"name": r, "nominalQuota": q} for r, q in resources.items()]}
               for f, resources in quotas.items()]
    covered = sorted({r for resources in quotas.values() for r in resources})
    spec = {"cohortName": "teams", "resourceGroups": [{"coveredResources": covered, "flavors": flavors}]}
    return obj(kueue.API_VERSION, "ClusterQueue", name, spec, namespace=None)


GPU_POOL = nodepool("gpu-train", {"nvidia.com/gpu": 8, "cpu": 64, "memory": "512Gi"})
GPU_FLAVOR = flavor("gpu-train", {POOL_LABEL: "gpu-train"})


def test_quotas_within_the_pool_limits_comply() -> None:
    queues = [cluster_queue("team-a", {"gpu-train": {"nvidia.com/gpu": 4, "cpu": 32, "memory": "256Gi"}}),
              cluster_queue("team-b", {"gpu-train": {"nvidia.com/gpu": "4", "cpu": "32000m", "memory": "256Gi"}})]
    assert stack_violations(KUEUE_QUOTA_FITS_POOLS, [GPU_POOL, GPU_FLAVOR, *queues]) == []


def test_gpu_quotas_over_the_pool_limit_are_reported_on_every_queue_naming_flavor_sum_and_limit() -> None:
    a = cluster_queue("team-a", {"gpu-train": {"nvidia.com/gpu": 6}})
    b = cluster_queue("team-b", {"gpu-train": {"nvidia.com/gpu": 4}})
    found = stack_violations(KUEUE_QUOTA_FITS_POOLS, [GPU_POOL, GPU_FLAVOR, a, b])
    assert [u for u, _ in found] == [urn(a.type, a.name), urn(b.type, b.name)]
    message = found[0][1]
    assert "ClusterQueue team-a has a nominal nvidia.com/gpu quota of 6 on flavor gpu-train" in message
    assert "NodePool gpu-train add up to 10 (team-a/gpu-train=6, team-b/gpu-train=4)" in message
    assert "over the pool's spec.limits['nvidia.com/gpu'] of 8" in message


def test_cpu_and_memory_quantities_are_parsed() -> None:
    queue = cluster_queue("team-a", {"gpu-train": {"cpu": "65", "memory": "600Gi"}})
    found = stack_violations(KUEUE_QUOTA_FITS_POOLS, [GPU_POOL, GPU_FLAVOR, queue])
    assert sorted(m.split(";")[0] for _, m in found) == [
        "ClusterQueue team-a has a nominal cpu quota of 65 on flavor gpu-train",
        "ClusterQueue team-a has a nominal memory quota of 600Gi on flavor gpu-train",
    ]
    assert "spec.limits['memory'] of 512Gi" in next(m for _, m in found if "nominal memory quota" in m)


def test_two_flavors_on_one_pool_share_its_limit() -> None:
    spot = flavor("gpu-train-spot", {POOL_LABEL: "gpu-train", "karpenter.sh/capacity-type": "spot"})
    on_demand = flavor("gpu-train-od", {POOL_LABEL: "gpu-train", "karpenter.sh/capacity-type": "on-demand"})
    queue = cluster_queue("team-a", {"gpu-train-spot": {"nvidia.com/gpu": 5}, "gpu-train-od": {"nvidia.com/gpu": 5}})
    found = stack_violations(KUEUE_QUOTA_FITS_POOLS, [GPU_POOL, spot, on_demand, queue])
    assert len(found) == 2 and all("add up to 10" in m for _, m in found)


def test_a_flavor_selects_a_pool_only_when_the_pool_can_carry_all_its_labels() -> None:
    reserved = flavor("gpu-train-reserved", {POOL_LABEL: "gpu-train", "karpenter.sh/capacity-type": "reserved"})
    other = flavor("inference", {POOL_LABEL: "gpu-infer"})
    queue = cluster_queue("team-a", {"gpu-train-reserved": {"nvidia.com/gpu": 99}, "inference": {"nvidia.com/gpu": 99}})
    assert stack_violations(KUEUE_QUOTA_FITS_POOLS, [GPU_POOL, reserved, other, queue]) == []


@pytest.mark.parametrize("unmatched", [flavor("default", None), flavor("default", {}),
                                       flavor("default", {"kubernetes.io/hostname": "kind-worker"})],
                         ids=["no-labels", "empty-labels", "no-pool"])
def test_flavors_matching_no_nodepool_are_skipped(unmatched: Res) -> None:
    queue = cluster_queue("team-a", {"default": {"cpu": 1000, "nvidia.com/gpu": 100}})
    assert stack_violations(KUEUE_QUOTA_FITS_POOLS, [GPU_POOL, unmatched, queue]) == []


def test_a_pool_without_a_limit_on_a_resource_is_unbounded_for_it() -> None:
    pool = nodepool("gpu-train", {"nvidia.com/gpu": 8})
    queue = cluster_queue("team-a", {"gpu-train": {"cpu": 10_000, "nvidia.com/gpu": 9}})
    found = stack_violations(KUEUE_QUOTA_FITS_POOLS, [pool, GPU_FLAVOR, queue])
    assert len(found) == 1 and "nominal nvidia.com/gpu quota of 9" in found[0][1]


def test_the_checked_resources_are_configurable() -> None:
    queue = cluster_queue("team-a", {"gpu-train": {"cpu": 100}})
    assert stack_violations(KUEUE_QUOTA_FITS_POOLS, [GPU_POOL, GPU_FLAVOR, queue],
                            config={"resources": ["nvidia.com/gpu"]}) == []


def test_a_stack_without_kueue_objects_passes_both_rules() -> None:
    resources = [GPU_POOL, job(GPU)]
    assert stack_violations(KUEUE_QUEUE_LABEL, resources) == []
    assert stack_violations(KUEUE_QUOTA_FITS_POOLS, resources) == []


def test_the_packs_copy_of_the_queue_label_is_kueues() -> None:
    # The pack imports nothing of the platform, so it keeps its own copy of the label the platform sets.
    assert KUEUE_QUEUE_LABEL.config_schema is not None
    assert KUEUE_QUEUE_LABEL.config_schema.properties["queueLabel"]["default"] == kueue.QUEUE_LABEL
    assert QUEUE_LABEL.keys() == {kueue.QUEUE_LABEL}


def test_the_whole_pack_rejects_an_unqueued_gpu_job_as_mandatory() -> None:
    found = [v for v in evaluate(graph("dev", [local_queue(), job(GPU)])) if v.rule.startswith("kueue-")]
    assert [(v.level, v.rule) for v in found] == [("mandatory", "kueue-queue-label")]
    queued = evaluate(graph("dev", [local_queue(), job(GPU, labels=QUEUE_LABEL)]))
    assert [v for v in queued if v.rule.startswith("kueue-")] == []


def changed(stack: Graph, change: Callable[[dict[str, Any]], None]) -> Graph:
    """A copy of a rendered stack with `change` applied to every resource's inputs."""
    resources = []
    for resource in stack.resources:
        inputs = copy.deepcopy(resource.inputs)
        change(inputs)
        resources.append(dataclasses.replace(resource, inputs=inputs))
    return Graph(stack=stack.stack, resources=resources)


def test_dev_rejects_its_gpu_training_job_without_the_queue_label(stack_graph: Callable[[str], Graph]) -> None:
    dev = stack_graph("dev")
    queues = {r.inputs["metadata"]["namespace"] for r in dev.resources if r.inputs.get("kind") == "LocalQueue"}

    def unlabel(inputs: dict[str, Any]) -> None:
        if inputs.get("kind") in ("Job", "JobSet", "TrainJob"):
            inputs["metadata"].get("labels", {}).pop(kueue.QUEUE_LABEL, None)

    assert evaluate(dev, policies=[KUEUE_QUEUE_LABEL]) == []
    found = evaluate(changed(dev, unlabel), policies=[KUEUE_QUEUE_LABEL])
    assert found and all(v.level == "mandatory" for v in found)
    assert any(v.message.startswith("TrainJob ") for v in found)
    assert {v.message.split(" in team namespace ")[1].split(" ")[0] for v in found} <= queues


def test_dev_rejects_team_quotas_over_a_shrunk_gpu_pool(stack_graph: Callable[[str], Graph]) -> None:
    dev = stack_graph("dev")
    # Every dev team has GPUs on gpu-train, so with that pool cut to one GPU every team's queue is over it.
    gpu_queues = sorted(r.urn for r in dev.resources if r.inputs.get("kind") == "ClusterQueue")

    def shrink(inputs: dict[str, Any]) -> None:
        if inputs.get("kind") == "NodePool" and "nvidia.com/gpu" in inputs["spec"]["limits"]:
            inputs["spec"]["limits"]["nvidia.com/gpu"] = 1

    assert evaluate(dev, policies=[KUEUE_QUOTA_FITS_POOLS]) == []
    found = evaluate(changed(dev, shrink), policies=[KUEUE_QUOTA_FITS_POOLS])
    assert sorted({v.urn for v in found}) == gpu_queues and len(gpu_queues) >= 2
    assert all("spec.limits['nvidia.com/gpu'] of 1" in v.message for v in found)


def test_modelplane_policy_rejects_devs_gpu_trainjob_when_the_platform_drops_its_queue_label(tmp_path: Path) -> None:
    # A scratch program whose jobs carry another label than Kueue's: to the pack, dev's TrainJobs are unqueued.
    tree = scratch_copy(tmp_path)
    edit(tree / "infra" / "k8s" / "kueue.py", f'QUEUE_LABEL: Final = "{kueue.QUEUE_LABEL}"',
         'QUEUE_LABEL: Final = "example.com/not-kueues-label"')
    result = modelplane(tree, "policy", "--stack", "dev", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = [v for v in json.loads(result.stdout)["violations"] if v["rule"] == "kueue-queue-label"]
    trainjobs = [v for v in found if ":TrainJob::" in v["urn"]]
    assert trainjobs and all(v["level"] == "mandatory" for v in found)
    assert all("requests nvidia.com/gpu" in v["message"] and "without the kueue.x-k8s.io/queue-name label" in v["message"]
               for v in trainjobs)
