"""TrainingJob: a TrainJob on the stack's ClusterTrainingRuntime (PyTorch) or a JobSet (TensorFlow), rendered from a
`training.jobs` entry with scheduling, identity, shm, flags and whole-group restarts."""

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from infra.config.workloads import TrainingConfig, TrainingJobConfig
from infra.k8s.training import TrainingJob
from infra.k8s.training_runtime import TrainingRuntime
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.training import JOBSET, RUNTIME, TRAIN_JOB, jobset_pod, runtime_of, train_job_pod
from workloads.common.vocab import JOBSET_ENV
from workloads.recommend.model_settings import TrainSettings as RecommenderSettings
from workloads.trainer_torch.config import TrainSettings as TorchSettings

JOB = {"name": "lm", "framework": "pytorch", "replicas": 3, "gpusPerReplica": 8, "gpuPool": "train", "cpu": "16",
       "memory": "128Gi", "dataset": "lm/manifest.json", "model": "small", "microBatch": 4,
       "args": ["--max-steps", "100"]}
TORCH_IMAGE = "ghcr.io/modelplane/trainer-torch:0.1.0"
TORCHRUN_RESERVED = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
"""Env a TrainJob may not set on a torch runtime (kubeflow/trainer v2.3.0 pkg/constants TorchRunReservedEnvNames)."""


def _render(training: dict[str, Any] | None = None, queue: str | None = None, image: str = TORCH_IMAGE,
            **overrides: Any) -> Graph:
    job = TrainingJobConfig.model_validate({**JOB, **overrides})
    section = TrainingConfig.model_validate({"jobs": [JOB], **(training or {})})

    def program() -> None:
        runtime = TrainingRuntime("runtime", section, image=TORCH_IMAGE)
        TrainingJob(job.name, job, section, image=image, runtime=runtime, namespace="training",
                    service_account="trainer", data_uri=f"s3://data/{job.dataset}",
                    checkpoint_uri=f"s3://ckpt/{job.name}/", export_uri=f"s3://models/{job.name}/",
                    env={"AWS_ENDPOINT_URL": "http://minio:9000"},
                    secret_env={"AWS_ACCESS_KEY_ID": ("s3-credentials", "AWS_ACCESS_KEY_ID")}, queue=queue)

    return render_program("test", program)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return _render()


@pytest.fixture(scope="module")
def train_job(graph: Graph) -> dict[str, Any]:
    return graph.one(TRAIN_JOB).inputs


@pytest.fixture(scope="module")
def runtime(graph: Graph) -> dict[str, Any]:
    return graph.one(RUNTIME).inputs


def _pod_template(runtime: dict[str, Any]) -> dict[str, Any]:
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    template: dict[str, Any] = job["template"]["spec"]["template"]
    return template


def test_trainjob_runs_on_our_cluster_training_runtime(train_job: dict[str, Any], runtime: dict[str, Any]) -> None:
    assert train_job["spec"]["runtimeRef"] == {"name": "modelplane-torch", "apiGroup": "trainer.kubeflow.org",
                                               "kind": "ClusterTrainingRuntime"}
    assert runtime["metadata"]["name"] == "modelplane-torch" and "namespace" not in runtime["metadata"]
    assert runtime["spec"]["mlPolicy"] == {"numNodes": 1, "torch": {}}


def test_runtime_has_one_node_job_that_trainer_fills_in(runtime: dict[str, Any]) -> None:
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    assert job["template"]["metadata"]["labels"] == {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    (container,) = job["template"]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "node" and container["image"] == TORCH_IMAGE
    assert container["command"] == ["torchrun", "--shutdown-timeout=115", "--module", "workloads.trainer_torch"]
    # What a TrainJob without resourcesPerNode would get: a job entry's defaults, never unbounded.
    assert container["resources"] == {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}}


