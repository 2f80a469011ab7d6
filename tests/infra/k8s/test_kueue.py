"""Kueue: the pinned chart, the manager's batch Configuration, system-pool placement, NetworkPolicies, and the
conformance bundle that checks them against the vendored chart."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import pytest
import yaml

from infra import versions
from infra.k8s.kueue import KUEUE_NAMESPACE, Kueue
from infra.review.engine import render_program
from infra.review.graph import HELM_RELEASE, Graph
from tests.conformance.sources import BUNDLES, Bundle
from tests.conformance.vendored import vendored
from tests.support.conformance import chart_defaults, unknown_value_paths

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
BUNDLE = next(b for b in BUNDLES if b.name == "kueue")


def _render(system_pool: bool, monitoring: bool = True) -> Graph:
    def program() -> None:
        Kueue("kueue", system_pool=system_pool, monitoring=monitoring)

    return render_program("test", program)


@pytest.fixture(scope="module")
def eks() -> Graph:
    """The component as EKS stacks install it."""
    return _render(True)


def _values(graph: Graph) -> dict[str, Any]:
    values: dict[str, Any] = graph.one(HELM_RELEASE).inputs["values"]
    return values


def _config(graph: Graph) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(_values(graph)["managerConfig"]["controllerManagerConfigYaml"])
    return config


def _policies(graph: Graph) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in graph.of_type(NETPOL)}


def _chart_config() -> str:
    """The chart's default Configuration string, commented examples included."""
    text: str = chart_defaults(BUNDLE.directory / "values.yaml")["managerConfig"]["controllerManagerConfigYaml"]
    return text


def test_release_installs_the_pinned_chart_into_its_restricted_namespace(eks: Graph) -> None:
    release = eks.one(HELM_RELEASE).inputs
    assert (release["name"], release["chart"], release["version"], release["namespace"]) == (
        "kueue", "oci://registry.k8s.io/kueue/charts/kueue", "0.19.2", KUEUE_NAMESPACE)
    (namespace,) = [r.inputs for r in eks.kubernetes_objects() if r.inputs.get("kind") == "Namespace"]
    assert namespace["metadata"]["name"] == KUEUE_NAMESPACE
    assert {namespace["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"]
            for mode in ("enforce", "audit", "warn")} == {"restricted"}


def test_admission_is_all_or_nothing_with_a_bounded_requeue_backoff(eks: Graph) -> None:
    config = _config(eks)
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2" and config["kind"] == "Configuration"
    assert config["waitForPodsReady"] == {
        "timeout": "10m", "blockAdmission": True,
        "requeuingStrategy": {"timestamp": "Eviction", "backoffBaseSeconds": 60, "backoffMaxSeconds": 1800,
                              "backoffLimitCount": 5}}
    assert config["manageJobsWithoutQueueName"] is False


def test_batch_integrations_are_enabled_and_nothing_else(eks: Graph) -> None:
    assert _config(eks)["integrations"] == {"frameworks": [
        "batch/job", "jobset.x-k8s.io/jobset", "trainer.kubeflow.org/trainjob"]}


def test_config_keeps_the_chart_defaults_the_deployment_relies_on(eks: Graph) -> None:
    # Our string replaces the chart's whole default; its probes, webhook and metrics ports must survive.
    defaults = yaml.safe_load(_chart_config())
    config = _config(eks)
    for key in ("health", "metrics", "webhook", "leaderElection", "controller", "clientConnection"):
        assert config[key] == defaults[key], key


def test_every_config_key_and_framework_is_one_the_chart_documents(eks: Graph) -> None:
    # The chart's default Configuration sets or documents (commented) each key we use; a misspelling is not there.
    documented = set(re.findall(r"([A-Za-z]+):", _chart_config()))
    frameworks = set(re.findall(r'- "([^"]+)"', _chart_config()))

    def keys(node: Any) -> set[str]:
        if not isinstance(node, dict):
            return set()
        # groupKindConcurrency is a map of GroupKinds, not fields.
        return {k for k in node} | {n for k, v in node.items() if k != "groupKindConcurrency" for n in keys(v)}

    config = _config(eks)
    assert keys(config) - documented == set()
    assert set(config["integrations"]["frameworks"]) <= frameworks
    broken = copy.deepcopy(config)
    broken["waitForPodsReady"]["blockAdmision"] = broken["waitForPodsReady"].pop("blockAdmission")
    assert keys(broken) - documented == {"blockAdmision"}


