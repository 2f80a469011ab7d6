"""NetworkPolicies of the rendered stacks: default-deny in every owned namespace, and the explicit allows, checked by
evaluating the rendered policies for concrete pods (tests/support/netpol.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import versions
from infra.k8s.inference_runtimes import GATEWAY_PORT, PORTS
from infra.k8s.local import MINIO_LABELS, MINIO_PORT, REDIS_LABELS, REDIS_PORT
from infra.k8s.local import SYSTEM_NAMESPACE as LOCAL_NAMESPACE
from infra.k8s.mesh import GATEWAY_POD_LABELS, GATEWAY_SERVICE_PORTS, INGRESS_NAMESPACE, ISTIOD_POD_LABELS
from infra.k8s.mesh import SYSTEM_NAMESPACE as MESH_NAMESPACE
from infra.k8s.namespaces import INFERENCE_NAMESPACE
from infra.k8s.netpol import ALLOW_DNS, DEFAULT_DENY, DNS_NAMESPACE, DNS_POD_LABELS, DNS_PORT, ISTIOD_XDS_PORT
from infra.k8s.observability import ADAPTER_PORT, LEADER_POD_LABELS, OPERATOR_WEBHOOK_PORT, PROMETHEUS_POD_LABELS
from infra.k8s.observability import NAMESPACE as MONITORING_NAMESPACE
from infra.k8s.recommend import METRICS_PORT as PROCESSOR_METRICS_PORT
from infra.k8s.recommend import SERVICE_ACCOUNT as PROCESSOR
from infra.k8s.streaming import NAMESPACE as KAFKA_NAMESPACE
from infra.k8s.streaming import PORT as KAFKA_PORT
from infra.k8s.trainer import TRAINER_NAMESPACE as OPERATOR_NAMESPACE
from infra.k8s.training_runtime import METRICS_PORT as TRAINER_METRICS_PORT
from infra.review.graph import Graph
from tests.support.graph import assert_kind_validates
from tests.support.netpol import NETWORK_POLICY, Endpoint, NetworkModel, external, pod, pod_template_labels

STACKS = ("local", "dev", "staging", "prod")
TRAINING_KINDS = ("TrainJob", "JobSet")
"""The kinds a TrainingJob renders (PyTorch, TensorFlow)."""
CONFORMANCE = Path(__file__).resolve().parents[2] / "conformance"
"""The vendored upstream chart values (tests/conformance/)."""
RENDEZVOUS_PORT = 29500
"""torchrun's default rendezvous port: a rank-to-rank port no policy names, so only 'all ports' admits it."""
NCCL_PORT = 43127
"""An ephemeral port of the kind NCCL and gloo pick at run time."""
TRAINER_IP, OTHER_IP = "10.0.1.11", "10.0.1.12"


def owned_namespaces(graph: Graph) -> list[str]:
    """The namespaces the stack creates: its Namespace objects, and the training operator's (made by its kustomize
    overlay, invisible to the mock engine)."""
    names = {r.inputs["metadata"]["name"] for r in graph.of_type("kubernetes:core/v1:Namespace")}
    if graph.of_type("modelplane:training:TrainingOperator"):
        names.add(OPERATOR_NAMESPACE)
    return sorted(names)


def trainer(graph: Graph, job: str, ip: str = TRAINER_IP, index: int = 0) -> Endpoint:
    """Rank `index` of `job` in the job's namespace (training, or its team's), labelled as its rendered pod template
    plus the JobSet and Job controllers' index labels (0: the leader)."""
    rendered = next(r.inputs for r in graph.kubernetes_objects()
                    if r.inputs.get("kind") in TRAINING_KINDS and r.inputs["metadata"]["name"] == job)
    labels = {**pod_template_labels(graph, rendered["kind"], job), **LEADER_POD_LABELS,
              "batch.kubernetes.io/job-completion-index": str(index)}
    return pod(rendered["metadata"]["namespace"], labels, ip, {"metrics": TRAINER_METRICS_PORT})


def jobs(graph: Graph) -> list[str]:
    return sorted(r.inputs["metadata"]["name"] for r in graph.kubernetes_objects()
                  if r.inputs.get("kind") in TRAINING_KINDS)


def deployment_pod(graph: Graph, name: str, ip: str = "10.0.2.20") -> Endpoint:
    """A pod of the rendered Deployment `name`."""
    return pod(INFERENCE_NAMESPACE if name != "minio" else LOCAL_NAMESPACE,
               pod_template_labels(graph, "Deployment", name), ip)


PROMETHEUS = pod(MONITORING_NAMESPACE, PROMETHEUS_POD_LABELS, "10.0.3.30")
GATEWAY = pod(INGRESS_NAMESPACE, GATEWAY_POD_LABELS, "10.0.4.40")


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest, stack_graph: Callable[[str], Graph]) -> Graph:
    """Each real stack's graph."""
    return stack_graph(request.param)


