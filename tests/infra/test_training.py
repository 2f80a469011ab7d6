"""TrainingJob: PyTorchJob / TFJob rendered with scheduling, identity, shm, checkpoints and a PodMonitor."""

from typing import Any

import kubernetes_validate
import pulumi
import pytest

from infra.k8s.podspec import Resources
from infra.k8s.training import TrainingJob, TrainingJobArgs
from infra.review.engine import Graph, render_program


def _render(**overrides: Any) -> Graph:
    args: dict[str, Any] = {
        "framework": "pytorch", "namespace": "training", "image": "ghcr.io/modelplane/trainer-torch:0.1.0",
        "service_account": "trainer", "replicas": 3, "resources": Resources(cpu="16", memory="128Gi", gpus=8),
        "gpu_pool": "train", "args": ["--model", "small"], "checkpoint_uri": "s3://ckpt/lm/",
        "env": {"MODELPLANE_TRAIN_DATA": "s3://data/lm/manifest.json"}, **overrides,
    }
    return render_program("test", lambda: TrainingJob("lm", TrainingJobArgs(**args)) and None)


@pytest.fixture(scope="module")
def pytorch() -> dict[str, Any]:
    return _render().one("kubernetes:kubeflow.org/v1:PyTorchJob").inputs


def test_pytorchjob_has_one_master_and_the_rest_workers(pytorch: dict[str, Any]) -> None:
    specs = pytorch["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1
    assert specs["Worker"]["replicas"] == 2
    assert {s["restartPolicy"] for s in specs.values()} == {"OnFailure"}


def test_nproc_per_node_is_the_gpu_count_as_a_string(pytorch: dict[str, Any]) -> None:
    assert pytorch["spec"]["nprocPerNode"] == "8"


def test_run_policy_bounds_restarts_and_cleans_up(pytorch: dict[str, Any]) -> None:
    assert pytorch["spec"]["runPolicy"] == {"backoffLimit": 3, "ttlSecondsAfterFinished": 86400, "cleanPodPolicy": "None"}


def test_pods_request_gpus_tolerate_the_taint_and_select_the_pool(pytorch: dict[str, Any]) -> None:
    pod = pytorch["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["name"] == "pytorch"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"modelplane.io/pool": "train"}


def test_pods_are_not_disrupted_and_stay_out_of_the_mesh(pytorch: dict[str, Any]) -> None:
    annotations = pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["annotations"]
    assert annotations["karpenter.sh/do-not-disrupt"] == "true"
    assert annotations["sidecar.istio.io/inject"] == "false"


def test_shm_is_memory_backed(pytorch: dict[str, Any]) -> None:
    pod = pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_runs_torchrun_with_the_checkpoint_uri_and_service_account(pytorch: dict[str, Any]) -> None:
    pod = pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["torchrun", "--module", "workloads.trainer_torch"]
    assert container["args"][container["args"].index("--checkpoints") + 1] == "s3://ckpt/lm/"
    assert pod["serviceAccountName"] == "trainer"


def test_pod_meets_the_restricted_pod_security_standard(pytorch: dict[str, Any]) -> None:
    pod = pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"] == {"drop": ["ALL"]}


def test_env_comes_from_a_configmap() -> None:
    graph = _render()
    config_map = graph.one("kubernetes:core/v1:ConfigMap").inputs
    assert config_map["data"] == {"MODELPLANE_TRAIN_DATA": "s3://data/lm/manifest.json"}


def test_pod_monitor_scrapes_the_master_metrics_port() -> None:
    monitor = _render().one("kubernetes:monitoring.coreos.com/v1:PodMonitor").inputs
    assert monitor["spec"]["selector"]["matchLabels"]["training.kubeflow.org/replica-type"] == "master"
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_tfjob_has_chief_and_workers_with_backup_dir() -> None:
    graph = _render(framework="tensorflow", image="ghcr.io/modelplane/trainer-tf:0.1.0",
                    resources=Resources(cpu="4", memory="8Gi"), gpu_pool=None)
    job = graph.one("kubernetes:kubeflow.org/v1:TFJob").inputs
    specs = job["spec"]["tfReplicaSpecs"]
    assert specs["Chief"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    container = specs["Chief"]["template"]["spec"]["containers"][0]
    assert container["name"] == "tensorflow"
    assert container["args"][container["args"].index("--backup-uri") + 1] == "s3://ckpt/lm/"
    assert "nprocPerNode" not in job["spec"]
    assert "tolerations" not in specs["Chief"]["template"]["spec"]


def test_core_parts_validate_against_the_kubernetes_schema(pytorch: dict[str, Any]) -> None:
    template = pytorch["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **template["metadata"]}, "spec": template["spec"]}
    kubernetes_validate.validate(pod, "1.35", strict=True)


@pytest.mark.parametrize(("overrides", "prop"), [
    ({"replicas": 0}, "replicas"),
    ({"gpu_pool": None}, "gpu_pool"),
    ({"image": "ghcr.io/modelplane/trainer-torch:latest"}, "image"),
    ({"image": "ghcr.io/modelplane/trainer-torch"}, "image"),
])
def test_training_job_args_are_validated(overrides: dict[str, Any], prop: str) -> None:
    with pytest.raises(pulumi.InputPropertiesError) as info:
        _render(**overrides)
    assert prop in {d["property_path"] for d in info.value.errors}
