"""LocalServices: MinIO and Redis in-cluster with generated credentials, no AWS."""

from typing import Any

import pytest

from infra.k8s.local import LocalServices
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_kind_validates


@pytest.fixture(scope="module")
def graph() -> Graph:
    return render_program("local", lambda: LocalServices("local", workload_namespaces=["training", "inference"]) and None)


def _by_name(graph: Graph, type_: str, name: str) -> dict[str, Any]:
    return next(r.inputs for r in graph.of_type(type_) if r.inputs["metadata"]["name"] == name)


def test_no_aws_resources(graph: Graph) -> None:
    assert not [r for r in graph.resources if r.type.startswith("aws:")]


def test_workload_namespaces_get_s3_credentials_pointing_at_minio(graph: Graph) -> None:
    secrets = [r.inputs for r in graph.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "s3-credentials"]
    assert {s["metadata"]["namespace"] for s in secrets} == {"training", "inference"}
    # The generated keys never appear in the graph.
    assert all(set(s["stringData"].values()) == {"[secret]"} for s in secrets)


def test_minio_and_redis_run_in_the_system_namespace(graph: Graph) -> None:
    deployments = graph.of_type("kubernetes:apps/v1:Deployment")
    assert {(d.inputs["metadata"]["name"], d.inputs["metadata"]["namespace"]) for d in deployments} == {
        ("minio", "modelplane-system"), ("redis", "modelplane-system")}


def test_minio_runs_non_root_with_health_probes(graph: Graph) -> None:
    pod = _by_name(graph, "kubernetes:apps/v1:Deployment", "minio")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert pod["containers"][0]["image"].startswith("quay.io/minio/minio:RELEASE.")


def test_bucket_job_creates_the_three_buckets(graph: Graph) -> None:
    script = _by_name(graph, "kubernetes:batch/v1:Job", "minio-buckets")["spec"]["template"]["spec"]["containers"][0]
    assert all(f"local/{b}" in script["command"][2] for b in ("datasets", "checkpoints", "models"))


def test_redis_requires_a_password_and_keeps_no_data(graph: Graph) -> None:
    container = _by_name(graph, "kubernetes:apps/v1:Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert "--save" in container["args"] and "allkeys-lru" in container["args"]


@pytest.mark.parametrize("kind", ["Deployment", "Service", "Secret", "Job", "PersistentVolumeClaim"])
def test_objects_validate_against_the_kubernetes_schema(graph: Graph, kind: str) -> None:
    assert_kind_validates(graph, kind)
