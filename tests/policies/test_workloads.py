"""Kubernetes workload security rules across Deployments, Jobs, Kubeflow jobs and DaemonSets."""

import copy

import pytest

from policies.rules.workloads import (
    K8S_IMAGE_PINNED,
    K8S_NO_HOST_ACCESS,
    K8S_NO_PRIVILEGED,
    K8S_RESOURCE_LIMITS,
    K8S_RUN_AS_NON_ROOT,
)
from tests.policies.helpers import k8s, k8s_type, violations

CONTAINER = {
    "name": "server", "image": "ghcr.io/modelplane/serve:0.1.0",
    "resources": {"requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
                  "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}},
    "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
}
POD = {"securityContext": {"runAsNonRoot": True, "runAsUser": 10001}, "containers": [CONTAINER],
       "volumes": [{"name": "tmp", "emptyDir": {}}]}
ALL_RULES = [K8S_NO_PRIVILEGED, K8S_RUN_AS_NON_ROOT, K8S_NO_HOST_ACCESS, K8S_RESOURCE_LIMITS, K8S_IMAGE_PINNED]


def deployment(pod: dict | None = None) -> dict:
    return k8s("apps/v1", "Deployment", "llm", {"replicas": 2, "template": {"spec": pod or copy.deepcopy(POD)}},
               namespace="inference")


def pytorch_job(pod: dict | None = None) -> dict:
    template = {"template": {"spec": pod or copy.deepcopy(POD)}}
    return k8s("kubeflow.org/v1", "PyTorchJob", "pretrain", {"pytorchReplicaSpecs": {"Master": template,
                                                                                     "Worker": template}})


def with_container(**changes) -> dict:
    pod = copy.deepcopy(POD)
    pod["containers"][0].update(changes)
    return pod


def check(policy, obj: dict, **kwargs) -> list[str]:
    return violations(policy, k8s_type(obj), obj, **kwargs)


@pytest.mark.parametrize("policy", ALL_RULES)
@pytest.mark.parametrize("make", [deployment, pytorch_job])
def test_hardened_pods_comply(policy, make) -> None:
    assert check(policy, make()) == []


@pytest.mark.parametrize("context", [{"privileged": True}, {"capabilities": {"add": ["SYS_ADMIN"]}}])
def test_privileged_container_is_reported(context) -> None:
    found = check(K8S_NO_PRIVILEGED, deployment(with_container(securityContext=context)))
    assert len(found) == 1 and "Deployment inference/llm spec.template.spec.containers[server]" in found[0]


def test_kubeflow_replicas_are_each_checked() -> None:
    found = check(K8S_NO_PRIVILEGED, pytorch_job(with_container(securityContext={"privileged": True})))
    assert len(found) == 2
    assert any("pytorchReplicaSpecs.Master" in m for m in found) and any("pytorchReplicaSpecs.Worker" in m for m in found)


@pytest.mark.parametrize(("pod_context", "container_context", "expected"), [
    ({}, {}, "runAsNonRoot: unset"),
    ({"runAsNonRoot": True}, {"runAsNonRoot": False}, "runAsNonRoot: False"),
    ({"runAsNonRoot": True}, {"runAsUser": 0}, "runAsUser: 0"),
])
def test_root_containers_are_reported(pod_context, container_context, expected) -> None:
    pod = with_container(securityContext=container_context)
    pod["securityContext"] = pod_context
    found = check(K8S_RUN_AS_NON_ROOT, deployment(pod))
    assert len(found) == 1 and expected in found[0]


def test_container_level_non_root_alone_complies() -> None:
    pod = with_container(securityContext={"runAsNonRoot": True})
    pod["securityContext"] = {}
    assert check(K8S_RUN_AS_NON_ROOT, deployment(pod)) == []


@pytest.mark.parametrize(("change", "expected"), [
    ({"hostNetwork": True}, "hostNetwork: true"),
    ({"hostPID": True}, "hostPID: true"),
    ({"volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]}, "hostPath volume 'docker'"),
])
def test_host_access_is_reported(change, expected) -> None:
    found = check(K8S_NO_HOST_ACCESS, deployment({**copy.deepcopy(POD), **change}))
    assert len(found) == 1 and expected in found[0]


@pytest.mark.parametrize(("resources", "expected"), [
    ({}, "limits.cpu, limits.memory"),
    ({"limits": {"cpu": "1"}}, "limits.memory"),
    ({"requests": {"nvidia.com/gpu": "2"}, "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}},
     "nvidia.com/gpu (must equal its request)"),
])
def test_missing_limits_are_reported(resources, expected) -> None:
    found = check(K8S_RESOURCE_LIMITS, deployment(with_container(resources=resources)))
    assert len(found) == 1 and expected in found[0]


def test_init_containers_need_limits_too() -> None:
    pod = copy.deepcopy(POD)
    pod["initContainers"] = [{"name": "fetch", "image": "amazon/aws-cli:2.27.50"}]
    found = check(K8S_RESOURCE_LIMITS, deployment(pod))
    assert len(found) == 1 and "initContainers[fetch]" in found[0]


@pytest.mark.parametrize("image", ["nginx", "nginx:latest", "registry:5000/team/app", ""])
def test_unpinned_images_are_reported(image) -> None:
    found = check(K8S_IMAGE_PINNED, deployment(with_container(image=image)))
    assert len(found) == 1 and "not pinned" in found[0]


@pytest.mark.parametrize("image", ["nginx:1.27.3", "registry:5000/team/app:2.0", "busybox@sha256:" + "a" * 64])
def test_pinned_images_comply(image) -> None:
    assert check(K8S_IMAGE_PINNED, deployment(with_container(image=image))) == []


def test_digest_can_be_required() -> None:
    assert check(K8S_IMAGE_PINNED, deployment(), config={"requireDigest": True})


def test_cronjob_pod_templates_are_found() -> None:
    cron = k8s("batch/v1", "CronJob", "gc", {"jobTemplate": {"spec": {"template": {"spec": with_container(image="x")}}}})
    found = check(K8S_IMAGE_PINNED, cron)
    assert len(found) == 1 and "spec.jobTemplate.spec.template.spec.containers[server]" in found[0]


def test_helm_values_are_not_pod_templates() -> None:
    release = {"chart": "x", "version": "1.0.0", "values": {"containers": [{"image": "nginx", "privileged": True}]}}
    assert violations(K8S_NO_PRIVILEGED, "kubernetes:helm.sh/v3:Release", release) == []
