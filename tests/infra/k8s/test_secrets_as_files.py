"""Secrets as files: no Secret value reaches a container as an env var in a cloud stack, Secrets are mounted as
read-only files the workloads' `*_file` settings point at, and no pod the program builds mounts an API token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.k8s.inference_runtimes import API_KEY_SECRET_KEY
from infra.k8s.podspec import REDIS_URL_SECRET_KEY, SECRET_FILE_MODE, SECRETS_VOLUME
from infra.review.engine import SECRET
from infra.review.graph import Graph, Resource
from tests.support.training import training_pods
from workloads.common.settings import API_KEY_FILE, REDIS_URL_FILE, SECRETS_DIR
from workloads.gateway.settings import GatewaySettings
from workloads.recommend.model_settings import ServiceSettings
from workloads.recommend.settings import ProcessorSettings
from workloads.serve.settings import ServeSettings

CLOUD_STACKS = ("dev", "staging", "prod")
"""The non-local stacks: the acceptance's scope (the local stack keeps MinIO's keys as env)."""
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
"""Where the pod template sits in each workload kind the program builds directly."""


def pod_templates(graph: Graph) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template in the graph: `where` is the resource's URN. A TrainJob's pod is its
    runtime's template with the TrainJob's trainer and patches applied (tests/support/training.py)."""
    for resource in graph.kubernetes_objects():
        if resource.type in POD_TEMPLATE_PATHS:
            spec: Any = resource.inputs
            for key in POD_TEMPLATE_PATHS[resource.type]:
                spec = spec[key]
            yield resource.urn, spec
    for resource, template in training_pods(graph):
        yield resource.urn, template["spec"]


def secret_env(where: str, pod: dict[str, Any]) -> list[str]:
    """One line per env var or envFrom of a container of `pod` taken from a Secret, or holding a Pulumi secret (which
    the graph renders as SECRET), naming resource and container."""
    found = []
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        for var in container.get("env", []):
            if var.get("value") == SECRET:
                found.append(f"{where} container {container['name']}: env {var['name']} holds a Pulumi secret")
            elif "secretKeyRef" in (var.get("valueFrom") or {}):
                found.append(f"{where} container {container['name']}: env {var['name']} from Secret "
                             f"{var['valueFrom']['secretKeyRef'].get('name')}")
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                found.append(f"{where} container {container['name']}: envFrom Secret {source['secretRef']['name']}")
    return found


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_no_secret_reaches_a_container_as_an_env_var(stack_graph: Callable[[str], Graph], stack: str) -> None:
    pods = list(pod_templates(stack_graph(stack)))
    assert pods, f"{stack}: no pod template found to scan"
    leaks = [line for where, pod in pods for line in secret_env(where, pod)]
    assert not leaks, "Secrets as env vars (mount them as files instead):\n  " + "\n  ".join(leaks)


def test_the_scan_covers_the_training_pods(stack_graph: Callable[[str], Graph]) -> None:
    scanned = [where for where, _ in pod_templates(stack_graph("dev"))]
    assert any(":TrainJob::lm-small-job" in where for where in scanned), scanned
    assert any(":JobSet::digits-cnn-job" in where for where in scanned), scanned
    # The local stack keeps MinIO's keys as env: the scan sees them in its TrainJobs' pods.
    local = [line for where, pod in pod_templates(stack_graph("local")) if ":TrainJob::" in where
             for line in secret_env(where, pod)]
    assert any("env AWS_SECRET_ACCESS_KEY from Secret s3-credentials" in line for line in local), local


def test_the_scan_names_the_resource_the_container_and_the_variable() -> None:
    pod = {"initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "keys"}}]}],
           "containers": [{"name": "app", "env": [{"name": "PLAIN", "value": "x"}, {"name": "TOKEN", "valueFrom": {
               "secretKeyRef": {"name": "tokens", "key": "t"}}}, {"name": "PASSWORD", "value": SECRET}]}]}
    assert secret_env("urn:deploy", pod) == ["urn:deploy container init: envFrom Secret keys",
                                            "urn:deploy container app: env TOKEN from Secret tokens",
                                            "urn:deploy container app: env PASSWORD holds a Pulumi secret"]