def test_a_failure_restarts_the_whole_group_a_bounded_number_of_times(runtime: dict[str, Any]) -> None:
    spec = runtime["spec"]["template"]["spec"]
    assert spec["failurePolicy"] == {"maxRestarts": 3, "restartStrategy": "BlockingRecreate"}
    assert spec["ttlSecondsAfterFinished"] == 86400
    # A failed rank fails its Job at once (no per-pod retries), which fails the group over to the JobSet.
    (job,) = spec["replicatedJobs"]
    assert job["template"]["spec"]["backoffLimit"] == 0
    assert job["template"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_restarts_and_ttl_follow_the_training_section() -> None:
    spec = _render({"maxRestarts": 1, "ttlSecondsAfterFinished": 60}).one(RUNTIME).inputs["spec"]["template"]["spec"]
    assert (spec["failurePolicy"]["maxRestarts"], spec["ttlSecondsAfterFinished"]) == (1, 60)


def test_torchrun_gives_the_sigterm_checkpoint_its_grace_before_killing_workers(runtime: dict[str, Any]) -> None:
    # torchrun forwards SIGTERM and SIGKILLs its workers after --shutdown-timeout (default 30 s): it must outlast the
    # trainer's default --sigterm-grace and end inside the pod's grace period.
    pod = _pod_template(runtime)["spec"]
    (container,) = pod["containers"]
    timeout = int(next(arg for arg in container["command"] if arg.startswith("--shutdown-timeout=")).split("=")[1])
    assert TorchSettings.model_fields["sigterm_grace"].default < timeout < pod["terminationGracePeriodSeconds"]


def test_a_timed_out_collective_tears_the_rank_down(runtime: dict[str, Any], train_job: dict[str, Any]) -> None:
    (container,) = _pod_template(runtime)["spec"]["containers"]
    assert {"name": "TORCH_NCCL_ASYNC_ERROR_HANDLING", "value": "1"} in container["env"]
    args = train_job["spec"]["trainer"]["args"]
    assert args[args.index("--collective-timeout") + 1] == "1800"


def test_collective_timeout_follows_the_job_entry() -> None:
    args = _render(collectiveTimeoutSeconds=600).one(TRAIN_JOB).inputs["spec"]["trainer"]["args"]
    assert args[args.index("--collective-timeout") + 1] == "600"


def test_one_node_per_replica_and_one_process_per_gpu(train_job: dict[str, Any]) -> None:
    trainer = train_job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 8)
    assert trainer["resourcesPerNode"] == {"requests": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "8"},
                                           "limits": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "8"}}


