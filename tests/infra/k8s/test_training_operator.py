"""TrainingOperator: the Kubeflow training operator v1, pinned, in its own namespace, on the system pool."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.k8s.training_operator import KUSTOMIZATION_DIR, PORTABLE_KUSTOMIZATION_DIR, TrainingOperator
from infra.review.engine import render_program
from infra.review.graph import Graph
from infra.versions import TRAINING_OPERATOR_REF
from tests.support.graph import render_variant

DIRECTORY = "kubernetes:kustomize/v2:Directory"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _kustomization(directory: str) -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT_ROOT / directory / "kustomization.yaml").read_text()))


def _patches(directory: str) -> dict[str, dict[str, Any]]:
    patches = [yaml.safe_load(p["patch"]) for p in _kustomization(directory)["patches"]]
    return {p["kind"]: p for p in patches}


def test_operator_is_applied_from_the_repo_overlay_with_the_cluster_provider(prod: Graph) -> None:
    directory = prod.one(DIRECTORY)
    assert directory.inputs["directory"] == KUSTOMIZATION_DIR
    assert directory.provider == prod.one("pulumi:providers:kubernetes").urn


def test_overlays_build_on_the_pinned_upstream_release() -> None:
    assert _kustomization(PORTABLE_KUSTOMIZATION_DIR)["resources"] == [
        f"github.com/kubeflow/trainer.git/manifests/overlays/standalone?ref={TRAINING_OPERATOR_REF}"]
    assert _kustomization(KUSTOMIZATION_DIR)["resources"] == ["../training-operator-base"]


def test_operator_runs_on_the_system_pool_on_eks_only() -> None:
    assert "Deployment" not in _patches(PORTABLE_KUSTOMIZATION_DIR)
    deployment = _patches(KUSTOMIZATION_DIR)["Deployment"]
    assert deployment["metadata"] == {"name": "training-operator", "namespace": "kubeflow"}
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"modelplane.io/pool": "system"}


def test_operator_namespace_enforces_a_pod_security_level() -> None:
    namespace = _patches(PORTABLE_KUSTOMIZATION_DIR)["Namespace"]
    assert namespace["metadata"]["name"] == "kubeflow"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_operator_can_be_switched_off_on_every_target(stack: str) -> None:
    assert render_variant(stack, {}).of_type("modelplane:training:TrainingOperator")
    graph = render_variant(stack, {"modelplane:addons": {"trainingOperator": False}})
    assert not graph.of_type(DIRECTORY)
    assert not graph.of_type("modelplane:training:TrainingOperator")


def test_local_stack_runs_the_portable_operator_for_its_cpu_job(stack_graph) -> None:  # type: ignore[no-untyped-def]
    # kind/minikube/k3d nodes have no modelplane.io/pool=system label: the EKS pin would leave the operator Pending.
    assert stack_graph("local").one(DIRECTORY).inputs["directory"] == PORTABLE_KUSTOMIZATION_DIR


def test_operator_defaults_to_the_eks_overlay() -> None:
    graph = render_program("test", lambda: TrainingOperator("defaults") and None)
    assert graph.one(DIRECTORY).inputs["directory"] == KUSTOMIZATION_DIR
    assert graph.one(DIRECTORY).parent == graph.one("modelplane:training:TrainingOperator").urn

