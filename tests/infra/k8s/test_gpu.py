"""GpuNodePools: Karpenter, interruption handling, GPU and CPU NodePools, EC2NodeClasses, device plugin and DCGM."""

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from infra import versions
from infra.aws.karpenter import INTERRUPTION_EVENTS
from infra.config.gpu import AddonsConfig, GpuPoolConfig, KarpenterConfig
from infra.k8s.gpu import GpuNodePools
from infra.review.engine import render_program
from infra.review.graph import HELM_RELEASE, Graph, Resource
from tests.support.graph import assert_all_have_props, assert_count, assert_has_props, policy_statements, render_variant
from workloads.common.vocab import GPU_TOLERATION

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"


def _pool(graph: Graph, name: str) -> dict[str, Any]:
    return next(r.inputs["spec"] for r in graph.of_type(NODE_POOL) if r.inputs["metadata"]["name"] == name)


def _gpu_pools(graph: Graph) -> list[Resource]:
    return [r for r in graph.of_type(NODE_POOL) if "modelplane.io/gpu-pool" in r.inputs["spec"]["template"]["metadata"]
            ["labels"]]


def _requirements(spec: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    return {r["key"]: (r["operator"], r["values"]) for r in spec["template"]["spec"]["requirements"]}


def _node_role_name(graph: Graph) -> str:
    # The node role is auto-named; every EC2NodeClass names it, so they must all agree.
    return str(graph.of_type(NODE_CLASS)[0].inputs["spec"]["role"])


def _release(graph: Graph, release_name: str) -> dict[str, Any]:
    return next(r.inputs for r in graph.of_type(HELM_RELEASE) if r.inputs["name"] == release_name)


def _render(pools: list[dict[str, Any]]) -> Graph:
    """One GpuNodePools built from default sections and `pools` (as the stack config parses them), on its own."""
    def program() -> None:
        GpuNodePools("gpu", [GpuPoolConfig.model_validate(p) for p in pools], KarpenterConfig(), AddonsConfig(),
                     cluster_name="c",
                     cluster_arn="arn:aws:eks:us-east-1:123456789012:cluster/c", cluster_endpoint="https://c",
                     cluster_security_group_id="sg-1", region="us-east-1", tags={})
    return render_program("test", program)


def test_gpu_node_pools_defaults() -> None:
    graph = _render([])
    # No GPU pool: only the CPU pool and its node class, the controller, and no GPU add-ons.
    assert [r.inputs["metadata"]["name"] for r in graph.of_type(NODE_POOL)] == ["cpu"]
    assert [r.inputs["metadata"]["name"] for r in graph.of_type(NODE_CLASS)] == ["al2023-50gib"]
    assert {r.inputs["name"] for r in graph.of_type(HELM_RELEASE)} == {"karpenter", "karpenter-crd"}
    values = _release(graph, "karpenter")["values"]
    assert values["replicas"] == 2
    assert values["controller"]["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                                 "limits": {"cpu": "1", "memory": "1Gi"}}
    cpu = _pool(graph, "cpu")
    assert _requirements(cpu)["karpenter.sh/capacity-type"] == ("In", ["on-demand"])
    assert cpu["limits"] == {"cpu": 64, "memory": "256Gi"}
    assert cpu["disruption"] == {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "1m"}


def test_gpu_pool_defaults_are_on_demand_scale_to_zero_and_cautious_about_disruption() -> None:
    graph = _render([{"name": "a10g", "gpuLimit": 4, "instanceFamilies": ["g5"]}])
    spec = _pool(graph, "a10g")
    assert "replicas" not in spec  # dynamic pool: no node exists until a pod asks for one
    assert _requirements(spec)["karpenter.sh/capacity-type"] == ("In", ["on-demand"])
    assert _requirements(spec)["karpenter.k8s.aws/instance-gpu-count"] == ("In", ["1", "2", "3", "4", "5", "6", "7", "8"])
    assert spec["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "10m",
                                  "budgets": [{"nodes": "10%"}]}
    assert spec["template"]["spec"]["expireAfter"] == "720h"
    assert spec["template"]["spec"]["terminationGracePeriod"] == "24h"
    assert spec["template"]["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                        "name": "al2023-200gib"}
    assert spec["limits"] == {"nvidia.com/gpu": 4}
    assert spec["weight"] == 10


def test_gpu_pool_taints_nodes_for_gpu_only_workloads(prod: Graph) -> None:
    pools = _gpu_pools(prod)
    assert {p.inputs["metadata"]["name"] for p in pools} == {"h100-train", "gpu-infer"}
    for pool in pools:
        template = pool.inputs["spec"]["template"]
        assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
        name = pool.inputs["metadata"]["name"]
        assert template["metadata"]["labels"]["modelplane.io/pool"] == name
        assert template["metadata"]["labels"]["modelplane.io/gpu-pool"] == name


def test_gpu_pool_limits_cap_total_gpus(prod: Graph) -> None:
    assert _pool(prod, "h100-train")["limits"] == {"nvidia.com/gpu": 32}
    assert _pool(prod, "gpu-infer")["limits"] == {"nvidia.com/gpu": 16, "cpu": 512}


def test_gpu_pool_requirements_pin_families_capacity_and_gpus_per_node(prod: Graph) -> None:
    requirements = _requirements(_pool(prod, "h100-train"))
    assert requirements["karpenter.k8s.aws/instance-family"] == ("In", ["p5"])
    assert requirements["karpenter.sh/capacity-type"] == ("In", ["on-demand"])
    assert requirements["karpenter.k8s.aws/instance-gpu-count"] == ("In", ["8"])
    assert requirements["karpenter.k8s.aws/instance-gpu-manufacturer"] == ("In", ["nvidia"])
    assert requirements["kubernetes.io/arch"] == ("In", ["amd64"])


def test_gpu_pool_disruption_weight_and_lifetime_come_from_config(prod: Graph) -> None:
    spec = _pool(prod, "h100-train")
    assert spec["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "15m",
                                  "budgets": [{"nodes": "1"}]}
    assert spec["weight"] == 50
    assert spec["template"]["spec"]["terminationGracePeriod"] == "48h"
    assert spec["template"]["spec"]["nodeClassRef"]["name"] == "al2023-500gib"


def test_dev_gpu_pools_allow_spot(dev: Graph) -> None:
    for pool in _gpu_pools(dev):
        assert _requirements(pool.inputs["spec"])["karpenter.sh/capacity-type"] == ("In", ["spot", "on-demand"])


def test_prod_inference_pool_is_on_demand_only(prod: Graph) -> None:
    spec = _pool(prod, "gpu-infer")
    assert spec["template"]["metadata"]["labels"]["modelplane.io/purpose"] == "inference"
    assert _requirements(spec)["karpenter.sh/capacity-type"] == ("In", ["on-demand"])


def test_cpu_pool_runs_untainted_current_generation_instances(prod: Graph) -> None:
    spec = _pool(prod, "cpu")
    assert "taints" not in spec["template"]["spec"]
    assert _requirements(spec)["karpenter.k8s.aws/instance-category"] == ("In", ["c", "m", "r"])
    assert _requirements(spec)["karpenter.k8s.aws/instance-generation"] == ("Gte", ["5"])
    assert spec["limits"] == {"cpu": 256, "memory": "1024Gi"}
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"


def test_node_classes_require_imdsv2_and_encrypt_gp3_volumes(prod: Graph) -> None:
    classes = assert_all_have_props(prod, NODE_CLASS, {"spec": {"metadataOptions": {
        "httpTokens": "required", "httpPutResponseHopLimit": 1, "httpEndpoint": "enabled"}}})
    for node_class in classes:
        for volume in node_class.inputs["spec"]["blockDeviceMappings"]:
            assert volume["ebs"]["volumeType"] == "gp3" and volume["ebs"]["encrypted"] is True, node_class.urn
    assert_has_props(prod, NODE_CLASS, {"metadata": {"name": "al2023-500gib"}, "spec": {"blockDeviceMappings": [
        {"deviceName": "/dev/xvda", "ebs": {"volumeSize": "500Gi"}}]}})


def test_one_node_class_per_ami_family_and_disk_size(prod: Graph) -> None:
    names = sorted(r.inputs["metadata"]["name"] for r in prod.of_type(NODE_CLASS))
    assert names == ["al2023-200gib", "al2023-500gib", "al2023-50gib"]


def test_node_classes_pin_the_ami_alias_discover_by_tag_and_carry_the_stack_tags(prod: Graph) -> None:
    discovery = [{"tags": {"karpenter.sh/discovery": "modelplane-prod"}}]
    assert_all_have_props(prod, NODE_CLASS, {"spec": {
        "amiSelectorTerms": [{"alias": versions.KARPENTER_AMI_ALIASES["al2023"]}],
        "subnetSelectorTerms": discovery, "securityGroupSelectorTerms": discovery,
        "tags": {"owner": "ml-platform", "cost-center": "cc-4100", "environment": "prod"}}})
    assert {r.inputs["spec"]["role"] for r in prod.of_type(NODE_CLASS)} == {_node_role_name(prod)}


@pytest.fixture(scope="module")
def mixed_ami() -> Graph:
    """An al2023 and a Bottlerocket GPU pool side by side."""
    return _render([{"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4},
                    {"name": "gpu-br", "instanceFamilies": ["g6"], "gpuLimit": 2, "amiFamily": "bottlerocket"}])


def test_bottlerocket_pools_get_their_own_node_class(mixed_ami: Graph) -> None:
    node_class = next(r for r in mixed_ami.of_type(NODE_CLASS) if r.inputs["metadata"]["name"] == "bottlerocket-200gib")
    assert node_class.inputs["spec"]["amiSelectorTerms"] == [{"alias": versions.KARPENTER_AMI_ALIASES["bottlerocket"]}]
    assert [v["deviceName"] for v in node_class.inputs["spec"]["blockDeviceMappings"]] == ["/dev/xvda", "/dev/xvdb"]
    assert _pool(mixed_ami, "gpu-br")["template"]["metadata"]["labels"]["modelplane.io/ami-family"] == "bottlerocket"


def test_only_bottlerocket_pools_need_no_device_plugin() -> None:
    graph = _render([{"name": "gpu-br", "instanceFamilies": ["g6"], "gpuLimit": 2, "amiFamily": "bottlerocket"}])
    releases = {r.inputs["name"] for r in graph.of_type(HELM_RELEASE)}
    assert "nvidia-device-plugin" not in releases
    assert "dcgm-exporter" in releases


def test_device_plugin_skips_bottlerocket_nodes_which_bring_their_own(mixed_ami: Graph) -> None:
    terms = _release(mixed_ami, "nvidia-device-plugin")["values"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "modelplane.io/ami-family", "operator": "In", "values": ["al2023"]} in terms[0]["matchExpressions"]


def test_interruption_queue_is_encrypted_short_lived_and_tls_only(prod: Graph) -> None:
    queue = prod.one("aws:sqs/queue:Queue")
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert queue.inputs["messageRetentionSeconds"] == 300
    statements = json.loads(prod.one("aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])["Statement"]
    allow = next(s for s in statements if s["Effect"] == "Allow")
    assert allow["Principal"] == {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]}
    assert allow["Action"] == "sqs:SendMessage"
    deny = next(s for s in statements if s["Effect"] == "Deny")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_eventbridge_rules_forward_every_interruption_event_to_the_queue(prod: Graph) -> None:
    assert_count(prod, "aws:cloudwatch/eventRule:EventRule", 5)
    patterns = [json.loads(r.inputs["eventPattern"]) for r in prod.of_type("aws:cloudwatch/eventRule:EventRule")]
    assert sorted(p["detail-type"][0] for p in patterns) == sorted(e["detail-type"][0] for e in INTERRUPTION_EVENTS.values())
    assert {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]} in patterns
    assert {"source": ["aws.health"], "detail-type": ["AWS Health Event"]} in patterns
    queue = _release(prod, "karpenter")["values"]["settings"]["interruptionQueue"]
    targets = prod.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == 5
    assert {t.inputs["arn"] for t in targets} == {f"arn:aws:sqs:us-east-1:123456789012:{queue}"}


def test_node_role_joins_through_an_ec2_linux_access_entry(prod: Graph) -> None:
    entry = assert_has_props(prod, "aws:eks/accessEntry:AccessEntry", {"type": "EC2_LINUX"})[0]
    assert entry.inputs["clusterName"] == "modelplane-prod"
    assert entry.inputs["principalArn"].endswith(f":role/{_node_role_name(prod)}")
    attached = {r.inputs["policyArn"].rsplit("/", 1)[-1] for r in prod.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if r.name.startswith("gpu-node-")}
    assert attached == {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonSSMManagedInstanceCore"}


def test_cluster_security_group_is_tagged_for_karpenter_discovery(prod: Graph) -> None:
    tag = assert_has_props(prod, "aws:ec2/tag:Tag", {"key": "karpenter.sh/discovery", "value": "modelplane-prod"})[0]
    assert tag.inputs["resourceId"].startswith("sg-")


def test_controller_runs_on_the_system_pool_with_pod_identity(prod: Graph) -> None:
    values = _release(prod, "karpenter")["values"]
    assert values["nodeSelector"] == {"kubernetes.io/os": "linux", "modelplane.io/pool": "system"}
    assert values["settings"]["clusterName"] == "modelplane-prod"
    assert values["settings"]["interruptionQueue"].startswith("gpu-interruption")
    assert values["settings"]["clusterEndpoint"].startswith("https://")
    assert values["controller"]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert_has_props(prod, "aws:eks/podIdentityAssociation:PodIdentityAssociation",
                     {"namespace": "kube-system", "serviceAccount": "karpenter", "clusterName": "modelplane-prod"})


def test_controller_policy_scopes_every_mutation_to_this_cluster(prod: Graph) -> None:
    statements = [s for urn, s in policy_statements(prod) if "gpu-controller-policy" in urn]
    assert statements
    owned = "kubernetes.io/cluster/modelplane-prod"
    queue = _release(prod, "karpenter")["values"]["settings"]["interruptionQueue"]
    reader = next(s for s in statements if "sqs:ReceiveMessage" in s["Action"])
    assert reader["Resource"].endswith(f":{queue}")
    for statement in statements:
        actions = statement["Action"]
        if statement["Resource"] == "*":
            assert all(a.startswith(("ec2:Describe", "pricing:", "iam:ListInstanceProfiles")) for a in actions), statement
        if any(a in ("ec2:TerminateInstances", "ec2:CreateLaunchTemplate", "iam:CreateInstanceProfile") for a in actions):
            assert owned in json.dumps(statement["Condition"]), statement


def test_helm_releases_are_pinned(prod: Graph) -> None:
    expected = {
        "karpenter-crd": (versions.KARPENTER_CRD_CHART, versions.KARPENTER_VERSION, None),
        "karpenter": (versions.KARPENTER_CHART, versions.KARPENTER_VERSION, None),
        "nvidia-device-plugin": (versions.NVIDIA_DEVICE_PLUGIN_CHART, versions.NVIDIA_DEVICE_PLUGIN_VERSION,
                                 versions.NVIDIA_DEVICE_PLUGIN_REPO),
        "dcgm-exporter": (versions.DCGM_EXPORTER_CHART, versions.DCGM_EXPORTER_VERSION, versions.DCGM_EXPORTER_REPO),
    }
    for release_name, (chart, version, repo) in expected.items():
        inputs = _release(prod, release_name)
        assert (inputs["chart"], inputs["version"], (inputs.get("repositoryOpts") or {}).get("repo")) == (
            chart, version, repo), release_name
    assert _release(prod, "karpenter")["skipCrds"] is True  # CRDs come from the karpenter-crd chart


def test_device_plugin_runs_only_on_al2023_gpu_nodes_and_tolerates_the_taint(prod: Graph) -> None:
    values = _release(prod, "nvidia-device-plugin")["values"]
    assert GPU_TOLERATION in values["tolerations"]
    assert values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "modelplane.io/gpu-pool", "operator": "Exists"},
            {"key": "modelplane.io/ami-family", "operator": "In", "values": ["al2023"]}]}]}
    assert "config" not in values  # no pool time-slices in prod


