"""Kubernetes workload security rules across Deployments, Jobs, JobSets, training runtimes, TrainJobs and DaemonSets."""

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


def replicated_jobs(pod: dict | None, names: tuple[str, ...]) -> list[dict]:
    return [{"name": name, "replicas": 1, "template": {"spec": {"template": {"spec": pod or copy.deepcopy(POD)}}}}
            for name in names]


def jobset(pod: dict | None = None) -> dict:
    return k8s("jobset.x-k8s.io/v1alpha2", "JobSet", "digits", {"replicatedJobs": replicated_jobs(pod, ("worker",))})


def runtime(pod: dict | None = None, names: tuple[str, ...] = ("node",)) -> dict:
    """A ClusterTrainingRuntime (cluster-scoped): its pod templates sit in a JobSet template."""
    spec = {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": replicated_jobs(pod, names)}}}
    return k8s("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime", "modelplane-torch", spec, namespace=None)


def trainjob(trainer: dict | None = None, pod_patch: dict | None = None) -> dict:
    """A TrainJob on the runtime above; `pod_patch` is the node pod's PodSpecPatch of one runtime patch."""
    spec: dict = {"runtimeRef": {"name": "modelplane-torch"},
                  "trainer": trainer if trainer is not None else {
                      "image": "ghcr.io/modelplane/trainer-torch:0.1.0", "numNodes": 2,
                      "resourcesPerNode": copy.deepcopy(CONTAINER["resources"])}}
    if pod_patch is not None:
        replicated = [{"name": "node", "template": {"spec": {"template": {"spec": pod_patch}}}}]
        spec["runtimePatches"] = [{"manager": "modelplane.io/platform",
                                   "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": replicated}}}}]
    return k8s("trainer.kubeflow.org/v1alpha1", "TrainJob", "pretrain", spec, namespace="team-ml")


# What TrainingJob patches into the runtime's node pod: no image, no resources (ContainerPatch has neither).
PATCH = {"serviceAccountName": "trainer", "nodeSelector": {"modelplane.io/pool": "gpu-train"},
         "containers": [{"name": "node", "env": [{"name": "HOME", "value": "/tmp"}]}]}


def with_container(**changes) -> dict:
    pod = copy.deepcopy(POD)
    pod["containers"][0].update(changes)
    return pod


def check(policy, obj: dict, **kwargs) -> list[str]:
    return violations(policy, k8s_type(obj), obj, **kwargs)


@pytest.mark.parametrize("policy", ALL_RULES)
@pytest.mark.parametrize("make", [deployment, jobset, runtime, trainjob, lambda: trainjob(pod_patch=copy.deepcopy(PATCH))],
                         ids=["deployment", "jobset", "runtime", "trainjob", "trainjob-patched"])
def test_hardened_pods_comply(policy, make) -> None:
    assert check(policy, make()) == []


@pytest.mark.parametrize("context", [{"privileged": True}, {"capabilities": {"add": ["SYS_ADMIN"]}}])
def test_privileged_container_is_reported(context) -> None:
    found = check(K8S_NO_PRIVILEGED, deployment(with_container(securityContext=context)))
    assert len(found) == 1 and "Deployment inference/llm spec.template.spec.containers[server]" in found[0]


def test_each_replicated_job_of_a_jobset_is_checked() -> None:
    pod = with_container(securityContext={"privileged": True})
    obj = k8s("jobset.x-k8s.io/v1alpha2", "JobSet", "digits", {"replicatedJobs": replicated_jobs(pod, ("chief", "worker"))})
    found = check(K8S_NO_PRIVILEGED, obj)
    assert len(found) == 2
    assert any("JobSet apps/digits spec.replicatedJobs[chief].template.spec.template.spec.containers[server]" in m
               for m in found)
    assert any("spec.replicatedJobs[worker].template.spec.template.spec.containers[server]" in m for m in found)


