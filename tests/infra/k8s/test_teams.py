"""Teams: the dev and local stacks' teams render as Kueue queues over one ResourceFlavor per node pool, with the
quotas of the config, and a team's job runs in the team's namespace with the queue label."""

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from infra.review.graph import Graph, Resource
from tests.support.graph import render_variant
from tests.support.training import JOBSET, TRAIN_JOB, train_job_pod

FLAVOR = "kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor"
CLUSTER_QUEUE = "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue"
LOCAL_QUEUE = "kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def local(stack_graph: Callable[[str], Graph]) -> Graph:
    return stack_graph("local")


def _by_name(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in resources}


def _quotas(cluster_queue: dict[str, Any]) -> dict[str, dict[str, dict[str, str]]]:
    """flavor → resource → {nominalQuota, borrowingLimit?, lendingLimit?}."""
    (group,) = cluster_queue["spec"]["resourceGroups"]
    return {f["name"]: {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in f["resources"]}
            for f in group["flavors"]}


def test_dev_has_one_flavor_per_nodepool_with_its_node_labels(dev: Graph) -> None:
    pools = {r.inputs["metadata"]["name"]: r.inputs["spec"]["template"]["metadata"]["labels"]
             for r in dev.of_type("kubernetes:karpenter.sh/v1:NodePool")}
    flavors = _by_name(dev.of_type(FLAVOR))
    assert sorted(flavors) == sorted(pools) == ["cpu", "gpu-infer", "gpu-train"]
    for name, flavor in flavors.items():
        # Every node label of the flavor is one the NodePool puts on its nodes.
        assert flavor["spec"]["nodeLabels"].items() <= pools[name].items(), name
        assert flavor["spec"]["nodeLabels"]["modelplane.io/pool"] == name


def test_gpu_flavors_carry_the_gpu_taint_so_only_gpu_pods_are_admitted_there(dev: Graph) -> None:
    flavors = _by_name(dev.of_type(FLAVOR))
    assert flavors["gpu-train"]["spec"]["nodeTaints"] == [GPU_TAINT]
    assert flavors["gpu-infer"]["spec"]["nodeTaints"] == [GPU_TAINT]
    assert "nodeTaints" not in flavors["cpu"]["spec"] and "tolerations" not in flavors["cpu"]["spec"]


def test_a_single_capacity_type_pool_marks_its_flavor_spot_or_on_demand() -> None:
    pools = [{"name": "gpu-train", "instanceFamilies": ["g6"], "capacityTypes": ["spot"], "gpuLimit": 4},
             {"name": "gpu-infer", "instanceFamilies": ["g6"], "capacityTypes": ["spot", "on-demand"], "gpuLimit": 2}]
    flavors = _by_name(render_variant("dev", {"modelplane:gpuPools": pools}).of_type(FLAVOR))
    assert flavors["gpu-train"]["spec"]["nodeLabels"]["karpenter.sh/capacity-type"] == "spot"
    assert "karpenter.sh/capacity-type" not in flavors["gpu-infer"]["spec"]["nodeLabels"]
    assert flavors["cpu"]["spec"]["nodeLabels"] == {"modelplane.io/pool": "cpu"}  # dev's CPU pool buys both