def test_time_slicing_is_a_named_plugin_config_selected_by_pool_label(dev: Graph) -> None:
    labels = _pool(dev, "gpu-infer")["template"]["metadata"]["labels"]
    assert labels["nvidia.com/device-plugin.config"] == "time-slicing-4"
    assert "nvidia.com/device-plugin.config" not in _pool(dev, "gpu-train")["template"]["metadata"]["labels"]
    config = _release(dev, "nvidia-device-plugin")["values"]["config"]
    assert config["default"] == "default" and "sharing" not in yaml.safe_load(config["map"]["default"])
    shared = yaml.safe_load(config["map"]["time-slicing-4"])
    assert shared["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]


def test_dcgm_exporter_has_a_service_monitor_keeping_workload_labels(prod: Graph) -> None:
    values = _release(prod, "dcgm-exporter")["values"]
    assert values["serviceMonitor"]["enabled"] is True
    assert values["serviceMonitor"]["honorLabels"] is True
    assert values["serviceMonitor"]["interval"] == "15s"
    assert values["tolerations"] == [GPU_TOLERATION]
    assert values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"] == [{"matchExpressions": [{"key": "modelplane.io/gpu-pool", "operator": "Exists"}]}]


def test_karpenter_objects_use_the_cluster_provider(prod: Graph) -> None:
    provider = prod.one("pulumi:providers:kubernetes").urn
    for resource in [*prod.of_type(NODE_POOL), *prod.of_type(NODE_CLASS), *prod.of_type(HELM_RELEASE)]:
        assert resource.provider == provider, resource.urn


def test_gpu_addons_can_be_switched_off() -> None:
    graph = render_variant("dev", {"modelplane:addons": {"nvidiaDevicePlugin": False, "dcgmExporter": False}})
    releases = {r.inputs["name"] for r in graph.of_type(HELM_RELEASE)}
    assert {"karpenter", "karpenter-crd"} <= releases
    assert not {"nvidia-device-plugin", "dcgm-exporter"} & releases


def test_cpu_pool_can_be_switched_off() -> None:
    # The teams' quotas may then name only the GPU pools (a quota on a pool that does not exist is a config error).
    teams = [{"name": "research", "quotas": [{"pool": "gpu-train", "gpus": 2, "cpu": "16", "memory": "96Gi"}]}]
    graph = render_variant("dev", {"modelplane:karpenter": {"cpuPool": {"enabled": False}}, "modelplane:teams": teams})
    assert "cpu" not in {r.inputs["metadata"]["name"] for r in graph.of_type(NODE_POOL)}
    assert "al2023-50gib" not in {r.inputs["metadata"]["name"] for r in graph.of_type(NODE_CLASS)}


def test_local_stack_has_no_karpenter(stack_graph: Callable[[str], Graph]) -> None:
    local = stack_graph("local")
    # Fluent Bit (stdout), Strimzi (the in-cluster Kafka), Kueue (the team's queue), JobSet and Kubeflow Trainer (the
    # TrainJobs) are the local stack's only charts; no Karpenter or NVIDIA.
    charts = sorted(r.inputs["chart"] for r in local.of_type(HELM_RELEASE))
    assert not local.of_type(NODE_POOL) and charts == sorted(
        ["fluent-bit", versions.STRIMZI_CHART, versions.KUEUE_CHART, versions.JOBSET_CHART, versions.TRAINER_CHART])
