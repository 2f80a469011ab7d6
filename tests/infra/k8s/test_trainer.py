"""Trainer: JobSet and Kubeflow Trainer v2 from their pinned charts, in restricted namespaces behind default-deny
NetworkPolicies, on the system pool with two replicas on EKS only; the v1 training operator is gone from every stack."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from infra import versions
from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from infra.k8s.trainer import JOBSET_NAMESPACE, TRAINER_NAMESPACE, Trainer
from infra.review import engine
from infra.review.engine import render_program
from infra.review.graph import HELM_RELEASE, Graph
from tests.conformance.sources import BUNDLES
from tests.conformance.vendored import unknown_chart_values
from tests.support.graph import render_variant, stack_config_with

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
TRAINER = "modelplane:training:Trainer"
STACKS = ("local", "dev", "staging", "prod")
JOBSET_BUNDLE = next(b for b in BUNDLES if b.name == "jobset")
TRAINER_BUNDLE = next(b for b in BUNDLES if b.name == "trainer")


def _render(system_pool: bool, monitoring: bool = True) -> Graph:
    def program() -> None:
        Trainer("trainer", system_pool=system_pool, monitoring=monitoring)

    return render_program("test", program)


@pytest.fixture(scope="module")
def eks() -> Graph:
    """The component as EKS stacks install it."""
    return _render(True)


def _release(graph: Graph, chart: str) -> dict[str, Any]:
    (release,) = [r.inputs for r in graph.of_type(HELM_RELEASE) if r.inputs["chart"] == chart]
    return release


def _values(graph: Graph, chart: str) -> dict[str, Any]:
    values: dict[str, Any] = _release(graph, chart)["values"]
    return values


def _policies(graph: Graph, namespace: str) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in graph.of_type(NETPOL)
            if r.inputs["metadata"]["namespace"] == namespace}


def test_both_charts_install_at_their_pinned_versions_into_their_own_namespaces(eks: Graph) -> None:
    jobset, trainer = _release(eks, versions.JOBSET_CHART), _release(eks, versions.TRAINER_CHART)
    assert (jobset["name"], jobset["chart"], jobset["version"], jobset["namespace"]) == (
        "jobset", "oci://registry.k8s.io/jobset/charts/jobset", "0.12.0", "jobset-system")
    assert (trainer["name"], trainer["chart"], trainer["version"], trainer["namespace"]) == (
        "kubeflow-trainer", "oci://ghcr.io/kubeflow/charts/kubeflow-trainer", "2.3.0", "kubeflow-system")
    assert len(eks.of_type(HELM_RELEASE)) == 2


def test_trainer_is_released_after_jobset() -> None:
    recorded: dict[str, list[str]] = {}
    register = engine._RecordingMonitor.RegisterResource

    def recording(self: Any, request: Any) -> Any:
        recorded[request.name] = list(request.dependencies)
        return register(self, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine._RecordingMonitor, "RegisterResource", recording)
        _render(False)
    assert any(urn.endswith(f"{HELM_RELEASE}::trainer-jobset") for urn in recorded["trainer-release"])
    assert not any(urn.endswith("::trainer-release") for urn in recorded["trainer-jobset"])


def test_namespaces_enforce_the_restricted_level() -> None:
    graph = _render(False)
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]
                  for r in graph.of_type("kubernetes:core/v1:Namespace")}
    assert set(namespaces) == {JOBSET_NAMESPACE, TRAINER_NAMESPACE}
    for labels in namespaces.values():
        assert {labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "audit", "warn")} == {"restricted"}


def test_trainer_does_not_bundle_jobset_and_installs_no_builtin_runtime(eks: Graph) -> None:
    values = _values(eks, versions.TRAINER_CHART)
    assert values["jobset"] == {"install": False}
    assert values["runtimes"] == {"defaultEnabled": False}
    # The chart renders its runtimes installer Job (which downloads kubectl) only when some runtime is enabled
    # (templates/runtimes/_runtimes.tpl `trainer.runtimes.enabled`): with the chart's defaults none is.
    defaults = yaml.safe_load((TRAINER_BUNDLE.directory / "values.yaml").read_text())

    def enabled(node: Any) -> list[bool]:
        if not isinstance(node, dict):
            return []
        return [v for k, v in node.items() if k in ("enabled", "defaultEnabled")] + \
            [flag for k, v in node.items() for flag in enabled(v)]

    runtimes = {**defaults["runtimes"], **values["runtimes"]}
    assert enabled(runtimes) and not any(enabled(runtimes))
    assert defaults["dataCache"]["runtimes"]["torchDistributedWithCache"]["enabled"] is False


@pytest.mark.parametrize("system_pool", [True, False])
def test_controllers_run_twice_on_the_system_pool_only_on_eks(system_pool: bool) -> None:
    graph = _render(system_pool)
    jobset, trainer = _values(graph, versions.JOBSET_CHART), _values(graph, versions.TRAINER_CHART)
    if system_pool:
        assert jobset["controller"] == {"nodeSelector": {"modelplane.io/pool": "system"}, "replicas": 2,
                                        "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}
        assert trainer["manager"] == {"nodeSelector": {"modelplane.io/pool": "system"}, "replicas": 2}
    else:
        assert "controller" not in jobset and "manager" not in trainer


@pytest.mark.parametrize("monitoring", [True, False])
def test_jobset_metrics_are_scraped_and_admitted_only_when_monitored(monitoring: bool) -> None:
    graph = _render(True, monitoring)
    assert _values(graph, versions.JOBSET_CHART)["prometheus"] == {"enable": monitoring,
                                                                   "prometheusNamespace": "monitoring"}
    ingress = _policies(graph, JOBSET_NAMESPACE)["jobset-controller"]["spec"]["ingress"]
    metrics = [rule for rule in ingress if {"protocol": "TCP", "port": 8443} in rule["ports"]]
    assert len(metrics) == (1 if monitoring else 0)
    if monitoring:
        (prometheus,) = metrics[0]["from"]
        assert prometheus["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert len(ingress) == (2 if monitoring else 1)


@pytest.mark.parametrize(("namespace", "policy"), [(JOBSET_NAMESPACE, "jobset-controller"),
                                                   (TRAINER_NAMESPACE, "trainer-controller")])
def test_each_namespace_denies_by_default_and_admits_only_the_webhook_and_the_api(
    namespace: str, policy: str
) -> None:
    policies = _policies(_render(True, monitoring=False), namespace)
    assert set(policies) == {"default-deny", "allow-dns", policy}
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    controller = policies[policy]["spec"]
    assert controller["podSelector"] == {} and controller["policyTypes"] == ["Ingress", "Egress"]
    # The API server calls the webhook from control-plane addresses; the controller only talks to the API.
    assert controller["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9443}]}]
    assert controller["egress"] == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                     "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}]


@pytest.mark.parametrize("chart", [versions.JOBSET_CHART, versions.TRAINER_CHART])
def test_release_values_exist_in_the_vendored_chart_and_a_misspelt_key_is_caught(eks: Graph, chart: str) -> None:
    values = copy.deepcopy(_values(eks, chart))
    assert unknown_chart_values(chart, values) == []
    values["replicaz"] = 2
    assert unknown_chart_values(chart, values) == ["replicaz"]


def test_trainer_chart_values_under_jobset_are_checked_against_the_jobset_chart() -> None:
    assert unknown_chart_values(versions.TRAINER_CHART, {"jobset": {"install": False, "controller": {"replicas": 2}}}) == []
    assert unknown_chart_values(versions.TRAINER_CHART, {"jobset": {"instal": False}}) == ["jobset.instal"]


def test_bundles_vendor_the_crds_of_the_pinned_tags() -> None:
    assert (JOBSET_BUNDLE.version, JOBSET_BUNDLE.repo, JOBSET_BUNDLE.tag) == ("0.12.0", "kubernetes-sigs/jobset", "v0.12.0")
    assert (TRAINER_BUNDLE.version, TRAINER_BUNDLE.repo, TRAINER_BUNDLE.tag) == ("2.3.0", "kubeflow/trainer", "v2.3.0")
    kinds = set()
    for bundle in (JOBSET_BUNDLE, TRAINER_BUNDLE):
        source = (bundle.directory / "SOURCE").read_text()
        assert bundle.repo in source and bundle.tag in source
        for name in bundle.files.values():
            if name != "values.yaml":
                crd = yaml.safe_load((bundle.directory / name).read_text())
                kinds |= {(crd["spec"]["group"], v["name"], crd["spec"]["names"]["kind"])
                          for v in crd["spec"]["versions"] if v["served"]}
    assert kinds == {("jobset.x-k8s.io", "v1alpha2", "JobSet"), ("trainer.kubeflow.org", "v1alpha1", "TrainJob"),
                     ("trainer.kubeflow.org", "v1alpha1", "TrainingRuntime"),
                     ("trainer.kubeflow.org", "v1alpha1", "ClusterTrainingRuntime")}


@pytest.mark.parametrize(("stack", "system_pool"), [("dev", True), ("prod", True), ("local", False)])
def test_training_stacks_install_trainer_on_their_target(stack_graph: Callable[[str], Graph], stack: str,
                                                          system_pool: bool) -> None:
    graph = stack_graph(stack)
    assert len(graph.of_type(TRAINER)) == 1
    manager = _values(graph, versions.TRAINER_CHART).get("manager", {})
    assert ("nodeSelector" in manager) is system_pool


def test_a_stack_without_training_jobs_or_teams_installs_no_trainer(stack_graph: Callable[[str], Graph]) -> None:
    assert not stack_graph("staging").of_type(TRAINER)


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_trainer_can_be_switched_off_on_every_target(stack: str) -> None:
    graph = render_variant(stack, {"modelplane:addons": {"trainer": False}, "modelplane:training": None})
    assert not graph.of_type(TRAINER)
    assert not [r for r in graph.of_type(HELM_RELEASE)
                if r.inputs["chart"] in (versions.JOBSET_CHART, versions.TRAINER_CHART)]


@pytest.mark.parametrize("stack", STACKS)
def test_nothing_of_the_v1_training_operator_is_left(stack_graph: Callable[[str], Graph], stack: str) -> None:
    graph = stack_graph(stack)
    assert not graph.of_type("modelplane:training:TrainingOperator")
    assert not [r for r in graph.resources if r.type.startswith("kubernetes:kustomize/")]
    assert not [r.inputs["kind"] for r in graph.kubernetes_objects()
                if str(r.inputs.get("apiVersion", "")).startswith("kubeflow.org/")]
    assert "kubeflow" not in {r.inputs["metadata"]["name"] for r in graph.of_type("kubernetes:core/v1:Namespace")}


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_switching_it_off_with_training_jobs_is_a_config_error(stack: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(stack, stack_config_with(stack, {"modelplane:addons": {"trainer": False}}))
    jobs = len(parse_config(stack, stack_config_with(stack, {})).training.jobs)
    assert (f"modelplane:addons.trainer: is false but training.jobs declares {jobs} job(s), which run on JobSet and "
            "Kubeflow Trainer; set it to true or remove the jobs") in [str(i) for i in info.value.issues]


def test_a_stack_with_teams_but_no_jobs_still_gets_the_runtime_for_the_teams_trainjobs() -> None:
    graph = render_variant("dev", {"modelplane:training": None})
    assert graph.of_type(TRAINER)
    (runtime,) = [r for r in graph.resources if r.inputs.get("kind") == "ClusterTrainingRuntime"]
    assert runtime.inputs["metadata"]["name"] == "modelplane-torch"