def test_dev_has_two_teams_in_one_cohort_each_admitting_only_its_namespace(dev: Graph) -> None:
    queues = _by_name(dev.of_type(CLUSTER_QUEUE))
    assert sorted(queues) == ["product", "research"]
    for team, queue in queues.items():
        assert queue["spec"]["cohortName"] == "modelplane"
        assert queue["spec"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": f"team-{team}"}}
        assert queue["spec"]["resourceGroups"][0]["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    assert queues["research"]["spec"]["preemption"] == {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority"}
    assert queues["product"]["spec"]["preemption"] == {"reclaimWithinCohort": "Any", "withinClusterQueue": "Never"}


def test_dev_quotas_per_flavor_match_the_config(dev: Graph) -> None:
    queues = _by_name(dev.of_type(CLUSTER_QUEUE))
    assert _quotas(queues["research"]) == {
        "gpu-train": {"cpu": {"nominalQuota": "16"}, "memory": {"nominalQuota": "96Gi"},
                      "nvidia.com/gpu": {"nominalQuota": "2", "borrowingLimit": "2"}},
        "cpu": {"cpu": {"nominalQuota": "8"}, "memory": {"nominalQuota": "32Gi"}, "nvidia.com/gpu": {"nominalQuota": "0"}},
    }
    assert _quotas(queues["product"])["gpu-train"]["nvidia.com/gpu"] == {"nominalQuota": "2", "lendingLimit": "1"}


def test_dev_gpu_quotas_fit_the_pool_limit(dev: Graph) -> None:
    limit = next(r.inputs["spec"]["limits"]["nvidia.com/gpu"] for r in dev.of_type("kubernetes:karpenter.sh/v1:NodePool")
                 if r.inputs["metadata"]["name"] == "gpu-train")
    total = sum(float(_quotas(q)["gpu-train"]["nvidia.com/gpu"]["nominalQuota"])
                for q in _by_name(dev.of_type(CLUSTER_QUEUE)).values())
    assert total <= limit


def test_each_team_has_a_local_queue_in_its_restricted_namespace(dev: Graph) -> None:
    local_queues = _by_name(dev.of_type(LOCAL_QUEUE))
    assert {n: (q["metadata"]["namespace"], q["spec"]) for n, q in local_queues.items()} == {
        "research": ("team-research", {"clusterQueue": "research"}),
        "product": ("team-product", {"clusterQueue": "product"})}
    namespaces = _by_name(dev.of_type("kubernetes:core/v1:Namespace"))
    for namespace in ("team-research", "team-product"):
        assert namespaces[namespace]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_only_team_namespaces_match_kueues_managed_namespace_selector(dev: Graph) -> None:
    # Kueue's webhooks (failurePolicy Fail) see only namespaces its selector matches: the teams', named by label.
    release = next(r.inputs for r in dev.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "kueue")
    config = yaml.safe_load(release["values"]["managerConfig"]["controllerManagerConfigYaml"])
    (expression,) = config["managedJobsNamespaceSelector"]["matchExpressions"]
    assert expression["operator"] == "Exists"
    namespaces = _by_name(dev.of_type("kubernetes:core/v1:Namespace"))
    matched = {n for n, ns in namespaces.items() if expression["key"] in ns["metadata"].get("labels", {})}
    assert matched == {"team-research", "team-product"}
    assert {"training", "kueue-system"} <= set(namespaces) - matched
    assert {n: namespaces[n]["metadata"]["labels"][expression["key"]] for n in matched} == {
        "team-research": "research", "team-product": "product"}


def test_each_team_namespace_denies_by_default_and_has_a_trainer_account_with_a_role(dev: Graph) -> None:
    policies = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
                for r in dev.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    accounts = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]): r.inputs
                for r in dev.of_type("kubernetes:core/v1:ServiceAccount")}
    associations = {(r.inputs["namespace"], r.inputs["serviceAccount"])
                    for r in dev.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")}
    for namespace in ("team-research", "team-product"):
        assert {(namespace, "default-deny"), (namespace, "allow-dns")} <= policies
        assert accounts[(namespace, "trainer")]["automountServiceAccountToken"] is False
        assert (namespace, "trainer") in associations


def test_the_teams_job_runs_in_its_namespace_with_the_queue_label(dev: Graph) -> None:
    jobs = _by_name([*dev.of_type(TRAIN_JOB), *dev.of_type(JOBSET)])
    job = jobs["lm-small"]
    assert job["metadata"]["namespace"] == "team-research"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert train_job_pod(dev, job)["spec"]["serviceAccountName"] == "trainer"
    # Jobs without a team keep the training namespace, unqueued.
    for unqueued in ("recommender", "digits-cnn"):
        assert jobs[unqueued]["metadata"]["namespace"] == "training"
        assert "kueue.x-k8s.io/queue-name" not in jobs[unqueued]["metadata"]["labels"]


def test_local_has_one_label_less_flavor_and_a_cpu_only_team(local: Graph) -> None:
    assert [(r.inputs["metadata"]["name"], r.inputs["spec"]) for r in local.of_type(FLAVOR)] == [("cpu", {})]
    (queue,) = local.of_type(CLUSTER_QUEUE)
    assert _quotas(queue.inputs) == {"cpu": {"cpu": {"nominalQuota": "4"}, "memory": {"nominalQuota": "8Gi"},
                                             "nvidia.com/gpu": {"nominalQuota": "0"}}}
    (local_queue,) = local.of_type(LOCAL_QUEUE)
    assert (local_queue.inputs["metadata"]["namespace"], local_queue.inputs["spec"]) == ("team-ml", {"clusterQueue": "ml"})


def test_local_jobs_run_through_the_teams_queue_and_reach_minio(local: Graph) -> None:
    jobs = _by_name(local.of_type(TRAIN_JOB))
    assert sorted(jobs) == ["recommender", "tiny-lm"]
    for job in jobs.values():
        assert (job["metadata"]["namespace"], job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"]) == (
            "team-ml", "ml")
    secrets = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
               for r in local.of_type("kubernetes:core/v1:Secret")}
    assert ("team-ml", "s3-credentials") in secrets
    minio = next(r.inputs for r in local.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                 if r.inputs["metadata"]["name"] == "minio")
    peers = [peer for rule in minio["spec"]["ingress"] for peer in rule["from"]]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-ml"}}} in peers


def test_kueue_is_installed_only_where_there_are_teams(stack_graph: Callable[[str], Graph]) -> None:
    assert not stack_graph("prod").of_type(CLUSTER_QUEUE)
    releases = [r.inputs["name"] for r in stack_graph("prod").of_type("kubernetes:helm.sh/v3:Release")]
    assert "kueue" not in releases


def test_prometheus_scrapes_training_pods_in_the_team_namespaces_too(dev: Graph) -> None:
    monitor = next(r.inputs for r in dev.of_type("kubernetes:monitoring.coreos.com/v1:PodMonitor")
                   if r.inputs["metadata"]["name"] == "modelplane-training")
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["training", "team-research", "team-product"]