@pytest.mark.parametrize("stack", ("local", *CLOUD_STACKS))
def test_no_pod_the_program_builds_mounts_a_service_account_token(stack_graph: Callable[[str], Graph],
                                                                  stack: str) -> None:
    pods = list(pod_templates(stack_graph(stack)))
    assert pods, f"{stack}: no pod template found"
    # None of them calls the Kubernetes API (the operators that do are Helm charts, not built here).
    mounted = [where for where, pod in pods if pod.get("automountServiceAccountToken") is not False]
    assert not mounted, f"{stack}: pods that would mount an API token: {mounted}"


def _pod(graph: Graph, deployment: str) -> dict[str, Any]:
    found: list[Resource] = [r for r in graph.of_type("kubernetes:apps/v1:Deployment")
                             if r.inputs["metadata"]["name"] == deployment]
    assert len(found) == 1, f"expected one Deployment {deployment}, found {len(found)}"
    pod: dict[str, Any] = found[0].inputs["spec"]["template"]["spec"]
    return pod


def _secret_files(pod: dict[str, Any]) -> dict[str, str]:
    """{file name: Secret key} of the pod's secrets volume, checking it is read-only and 0440."""
    (volume,) = [v for v in pod["volumes"] if v["name"] == SECRETS_VOLUME]
    assert volume["projected"]["defaultMode"] == SECRET_FILE_MODE
    (container,) = pod["containers"]
    assert {"name": SECRETS_VOLUME, "mountPath": SECRETS_DIR, "readOnly": True} in container["volumeMounts"]
    return {item["path"]: item["key"] for source in volume["projected"]["sources"]
            for item in source["secret"]["items"]}


def _env(pod: dict[str, Any]) -> dict[str, str]:
    (container,) = pod["containers"]
    return {var["name"]: var["value"] for var in container["env"]}


def test_our_server_reads_its_cache_url_and_api_key_from_secret_files(dev: Graph) -> None:
    pod = _pod(dev, "lm")
    assert _secret_files(pod) == {REDIS_URL_FILE: REDIS_URL_SECRET_KEY, API_KEY_FILE: API_KEY_SECRET_KEY}
    env = _env(pod)
    assert env[ServeSettings.env_name("redis_url_file")] == f"{SECRETS_DIR}/{REDIS_URL_FILE}"
    assert env[ServeSettings.env_name("api_key_file")] == f"{SECRETS_DIR}/{API_KEY_FILE}"
    assert ServeSettings.env_name("api_key_env") not in env and ServeSettings.env_name("redis_url") not in env


def test_the_gateway_reads_its_cache_url_and_api_keys_from_secret_files(dev: Graph) -> None:
    pod = _pod(dev, "chat")
    assert _secret_files(pod) == {REDIS_URL_FILE: REDIS_URL_SECRET_KEY, API_KEY_FILE: API_KEY_SECRET_KEY}
    env = _env(pod)
    assert env[GatewaySettings.env_name("redis_url_file")] == f"{SECRETS_DIR}/{REDIS_URL_FILE}"
    assert env[GatewaySettings.env_name("api_keys_file")] == f"{SECRETS_DIR}/{API_KEY_FILE}"


def test_the_recommendation_pods_read_the_features_redis_url_from_a_secret_file(dev: Graph) -> None:
    for deployment, settings in (("recommend-model", ServiceSettings), ("recommend-processor", ProcessorSettings)):
        pod = _pod(dev, deployment)
        assert _secret_files(pod) == {REDIS_URL_FILE: REDIS_URL_SECRET_KEY}
        assert _env(pod)[settings.env_name("redis_url_file")] == f"{SECRETS_DIR}/{REDIS_URL_FILE}"


def test_the_vllm_runtime_gets_no_secret(dev: Graph) -> None:
    # The gateway in front checks the API keys; only it may call the runtime (its AuthorizationPolicy).
    pod = _pod(dev, "chat-vllm")
    assert not [v for v in pod["volumes"] if v["name"] == SECRETS_VOLUME]
    assert not secret_env("chat-vllm", pod)