def test_every_owned_namespace_has_default_deny_and_dns(stack: Graph) -> None:
    model = NetworkModel(stack)
    for namespace in owned_namespaces(stack):
        specs = {(ns, spec.get("podSelector") == {} and tuple(spec["policyTypes"])) for ns, spec in model.policies}
        assert (namespace, ("Ingress", "Egress")) in specs, f"{stack.stack}: no default-deny in {namespace}"
        named = {r.inputs["metadata"]["name"] for r in stack.of_type(NETWORK_POLICY)
                 if r.inputs["metadata"]["namespace"] == namespace}
        assert {DEFAULT_DENY, ALLOW_DNS} <= named, f"{stack.stack}/{namespace}: {sorted(named)}"


def test_an_unknown_pod_in_an_owned_namespace_is_isolated_both_ways(stack: Graph) -> None:
    model = NetworkModel(stack)
    outsider = pod("default", {"app": "outsider"}, "10.0.9.90")
    for namespace in owned_namespaces(stack):
        intruder = pod(namespace, {"app": "intruder"}, "10.0.9.91")
        assert not model.admits(outsider, intruder, 8080), f"{stack.stack}: {namespace} admits any pod"
        assert not model.admits(intruder, external("203.0.113.9"), 80), f"{stack.stack}: {namespace} egress open"
        assert model.admits(intruder, pod(DNS_NAMESPACE, DNS_POD_LABELS, "10.0.0.2"), DNS_PORT, "UDP")


def test_no_policy_in_namespaces_the_platform_does_not_own(stack: Graph) -> None:
    owned = set(owned_namespaces(stack))
    foreign = [r.urn for r in stack.of_type(NETWORK_POLICY) if r.inputs["metadata"]["namespace"] not in owned]
    assert not foreign


def test_network_policies_validate_against_the_kubernetes_schema(stack: Graph) -> None:
    assert_kind_validates(stack, "NetworkPolicy")


@pytest.mark.parametrize("name", ["local", "dev"])
@pytest.mark.parametrize("port", [TRAINER_METRICS_PORT, RENDEZVOUS_PORT, NCCL_PORT])
def test_a_pod_of_another_job_is_not_admitted_to_a_trainers_ports(stack_graph: Callable[[str], Graph], name: str,
                                                                   port: int) -> None:
    graph = stack_graph(name)
    model = NetworkModel(graph)
    target, other = jobs(graph)[:2]
    assert not model.admits(trainer(graph, other, OTHER_IP), trainer(graph, target), port)
    # The trainer's own ingress refuses it too: the same pod in a namespace without policies (open egress) ...
    assert not model.admits(pod("default", trainer(graph, other).labels, OTHER_IP), trainer(graph, target), port)
    # ... and a pod there that copies the target job's own labels.
    assert not model.admits(pod("default", trainer(graph, target).labels, OTHER_IP), trainer(graph, target), port)


@pytest.mark.parametrize("name", ["local", "dev"])
@pytest.mark.parametrize("port", [RENDEZVOUS_PORT, NCCL_PORT])
def test_a_rank_of_the_same_job_is_admitted_on_any_port(stack_graph: Callable[[str], Graph], name: str,
                                                        port: int) -> None:
    graph = stack_graph(name)
    model = NetworkModel(graph)
    for job in jobs(graph):
        assert model.admits(trainer(graph, job, OTHER_IP, index=1), trainer(graph, job), port), job


def test_ingress_gateway_reaches_inference_pods_but_not_trainers(dev: Graph) -> None:
    model = NetworkModel(dev)
    assert model.admits(GATEWAY, deployment_pod(dev, "lm"), PORTS["modelplane-serve"])
    assert model.admits(GATEWAY, deployment_pod(dev, "digits"), PORTS["tf-serving"])
    assert model.admits(GATEWAY, deployment_pod(dev, "chat"), GATEWAY_PORT)
    for job in jobs(dev):
        assert not model.admits(GATEWAY, trainer(dev, job), TRAINER_METRICS_PORT)
        assert not model.admits(GATEWAY, trainer(dev, job), RENDEZVOUS_PORT)


def test_only_a_services_own_gateway_reaches_its_vllm_runtime(dev: Graph) -> None:
    model = NetworkModel(dev)
    runtime = deployment_pod(dev, "chat-vllm", "10.0.2.21")
    assert model.admits(deployment_pod(dev, "chat"), runtime, PORTS["vllm"])
    assert not model.admits(GATEWAY, runtime, PORTS["vllm"])
    assert not model.admits(deployment_pod(dev, "lm"), runtime, PORTS["vllm"])


def test_a_training_pod_cannot_call_an_inference_pod(dev: Graph) -> None:
    model = NetworkModel(dev)
    for job in jobs(dev):
        assert not model.admits(trainer(dev, job), deployment_pod(dev, "lm"), PORTS["modelplane-serve"])