def test_patch_places_the_pods_on_the_gpu_pool_with_the_jobs_identity(train_job: dict[str, Any]) -> None:
    (patch,) = train_job["spec"]["runtimePatches"]
    assert patch["manager"] == "modelplane.io/platform"
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    pod = job["template"]["spec"]["template"]
    assert pod["metadata"]["labels"]["modelplane.io/job"] == "lm"
    assert pod["spec"]["serviceAccountName"] == "trainer"
    assert pod["spec"]["nodeSelector"] == {"modelplane.io/pool": "train"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    # Trainer's webhook rejects env in a patch of the `node` container; ours patches none.
    assert "containers" not in pod["spec"]


def test_shm_is_memory_backed_and_sized_per_job(graph: Graph, train_job: dict[str, Any]) -> None:
    pod = train_job_pod(graph, train_job)["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
    assert _render(shmSize="2Gi").one(TRAIN_JOB).inputs["spec"]["runtimePatches"][0]["trainingRuntimeSpec"][
        "template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["volumes"] == [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]


def test_gpu_ranks_run_one_openmp_thread(train_job: dict[str, Any]) -> None:
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in train_job["spec"]["trainer"]["env"]


def test_cpu_job_uses_its_cpu_quota_and_no_gpu_scheduling() -> None:
    trainer_spec = _render(gpusPerReplica=0, gpuPool=None, cpu="2500m").one(TRAIN_JOB).inputs["spec"]
    trainer = trainer_spec["trainer"]
    assert {"name": "OMP_NUM_THREADS", "value": "2"} in trainer["env"]
    assert trainer["numProcPerNode"] == 1
    assert "nvidia.com/gpu" not in trainer["resourcesPerNode"]["limits"]
    pod = trainer_spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]
    assert "tolerations" not in pod and "nodeSelector" not in pod


def test_env_is_inline_with_secrets_by_reference_and_no_reserved_names(graph: Graph,
                                                                       train_job: dict[str, Any]) -> None:
    env = train_job["spec"]["trainer"]["env"]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"} in env
    assert {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {
        "name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}}} in env
    assert not TORCHRUN_RESERVED & {var["name"] for var in env}
    # No ConfigMap any more: a TrainJob has no envFrom.
    assert not graph.of_type("kubernetes:core/v1:ConfigMap")


def test_queue_label_is_on_the_trainjob_only_when_queued(train_job: dict[str, Any]) -> None:
    assert "kueue.x-k8s.io/queue-name" not in train_job["metadata"]["labels"]
    queued = _render(queue="research").one(TRAIN_JOB).inputs
    assert queued["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"


def test_pods_are_not_disrupted_stay_out_of_the_mesh_and_have_time_to_checkpoint(graph: Graph,
                                                                                 train_job: dict[str, Any]) -> None:
    pod = train_job_pod(graph, train_job)
    assert pod["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "true", "sidecar.istio.io/inject": "false"}
    assert pod["spec"]["terminationGracePeriodSeconds"] == 120


def test_pods_carry_the_labels_the_namespace_podmonitor_selects(graph: Graph, train_job: dict[str, Any]) -> None:
    labels = train_job_pod(graph, train_job)["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "training"
    assert labels["modelplane.io/job"] == "lm"
    (container,) = _pod_template(runtime_of(graph, train_job))["spec"]["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]


def test_trainer_gets_the_trainer_fields_then_the_job_args_then_the_platform_flags(train_job: dict[str, Any]) -> None:
    trainer = train_job["spec"]["trainer"]
    assert trainer["image"] == TORCH_IMAGE
    assert "command" not in trainer  # the runtime's torchrun
    assert trainer["args"] == ["--data", "s3://data/lm/manifest.json", "--export", "s3://models/lm/",
                               "--model", "small", "--micro-batch", "4", "--max-steps", "100",
                               "--checkpoints", "s3://ckpt/lm/", "--collective-timeout", "1800",
                               "--metrics-port", "9090"]


def test_trainer_flags_are_the_torch_trainers_own_settings(train_job: dict[str, Any]) -> None:
    settings = TorchSettings.parse(train_job["spec"]["trainer"]["args"], {})
    assert (str(settings.checkpoints), settings.collective_timeout, settings.metrics_port, settings.micro_batch) == (
        "s3://ckpt/lm/", 1800, 9090, 4)


def test_pod_meets_the_restricted_pod_security_standard_without_an_api_token(graph: Graph,
                                                                             train_job: dict[str, Any]) -> None:
    pod = train_job_pod(graph, train_job)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "HOME", "value": "/tmp"} in pod["containers"][0]["env"]


def test_built_pods_validate_against_the_kubernetes_schema(graph: Graph, train_job: dict[str, Any]) -> None:
    for template in (train_job_pod(graph, train_job), jobset_pod(_tf_jobset())):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **template["metadata"]},
               "spec": template["spec"]}
        kubernetes_validate.validate(pod, "1.35", strict=True)


def test_a_pytorch_job_needs_the_runtime() -> None:
    job = TrainingJobConfig.model_validate(JOB)
    with pytest.raises(ValueError, match="runs on the stack's TrainingRuntime"):
        render_program("test", lambda: TrainingJob(
            "lm", job, TrainingConfig(), image=TORCH_IMAGE, namespace="training", service_account="trainer",
            data_uri="s3://d", checkpoint_uri="s3://c", export_uri="s3://m", env={}) and None)


TF_JOB = {"name": "digits", "framework": "tensorflow", "replicas": 3, "cpu": "4", "memory": "8Gi",
          "dataset": "digits/"}


def _tf_jobset(training: dict[str, Any] | None = None, queue: str | None = None) -> dict[str, Any]:
    job = TrainingJobConfig.model_validate(TF_JOB)
    section = TrainingConfig.model_validate({"jobs": [TF_JOB], **(training or {})})
    return render_program("test", lambda: TrainingJob(
        "digits", job, section, image="ghcr.io/modelplane/trainer-tf:0.1.0", namespace="training",
        service_account="trainer", data_uri="s3://data/digits/", checkpoint_uri="s3://ckpt/digits/",
        export_uri="s3://models/digits/", env={"AWS_ENDPOINT_URL": "http://minio:9000"},
        secret_env={"AWS_ACCESS_KEY_ID": ("s3-credentials", "AWS_ACCESS_KEY_ID")}, queue=queue) and None).one(
        JOBSET).inputs


@pytest.fixture(scope="module")
def tf_jobset() -> dict[str, Any]:
    return _tf_jobset(queue="ml")


def test_tf_job_is_a_jobset_of_one_pod_indexed_workers_with_dns_hostnames(tf_jobset: dict[str, Any]) -> None:
    spec = tf_jobset["spec"]
    assert spec["network"] == {"enableDNSHostnames": True}
    (job,) = spec["replicatedJobs"]
    assert (job["name"], job["replicas"]) == ("worker", 3)
    job_spec = job["template"]["spec"]
    assert (job_spec["parallelism"], job_spec["completions"], job_spec["completionMode"]) == (1, 1, "Indexed")
    assert job_spec["backoffLimit"] == 0 and job_spec["template"]["spec"]["restartPolicy"] == "Never"


def test_tf_jobset_restarts_the_group_and_is_queued(tf_jobset: dict[str, Any]) -> None:
    assert tf_jobset["spec"]["failurePolicy"] == {"maxRestarts": 3, "restartStrategy": "BlockingRecreate"}
    assert tf_jobset["spec"]["ttlSecondsAfterFinished"] == 86400
    assert tf_jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "ml"
    spec = _tf_jobset({"maxRestarts": 0, "ttlSecondsAfterFinished": 5})["spec"]
    assert (spec["failurePolicy"]["maxRestarts"], spec["ttlSecondsAfterFinished"]) == (0, 5)


def test_tf_workers_read_their_jobset_coordinates_from_their_labels(tf_jobset: dict[str, Any]) -> None:
    (container,) = jobset_pod(tf_jobset)["spec"]["containers"]
    downward = {var["name"]: var["valueFrom"]["fieldRef"]["fieldPath"] for var in container["env"]
                if "fieldRef" in var.get("valueFrom", {})}
    assert downward == {var: f"metadata.labels['{label}']" for var, label in JOBSET_ENV.items()}
    assert {"name": "tf-worker", "containerPort": 2222, "protocol": "TCP"} in container["ports"]


def test_tf_worker_runs_the_tf_trainer_with_a_backup_dir(tf_jobset: dict[str, Any]) -> None:
    pod = jobset_pod(tf_jobset)
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python", "-m", "workloads.trainer_tf"]
    assert container["args"] == ["--data", "s3://data/digits/", "--export", "s3://models/digits/",
                                 "--backup-dir", "/backup", "--backup-uri", "s3://ckpt/digits/",
                                 "--collective-timeout", "1800", "--metrics-port", "9090"]
    assert {"name": "backup", "mountPath": "/backup"} in container["volumeMounts"]
    assert {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {
        "name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}}} in container["env"]
    assert {"name": "HOME", "value": "/tmp"} in container["env"]
    assert pod["spec"]["serviceAccountName"] == "trainer" and pod["spec"]["automountServiceAccountToken"] is False
    assert "tolerations" not in pod["spec"]
    assert pod["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"


RECOMMENDER = {"name": "recommender", "framework": "pytorch", "task": "recommender", "cpu": "2", "memory": "4Gi",
               "dataset": "recommend/interactions/", "args": ["--epochs", "5"]}


@pytest.fixture(scope="module")
def recommender() -> dict[str, Any]:
    job = TrainingJobConfig.model_validate(RECOMMENDER)

    def program() -> None:
        runtime = TrainingRuntime("runtime", TrainingConfig(), image=TORCH_IMAGE)
        TrainingJob("recommender", job, TrainingConfig(), image="ghcr.io/modelplane/recommend:0.1.0", runtime=runtime,
                    namespace="training", service_account="trainer", data_uri="s3://data/recommend/interactions/",
                    checkpoint_uri="s3://ckpt/recommender/", export_uri="s3://models/recommender/", env={})

    return render_program("test", program).one(TRAIN_JOB).inputs


def test_recommender_runs_its_trainer_with_the_platform_flags(recommender: dict[str, Any]) -> None:
    trainer = recommender["spec"]["trainer"]
    assert trainer["image"] == "ghcr.io/modelplane/recommend:0.1.0"
    assert trainer["command"] == ["python", "-m", "workloads.recommend.train"]
    # One process: no collectives, so no collective timeout.
    assert trainer["args"] == ["--data", "s3://data/recommend/interactions/", "--export", "s3://models/recommender/",
                               "--epochs", "5", "--checkpoints", "s3://ckpt/recommender/", "--metrics-port", "9090"]


def test_recommender_flags_are_its_trainers_own_settings(recommender: dict[str, Any]) -> None:
    settings = RecommenderSettings.parse(recommender["spec"]["trainer"]["args"], {})
    assert (settings.data, settings.export, settings.checkpoints, settings.metrics_port, settings.epochs) == (
        "s3://data/recommend/interactions/", "s3://models/recommender/", "s3://ckpt/recommender/", 9090, 5)


def test_recommender_is_one_cpu_process_on_the_runtime(recommender: dict[str, Any]) -> None:
    trainer = recommender["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (1, 1)
    assert {"name": "OMP_NUM_THREADS", "value": "2"} in trainer["env"]
    assert "nvidia.com/gpu" not in trainer["resourcesPerNode"]["limits"]
    pod = recommender["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]
    assert "tolerations" not in pod and "nodeSelector" not in pod


def test_stacks_train_the_recommender_into_the_models_bucket(stack_graph: Callable[[str], Graph]) -> None:
    for stack in ("dev", "local"):
        trainer = stack_graph(stack).one(TRAIN_JOB, "recommender-job").inputs["spec"]["trainer"]
        # dev pulls from its ECR repository by the recorded digest; local runs the local build.
        assert trainer["image"].startswith({"dev": "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelplane/dev/"
                                                   "recommend@sha256:",
                                            "local": "ghcr.io/modelplane/recommend:0.1.0"}[stack])
        assert trainer["command"] == ["python", "-m", "workloads.recommend.train"]
        args = trainer["args"]
        assert args[args.index("--data") + 1].endswith("/recommend/interactions/")
        assert args[args.index("--export") + 1].endswith("/recommender/")
        assert args[args.index("--checkpoints") + 1].endswith("/recommender/")
