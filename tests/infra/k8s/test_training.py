"""TrainingJob: PyTorchJob / TFJob rendered from a `training.jobs` entry with scheduling, identity, shm and flags."""

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from infra.config.workloads import TrainingJobConfig
from infra.k8s.training import TrainingJob
from infra.review.engine import render_program
from infra.review.graph import Graph
from workloads.recommend.model_settings import TrainSettings as RecommenderSettings

JOB = {"name": "lm", "framework": "pytorch", "replicas": 3, "gpusPerReplica": 8, "gpuPool": "train", "cpu": "16",
       "memory": "128Gi", "dataset": "lm/manifest.json", "model": "small", "microBatch": 4,
       "args": ["--max-steps", "100"]}


def _render(**overrides: Any) -> Graph:
    job = TrainingJobConfig.model_validate({**JOB, **overrides})
    return render_program("test", lambda: TrainingJob(
        "lm", job, image="ghcr.io/modelplane/trainer-torch:0.1.0", namespace="training", service_account="trainer",
        data_uri="s3://data/lm/manifest.json", checkpoint_uri="s3://ckpt/lm/", export_uri="s3://models/lm/",
        env={"AWS_ENDPOINT_URL": "http://minio:9000"}, secret_env_from=["s3-credentials"]) and None)


def _container(job: dict[str, Any], role: str = "Master") -> dict[str, Any]:
    specs = job["spec"]["pytorchReplicaSpecs"] if "pytorchReplicaSpecs" in job["spec"] else job["spec"]["tfReplicaSpecs"]
    container: dict[str, Any] = specs[role]["template"]["spec"]["containers"][0]
    return container


@pytest.fixture(scope="module")
def pytorch() -> dict[str, Any]:
    return _render().one("kubernetes:kubeflow.org/v1:PyTorchJob").inputs


def test_pytorchjob_has_one_master_and_the_rest_workers(pytorch: dict[str, Any]) -> None:
    specs = pytorch["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1
    assert specs["Worker"]["replicas"] == 2
    assert {s["restartPolicy"] for s in specs.values()} == {"OnFailure"}


def test_single_replica_job_has_no_workers() -> None:
    job = _render(replicas=1).one("kubernetes:kubeflow.org/v1:PyTorchJob").inputs
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]


def test_nproc_per_node_is_the_gpu_count_as_a_string(pytorch: dict[str, Any]) -> None:
    assert pytorch["spec"]["nprocPerNode"] == "8"


def test_run_policy_bounds_restarts_and_cleans_up(pytorch: dict[str, Any]) -> None:
    assert pytorch["spec"]["runPolicy"] == {"backoffLimit": 3, "ttlSecondsAfterFinished": 86400, "cleanPodPolicy": "None"}


def test_run_policy_follows_the_job_entry() -> None:
    job = _render(backoffLimit=0, ttlSecondsAfterFinished=60).one("kubernetes:kubeflow.org/v1:PyTorchJob").inputs
    assert job["spec"]["runPolicy"] == {"backoffLimit": 0, "ttlSecondsAfterFinished": 60, "cleanPodPolicy": "None"}


def test_pods_request_gpus_tolerate_the_taint_and_select_the_pool(pytorch: dict[str, Any]) -> None:
    pod = pytorch["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["name"] == "pytorch"
    assert container["resources"] == {"requests": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "8"},
                                      "limits": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "8"}}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"modelplane.io/pool": "train"}


def test_gpu_ranks_run_one_openmp_thread(pytorch: dict[str, Any]) -> None:
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in _container(pytorch)["env"]