def test_prometheus_reaches_each_metrics_port(dev: Graph) -> None:
    model = NetworkModel(dev)
    for job in jobs(dev):
        assert model.admits(PROMETHEUS, trainer(dev, job), TRAINER_METRICS_PORT), job
    assert model.admits(PROMETHEUS, deployment_pod(dev, "lm"), PORTS["modelplane-serve"])
    assert model.admits(PROMETHEUS, deployment_pod(dev, "chat-vllm"), PORTS["vllm"])
    assert model.admits(PROMETHEUS, deployment_pod(dev, "chat"), GATEWAY_PORT)
    assert model.admits(PROMETHEUS, deployment_pod(dev, PROCESSOR), PROCESSOR_METRICS_PORT)
    grafana = pod(MONITORING_NAMESPACE, {"app.kubernetes.io/name": "grafana"}, "10.0.3.31")
    assert not model.admits(grafana, trainer(dev, jobs(dev)[0]), TRAINER_METRICS_PORT)


def test_sidecars_and_the_gateway_reach_istiod_and_the_api_server_reaches_its_webhook(dev: Graph) -> None:
    model = NetworkModel(dev)
    istiod = pod(MESH_NAMESPACE, ISTIOD_POD_LABELS, "10.0.5.50")
    assert model.admits(deployment_pod(dev, "lm"), istiod, ISTIOD_XDS_PORT)
    assert model.admits(GATEWAY, istiod, ISTIOD_XDS_PORT)
    assert model.admits(external("10.0.100.5"), istiod, 15017)
    assert model.admits(external("198.51.100.7"), GATEWAY, 80)
    assert not model.admits(trainer(dev, jobs(dev)[0]), istiod, ISTIOD_XDS_PORT)


def test_only_api_callers_reach_the_kubernetes_api(stack_graph: Callable[[str], Graph]) -> None:
    local = stack_graph("local")
    model = NetworkModel(local)
    api_server = external("172.18.0.2")
    operator = pod(OPERATOR_NAMESPACE, {"control-plane": "kubeflow-training-operator"}, "10.0.6.60")
    assert model.admits(operator, api_server, 6443)
    assert not model.admits(trainer(local, jobs(local)[0]), api_server, 6443)
    assert not model.admits(deployment_pod(local, "minio"), api_server, 6443)


def test_local_workloads_reach_minio_and_redis_and_nothing_else_does(stack_graph: Callable[[str], Graph]) -> None:
    local = stack_graph("local")
    model = NetworkModel(local)
    minio = pod(LOCAL_NAMESPACE, MINIO_LABELS, "10.0.7.70")
    redis = pod(LOCAL_NAMESPACE, REDIS_LABELS, "10.0.7.71")
    job = trainer(local, jobs(local)[0])
    assert model.admits(job, minio, MINIO_PORT)
    assert not model.admits(job, redis, REDIS_PORT)
    assert model.admits(deployment_pod(local, "tiny-lm"), redis, REDIS_PORT)
    assert model.admits(pod(LOCAL_NAMESPACE, {"batch.kubernetes.io/job-name": "minio-buckets"}), minio, MINIO_PORT)
    assert not model.admits(pod("default", {"app": "x"}), minio, MINIO_PORT)


def test_the_topics_job_reaches_the_local_broker(stack_graph: Callable[[str], Graph]) -> None:
    local = stack_graph("local")
    model = NetworkModel(local)
    topics = pod(INFERENCE_NAMESPACE, pod_template_labels(local, "Job", next(
        r.inputs["metadata"]["name"] for r in local.of_type("kubernetes:batch/v1:Job")
        if r.inputs["metadata"]["name"].startswith("kafka-topics-"))))
    broker = pod(KAFKA_NAMESPACE, {"strimzi.io/cluster": "modelplane", "strimzi.io/kind": "Kafka"}, "10.0.8.80")
    # The broker's ingress is Strimzi's own generated policy (not rendered): only the Job's side is checked.
    assert model.egress_allows(topics, broker, KAFKA_PORT)
    assert not model.egress_allows(topics, broker, KAFKA_PORT + 1)
    assert not model.egress_allows(topics, external("203.0.113.9"), KAFKA_PORT)


def _vendored_values(path: str) -> dict[str, Any]:
    return yaml.safe_load((CONFORMANCE / path).read_text())


def test_chart_ports_the_policies_open_are_the_pinned_charts_defaults() -> None:
    gateway = _vendored_values(f"istio/{versions.ISTIO_VERSION}/values-gateway.yaml")
    service_ports = gateway["_internal_defaults_do_not_set"]["service"]["ports"]
    assert sorted(GATEWAY_SERVICE_PORTS) == sorted(port["targetPort"] for port in service_ports)
    stack = _vendored_values(f"kube-prometheus-stack/{versions.KUBE_PROMETHEUS_STACK_VERSION}/values.yaml")
    assert stack["prometheusOperator"]["tls"]["internalPort"] == OPERATOR_WEBHOOK_PORT
    adapter = _vendored_values(f"prometheus-adapter/{versions.PROMETHEUS_ADAPTER_VERSION}/values.yaml")
    assert adapter["listenPort"] == ADAPTER_PORT


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_eks_enforces_the_policies(stack_graph: Callable[[str], Graph], name: str) -> None:
    addon = next(r for r in stack_graph(name).of_type("aws:eks/addon:Addon") if r.inputs["addonName"] == "vpc-cni")
    assert json.loads(addon.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
