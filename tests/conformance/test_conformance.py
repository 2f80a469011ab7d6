"""Every stack against the upstream it installs: each rendered custom resource validates against its CRD's
openAPIV3Schema (unknown fields rejected), and each Helm values path exists in its chart's values.yaml (or sits
under a free-form map). The CRDs and values.yaml are vendored per pinned version (sources.py, refresh.py)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from infra import versions
from infra.review.engine import list_stacks, render
from infra.review.graph import HELM_RELEASE, Graph
from tests.conformance.sources import BUNDLES, Bundle
from tests.conformance.vendored import chart_values_files, crd_schemas_vendored, unknown_chart_values, vendored
from tests.support.conformance import crd_errors

_graphs: dict[str, Graph] = {}


def _is_custom(api_version: str) -> bool:
    # Built-in groups are unqualified ("v1", "apps/v1") or end in .k8s.io; everything else comes from a CRD.
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


@pytest.fixture(scope="module")
def graph() -> Callable[[str], Graph]:
    """A real stack's graph (each renders once per module)."""

    def get(stack: str) -> Graph:
        if stack not in _graphs:
            _graphs[stack] = render(stack)
        return _graphs[stack]

    return get


def _custom_resources(graph: Graph) -> list[dict[str, Any]]:
    return [r.inputs for r in graph.kubernetes_objects() if _is_custom(str(r.inputs.get("apiVersion", "")))]


def _release(graph: Graph, chart: str) -> dict[str, Any]:
    (found,) = [r.inputs for r in graph.of_type(HELM_RELEASE) if r.inputs["chart"] == chart]
    return found


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_every_pinned_version_is_vendored_with_its_source(bundle: Bundle) -> None:
    source = (vendored(bundle) / "SOURCE").read_text()
    assert bundle.repo in source and bundle.tag in source, f"{bundle.directory}/SOURCE does not name {bundle.repo} {bundle.tag}"


def test_a_version_bump_without_vendored_files_says_how_to_refresh() -> None:
    bumped = dataclasses.replace(BUNDLES[0], version="99.0.0")
    with pytest.raises(AssertionError, match=r"karpenter 99\.0\.0 .* not vendored.*tests\.conformance\.refresh karpenter"):
        vendored(bumped)


@pytest.mark.parametrize("stack", list_stacks())
def test_every_custom_resource_validates_against_its_crd(graph: Callable[[str], Graph], stack: str) -> None:
    schemas = crd_schemas_vendored()
    resources = _custom_resources(graph(stack))
    assert resources, f"{stack} renders no custom resources"
    problems = []
    for resource in resources:
        key = (resource["apiVersion"], resource["kind"])
        if key not in schemas:
            problems.append(f"{key}: no vendored CRD; add its CRD to tests/conformance/sources.py")
            continue
        name = resource["metadata"]["name"]
        problems += [f"{resource['kind']} {name}: {error}" for error in crd_errors(resource, schemas[key])]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("stack", list_stacks())
def test_every_helm_values_path_exists_in_its_chart(graph: Callable[[str], Graph], stack: str) -> None:
    charts = chart_values_files()
    problems = []
    for release in graph(stack).of_type(HELM_RELEASE):
        chart = release.inputs["chart"]
        if chart not in charts:
            problems.append(f"{chart}: no vendored values.yaml; add the chart to tests/conformance/sources.py")
            continue
        unknown = unknown_chart_values(chart, release.inputs.get("values") or {})
        problems += [f"{chart}: {path}" for path in unknown]
    assert not problems, "values the charts do not have:\n" + "\n".join(problems)


def test_the_values_check_catches_a_misspelt_key(graph: Callable[[str], Graph]) -> None:
    values = copy.deepcopy(_release(graph("prod"), "kube-prometheus-stack")["values"])
    values["prometheus"]["prometheusSpec"]["retentionSizee"] = values["prometheus"]["prometheusSpec"].pop("retention", "7d")
    values["grafanna"] = values.pop("grafana")
    unknown = unknown_chart_values("kube-prometheus-stack", values)
    assert unknown == ["prometheus.prometheusSpec.retentionSizee", "grafanna"]


def test_grafana_values_are_checked_against_the_grafana_chart_kube_prometheus_stack_installs(
    graph: Callable[[str], Graph]
) -> None:
    values = copy.deepcopy(_release(graph("prod"), "kube-prometheus-stack")["values"])
    grafana = values["grafana"]
    assert grafana["env"] and grafana["extraSecretMounts"]  # keys of the grafana chart only, accepted
    grafana["extraSecretMountz"] = grafana.pop("extraSecretMounts")
    grafana["sidecar"]["datasources"]["extraMountz"] = []
    assert unknown_chart_values("kube-prometheus-stack", values) == ["grafana.sidecar.datasources.extraMountz",
                                                          "grafana.extraSecretMountz"]