def test_cpu_job_uses_its_cpu_quota_and_no_gpu_scheduling() -> None:
    job = _render(gpusPerReplica=0, gpuPool=None, cpu="2500m").one("kubernetes:kubeflow.org/v1:PyTorchJob").inputs
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert {"name": "OMP_NUM_THREADS", "value": "2"} in pod["containers"][0]["env"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "tolerations" not in pod and "nodeSelector" not in pod
    assert job["spec"]["nprocPerNode"] == "1"


def test_pods_are_not_disrupted_and_stay_out_of_the_mesh(pytorch: dict[str, Any]) -> None:
    annotations = pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["annotations"]
    assert annotations["karpenter.sh/do-not-disrupt"] == "true"
    assert annotations["sidecar.istio.io/inject"] == "false"


def test_pods_carry_the_labels_the_namespace_podmonitor_selects(pytorch: dict[str, Any]) -> None:
    labels = pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "training"
    assert labels["modelplane.io/job"] == "lm"


def test_shm_is_memory_backed(pytorch: dict[str, Any]) -> None:
    pod = pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_runs_torchrun_with_the_trainer_fields_then_the_job_args_then_the_platform_flags(
        pytorch: dict[str, Any]) -> None:
    container = _container(pytorch)
    assert container["command"] == ["torchrun", "--module", "workloads.trainer_torch"]
    assert container["args"] == ["--data", "s3://data/lm/manifest.json", "--export", "s3://models/lm/",
                                 "--model", "small", "--micro-batch", "4", "--max-steps", "100",
                                 "--checkpoints", "s3://ckpt/lm/", "--metrics-port", "9090"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["serviceAccountName"] == "trainer"


def test_pod_meets_the_restricted_pod_security_standard(pytorch: dict[str, Any]) -> None:
    pod = pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"] == {"drop": ["ALL"]}


def test_env_comes_from_a_configmap_and_the_secrets() -> None:
    graph = _render()
    config_map = graph.one("kubernetes:core/v1:ConfigMap").inputs
    assert config_map["data"] == {"AWS_ENDPOINT_URL": "http://minio:9000"}
    env_from = _container(graph.one("kubernetes:kubeflow.org/v1:PyTorchJob").inputs)["envFrom"]
    assert env_from == [{"configMapRef": {"name": "lm-env"}}, {"secretRef": {"name": "s3-credentials"}}]


def test_tfjob_has_chief_and_workers_with_backup_dir() -> None:
    graph = _render(framework="tensorflow", gpusPerReplica=0, gpuPool=None, cpu="4", memory="8Gi", args=[])
    job = graph.one("kubernetes:kubeflow.org/v1:TFJob").inputs
    specs = job["spec"]["tfReplicaSpecs"]
    assert specs["Chief"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    container = _container(job, "Chief")
    assert container["name"] == "tensorflow"
    assert container["command"] == ["python", "-m", "workloads.trainer_tf"]
    assert container["args"] == ["--data", "s3://data/lm/manifest.json", "--export", "s3://models/lm/",
                                 "--backup-dir", "/backup", "--backup-uri", "s3://ckpt/lm/", "--metrics-port", "9090"]
    assert {"name": "backup", "mountPath": "/backup"} in container["volumeMounts"]
    assert "nprocPerNode" not in job["spec"]
    assert "tolerations" not in specs["Chief"]["template"]["spec"]


def test_core_parts_validate_against_the_kubernetes_schema(pytorch: dict[str, Any]) -> None:
    template = pytorch["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **template["metadata"]}, "spec": template["spec"]}
    kubernetes_validate.validate(pod, "1.35", strict=True)


RECOMMENDER = {"name": "recommender", "framework": "pytorch", "task": "recommender", "cpu": "2", "memory": "4Gi",
               "dataset": "recommend/interactions/", "args": ["--epochs", "5"]}


@pytest.fixture(scope="module")
def recommender() -> dict[str, Any]:
    job = TrainingJobConfig.model_validate(RECOMMENDER)
    return render_program("test", lambda: TrainingJob(
        "recommender", job, image="ghcr.io/modelplane/recommend:0.1.0", namespace="training", service_account="trainer",
        data_uri="s3://data/recommend/interactions/", checkpoint_uri="s3://ckpt/recommender/",
        export_uri="s3://models/recommender/", env={}) and None).one("kubernetes:kubeflow.org/v1:PyTorchJob").inputs


def test_recommender_runs_its_trainer_with_the_platform_flags(recommender: dict[str, Any]) -> None:
    container = _container(recommender)
    assert container["image"] == "ghcr.io/modelplane/recommend:0.1.0"
    assert container["command"] == ["python", "-m", "workloads.recommend.train"]
    assert container["args"] == ["--data", "s3://data/recommend/interactions/", "--export", "s3://models/recommender/",
                                 "--epochs", "5", "--checkpoints", "s3://ckpt/recommender/", "--metrics-port", "9090"]


def test_recommender_flags_are_its_trainers_own_settings(recommender: dict[str, Any]) -> None:
    settings = RecommenderSettings.parse(_container(recommender)["args"], {})
    assert (settings.data, settings.export, settings.checkpoints, settings.metrics_port, settings.epochs) == (
        "s3://data/recommend/interactions/", "s3://models/recommender/", "s3://ckpt/recommender/", 9090, 5)


def test_recommender_is_one_cpu_process_under_the_pytorchjob(recommender: dict[str, Any]) -> None:
    specs = recommender["spec"]["pytorchReplicaSpecs"]
    assert list(specs) == ["Master"] and specs["Master"]["replicas"] == 1
    assert recommender["spec"]["nprocPerNode"] == "1"
    pod = specs["Master"]["template"]["spec"]
    assert {"name": "OMP_NUM_THREADS", "value": "2"} in pod["containers"][0]["env"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "tolerations" not in pod and "nodeSelector" not in pod


def test_stacks_train_the_recommender_into_the_models_bucket(stack_graph: Callable[[str], Graph]) -> None:
    for stack in ("dev", "local"):
        job = stack_graph(stack).one("kubernetes:kubeflow.org/v1:PyTorchJob", "recommender-job").inputs
        container = _container(job)
        # dev pulls from its ECR repository by the recorded digest; local runs the local build.
        assert container["image"].startswith({"dev": "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelplane/dev/"
                                                     "recommend@sha256:",
                                              "local": "ghcr.io/modelplane/recommend:0.1.0"}[stack])
        assert container["command"] == ["python", "-m", "workloads.recommend.train"]
        args = container["args"]
        assert args[args.index("--data") + 1].endswith("/recommend/interactions/")
        assert args[args.index("--export") + 1].endswith("/recommender/")
        assert args[args.index("--checkpoints") + 1].endswith("/recommender/")