@pytest.mark.parametrize("system_pool", [True, False])
def test_controller_runs_on_the_system_pool_twice_behind_a_pdb_only_when_asked(system_pool: bool) -> None:
    values = _values(_render(system_pool))
    if system_pool:
        assert values["controllerManager"] == {"nodeSelector": {"modelplane.io/pool": "system"}, "replicas": 2,
                                               "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}
    else:
        assert "controllerManager" not in values


def test_webhooks_and_management_cover_only_team_namespaces(eks: Graph) -> None:
    # The chart makes this selector every job webhook's namespaceSelector; without it, the Fail-policy webhooks
    # cover every namespace but kube-system and kueue-system.
    assert _config(eks)["managedJobsNamespaceSelector"] == {
        "matchExpressions": [{"key": "modelplane.io/team", "operator": "Exists"}]}


@pytest.mark.parametrize("monitoring", [True, False])
def test_metrics_are_scraped_and_admitted_only_when_monitored(monitoring: bool) -> None:
    graph = _render(True, monitoring)
    assert _values(graph)["enablePrometheus"] is monitoring
    ingress = _policies(graph)["kueue-controller"]["spec"]["ingress"]
    metrics = [rule for rule in ingress if {"protocol": "TCP", "port": 8443} in rule["ports"]]
    assert len(metrics) == (1 if monitoring else 0)
    assert len(ingress) == (2 if monitoring else 1)


def test_namespace_denies_by_default_and_admits_only_what_kueue_needs(eks: Graph) -> None:
    policies = _policies(eks)
    assert set(policies) == {"default-deny", "allow-dns", "kueue-controller"}
    assert {p["metadata"]["namespace"] for p in policies.values()} == {KUEUE_NAMESPACE}
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    controller = policies["kueue-controller"]["spec"]
    assert controller["policyTypes"] == ["Ingress", "Egress"]
    webhook, metrics = controller["ingress"]
    # The API server calls the webhook and the visibility APIService from control-plane addresses.
    assert webhook == {"ports": [{"protocol": "TCP", "port": 9443}, {"protocol": "TCP", "port": 8082}]}
    assert metrics["ports"] == [{"protocol": "TCP", "port": 8443}]
    (prometheus,) = metrics["from"]
    assert prometheus["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert controller["egress"] == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                     "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}]


def test_release_values_exist_in_the_vendored_chart_and_a_misspelt_key_is_caught(eks: Graph) -> None:
    assert BUNDLE.charts == {versions.KUEUE_CHART: "values.yaml"}
    defaults = chart_defaults(BUNDLE.directory / "values.yaml")
    values = copy.deepcopy(_values(eks))
    assert unknown_value_paths(values, defaults) == []
    values["controllerManager"]["nodeSelectr"] = values["controllerManager"].pop("nodeSelector")
    values["managerConfg"] = values.pop("managerConfig")
    assert unknown_value_paths(values, defaults) == ["controllerManager.nodeSelectr", "managerConfg"]


def test_bundle_vendors_the_queue_crds_of_the_pinned_tag() -> None:
    assert (BUNDLE.version, BUNDLE.repo, BUNDLE.tag) == (versions.KUEUE_VERSION, "kubernetes-sigs/kueue", "v0.19.2")
    source = (BUNDLE.directory / "SOURCE").read_text()
    assert "kubernetes-sigs/kueue" in source and "v0.19.2" in source
    kinds = set()
    for name in BUNDLE.files.values():
        if name != "values.yaml":
            crd = yaml.safe_load((BUNDLE.directory / name).read_text())
            assert crd["spec"]["group"] == "kueue.x-k8s.io"
            kinds.add(crd["spec"]["names"]["kind"])
            assert any(v["name"] == "v1beta2" and v["served"] for v in crd["spec"]["versions"])
    assert kinds == {"ResourceFlavor", "ClusterQueue", "LocalQueue", "Cohort", "WorkloadPriorityClass"}


def test_a_kueue_bump_without_vendored_files_fails_naming_the_refresh() -> None:
    bumped: Bundle = dataclasses.replace(BUNDLE, version="99.0.0")
    with pytest.raises(AssertionError, match=r"kueue 99\.0\.0 .* not vendored.*tests\.conformance\.refresh kueue"):
        vendored(bumped)