@pytest.mark.parametrize(("policy", "pod", "expected"), [
    (K8S_NO_PRIVILEGED, with_container(securityContext={"privileged": True}), "runs with privileged: true"),
    (K8S_RUN_AS_NON_ROOT, with_container(securityContext={"runAsUser": 0}), "may run as root (runAsUser: 0)"),
    (K8S_NO_HOST_ACCESS, {**copy.deepcopy(POD), "hostNetwork": True}, "hostNetwork: true"),
    (K8S_RESOURCE_LIMITS, with_container(resources={}), "sets no limits.cpu, limits.memory"),
    (K8S_IMAGE_PINNED, with_container(image="pytorch/pytorch"), "not pinned"),
])
def test_a_training_runtimes_pod_templates_are_checked(policy, pod, expected) -> None:
    found = check(policy, runtime(pod))
    assert len(found) == 1 and expected in found[0]
    assert ("ClusterTrainingRuntime modelplane-torch spec.template.spec.replicatedJobs[node].template.spec.template.spec"
            in found[0])


def test_a_runtimes_limits_are_named_as_every_trainjobs_defaults() -> None:
    [found] = check(K8S_RESOURCE_LIMITS, runtime(with_container(resources={})))
    assert "what every TrainJob that sets none runs with" in found
    [plain] = check(K8S_RESOURCE_LIMITS, deployment(with_container(resources={})))
    assert "TrainJob" not in plain


@pytest.mark.parametrize("image", ["ghcr.io/modelplane/trainer-torch", "ghcr.io/modelplane/trainer-torch:latest", ""])
def test_a_trainjobs_unpinned_trainer_image_is_reported(image) -> None:
    found = check(K8S_IMAGE_PINNED, trainjob({"image": image, "numNodes": 1}))
    assert len(found) == 1 and "TrainJob team-ml/pretrain spec.trainer.image" in found[0] and "not pinned" in found[0]


def test_a_trainjob_without_its_own_image_runs_the_runtimes_checked_one() -> None:
    assert check(K8S_IMAGE_PINNED, trainjob({"numNodes": 2, "args": ["--steps", "10"]})) == []


@pytest.mark.parametrize(("resources", "expected"), [
    ({"requests": {"cpu": "4", "memory": "16Gi"}}, "no limits.cpu, limits.memory"),
    ({"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "4"}, "limits": {"cpu": "4", "memory": "16Gi"}},
     "no limits.nvidia.com/gpu (must equal its request)"),
])
def test_a_trainjob_requesting_resources_without_limits_is_reported(resources, expected) -> None:
    found = check(K8S_RESOURCE_LIMITS, trainjob({"image": "trainer:1", "resourcesPerNode": resources}))
    assert len(found) == 1 and "spec.trainer.resourcesPerNode" in found[0] and expected in found[0]


def test_a_trainjob_limiting_only_gpus_keeps_the_runtimes_cpu_and_memory_limits() -> None:
    assert check(K8S_RESOURCE_LIMITS, trainjob({"resourcesPerNode": {"limits": {"nvidia.com/gpu": 8}}})) == []


NODE_PATCH = "spec.runtimePatches[modelplane.io/platform].trainingRuntimeSpec.template.spec.replicatedJobs[node]"


@pytest.mark.parametrize(("policy", "change", "expected"), [
    (K8S_NO_PRIVILEGED, {"containers": [{"name": "node", "securityContext": {"privileged": True}}]},
     ".template.spec.template.spec.containers[node] runs with privileged: true"),
    (K8S_RUN_AS_NON_ROOT, {"securityContext": {"runAsUser": 0}},
     ".template.spec.template.spec.securityContext patches the runtime's pods to run as root (runAsUser: 0)"),
    (K8S_RUN_AS_NON_ROOT, {"containers": [{"name": "node", "securityContext": {"runAsNonRoot": False}}]},
     ".template.spec.template.spec.containers[node].securityContext patches the runtime's pods to run as root "
     "(runAsNonRoot: false)"),
    (K8S_NO_HOST_ACCESS, {"volumes": [{"name": "nccl", "hostPath": {"path": "/dev/infiniband"}}]},
     ".template.spec.template.spec uses the node's hostPath volume 'nccl'"),
])
def test_a_trainjob_patch_that_weakens_the_runtimes_pods_is_reported(policy, change, expected) -> None:
    found = check(policy, trainjob(pod_patch={**copy.deepcopy(PATCH), **change}))
    assert len(found) == 1 and f"TrainJob team-ml/pretrain {NODE_PATCH}{expected}" in found[0]


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