def test_the_values_check_catches_a_map_where_the_chart_has_a_scalar(graph: Callable[[str], Graph]) -> None:
    values = copy.deepcopy(_release(graph("prod"), versions.KARPENTER_CHART)["values"])
    values["replicas"] = {"min": 2}
    unknown = unknown_chart_values(versions.KARPENTER_CHART, values)
    assert unknown == ["replicas (dict, chart has int)"]


def test_istiod_legacy_pilot_prefix_and_mesh_config_are_checked_as_the_chart_reads_them() -> None:
    assert unknown_chart_values("istiod", {"pilot": {"cni": {"enabled": True}}, "meshConfig": {"trustDomain": "x"}}) == []
    assert unknown_chart_values("istiod", {"pilot": {"cnii": {"enabled": True}}}) == ["cnii"]


def test_the_crd_check_catches_a_field_that_does_not_exist(graph: Callable[[str], Graph]) -> None:
    schemas = crd_schemas_vendored()
    (pool, *_) = [r for r in _custom_resources(graph("prod")) if r["kind"] == "NodePool"]
    assert crd_errors(pool, schemas[("karpenter.sh/v1", "NodePool")]) == []
    broken = copy.deepcopy(pool)
    broken["spec"]["template"]["spec"]["nodeClassRefs"] = broken["spec"]["template"]["spec"]["nodeClassRef"]
    broken["spec"]["disruption"]["consolidateAfterr"] = "30s"
    errors = crd_errors(broken, schemas[("karpenter.sh/v1", "NodePool")])
    assert len(errors) == 2, errors
    assert "spec.disruption" in errors[0] and "'consolidateAfterr' was unexpected" in errors[0]
    assert "spec.template.spec" in errors[1] and "'nodeClassRefs' was unexpected" in errors[1]


TRAINING_KINDS = {("trainer.kubeflow.org/v1alpha1", "TrainJob"), ("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime"),
                  ("trainer.kubeflow.org/v1alpha1", "TrainingRuntime"), ("jobset.x-k8s.io/v1alpha2", "JobSet")}
"""The kinds training renders on (Trainer v2 and JobSet at the pinned versions)."""


def _train_job() -> dict[str, Any]:
    """A minimal TrainJob as trainer.kubeflow.org/v1alpha1 defines it (pkg/apis/trainer/v1alpha1/trainjob_types.go)."""
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
            "metadata": {"name": "lm", "namespace": "team-ml"},
            "spec": {"runtimeRef": {"name": "modelplane-torch"},
                     "trainer": {"image": "ghcr.io/modelplane/trainer-torch:0.1.0", "numNodes": 2,
                                 "resourcesPerNode": {"limits": {"nvidia.com/gpu": 1}}}}}


def test_training_kinds_are_checked_against_the_pinned_trainer_and_jobset_crds() -> None:
    schemas = set(crd_schemas_vendored())
    assert TRAINING_KINDS - schemas == set()
    assert not {key for key in schemas if key[0] == "kubeflow.org/v1"}, "the v1 training operator's CRDs are gone"


def test_the_crd_check_catches_a_wrong_type_in_a_train_job() -> None:
    schema = crd_schemas_vendored()[("trainer.kubeflow.org/v1alpha1", "TrainJob")]
    assert crd_errors(_train_job(), schema) == []
    broken = _train_job()
    broken["spec"]["trainer"]["numNodes"] = "two"
    broken["spec"]["runtimeReff"] = broken["spec"].pop("runtimeRef")
    errors = crd_errors(broken, schema)
    assert any("spec.trainer.numNodes: 'two' is not of type 'integer'" in e for e in errors), errors
    assert any("'runtimeReff' was unexpected" in e for e in errors), errors
    assert any("'runtimeRef' is a required property" in e for e in errors), errors


def test_the_crd_check_catches_an_unknown_field_in_a_job_set() -> None:
    schema = crd_schemas_vendored()[("jobset.x-k8s.io/v1alpha2", "JobSet")]
    job_set = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "tf"},
               "spec": {"network": {"enableDNSHostnames": True},
                        "replicatedJobs": [{"name": "worker", "replicas": 2, "template": {"spec": {
                            "template": {"spec": {"containers": [{"name": "worker", "image": "trainer-tf"}]}}}}}]}}
    assert crd_errors(job_set, schema) == []
    job_set["spec"]["network"]["enableDnsHostnames"] = job_set["spec"]["network"].pop("enableDNSHostnames")
    job_set["spec"]["replicatedJobs"][0]["replicas"] = "two"
    errors = crd_errors(job_set, schema)
    assert len(errors) == 2, errors
    assert "spec.network" in errors[0] and "'enableDnsHostnames' was unexpected" in errors[0]
    assert "spec.replicatedJobs.0.replicas: 'two' is not of type 'integer'" in errors[1]
