"""`TrainingJob`: a Kubeflow Trainer v2 TrainJob (PyTorch) or a JobSet (TensorFlow), declared from stack config.

PyTorch jobs run on the stack's ClusterTrainingRuntime (infra/k8s/training_runtime.py): the TrainJob gives the
image, command, flags, env, nodes, processes per node and resources (its `trainer`), and one runtime patch
(manager PATCH_MANAGER) puts our labels, the service account, the GPU pool placement and the job's /dev/shm size on
the `node` pods. Task `recommender` runs the recommender's trainer (`python -m workloads.recommend.train`) as a
one-node TrainJob on the same runtime with the same platform flags.

TensorFlow jobs are a plain JobSet (Trainer v2 has no TensorFlow runtime): one replicated Job `worker` of N
one-pod Indexed Jobs with DNS hostnames, each pod told its JobSet name, replicated Job, replica count and index
through the downward API (vocab.JOBSET_ENV), from which the TF trainer computes TF_CONFIG. Both kinds restart the
whole group on a failure, at most `training.maxRestarts` times.

Training pods run without an Istio sidecar (NCCL/gloo must not pass through Envoy), so the mesh's authorization
does not guard them: each job's NetworkPolicy does. Its ranks, which carry the job's JOB_LABEL, reach each other on
every port (rendezvous, NCCL, gloo pick their ports at run time) and nothing else of the cluster reaches them but
Prometheus on the metrics port; their egress is that, DNS, and what the program passes (the object store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra.config.workloads import TrainingConfig, TrainingJobConfig
from infra.k8s.kueue import QUEUE_LABEL
from infra.k8s.netpol import Rule, allow_spec, egress, ingress, network_policy, pod_peer, select
from infra.k8s.observability import from_prometheus
from infra.k8s.podspec import container_resources, cpu_threads, env_list, scheduling
from infra.k8s.training_runtime import (
    HOME_ENV,
    METRICS_PORT,
    NODE,
    TRAINER_API_VERSION,
    TRAINING_LABELS,
    TrainingRuntime,
    group_restarts,
    pod_template,
)
from workloads.common.vocab import (
    BACKUP_DIR_FLAG,
    BACKUP_URI_FLAG,
    CHECKPOINTS_FLAG,
    COLLECTIVE_TIMEOUT_FLAG,
    DATA_FLAG,
    EXPORT_FLAG,
    JOB_LABEL,
    JOBSET_ENV,
    METRICS_PORT_FLAG,
    NAME_LABEL,
    TF_WORKER_PORT,
)

BACKUP_DIR: Final = "/backup"
"""The TF trainer's local BackupAndRestore folder (an emptyDir)."""
JOBSET_API_VERSION: Final = "jobset.x-k8s.io/v1alpha2"
"""API of JobSet (kubernetes-sigs/jobset v0.12.0 api/jobset/v1alpha2)."""
TF_REPLICATED_JOB: Final = "worker"
"""The TF JobSet's one replicated Job; worker 0 is the chief (MultiWorkerMirroredStrategy without a chief task)."""
PATCH_MANAGER: Final = "modelplane.io/platform"
"""Owner of our TrainJob runtime patch (Trainer's webhook requires a domain-prefixed path)."""
SecretEnv = Mapping[str, tuple[pulumi.Input[str], str]]
"""Env var → (Secret, key) it is read from."""


class TrainingJob(pulumi.ComponentResource):
    """A distributed training job from its `training.jobs` entry: a TrainJob (PyTorch) or a JobSet (TensorFlow).

    The namespace-wide PodMonitor of the Observability stack scrapes the leader's `metrics` port.
    """

    job_name: pulumi.Output[str]
    """The TrainJob/JobSet name."""

    def __init__(self, name: str, job: TrainingJobConfig, training: TrainingConfig, *, image: str, namespace: str,
                 service_account: str, data_uri: pulumi.Input[str], checkpoint_uri: pulumi.Input[str],
                 export_uri: pulumi.Input[str], env: Mapping[str, pulumi.Input[str]], secret_env: SecretEnv | None = None,
                 runtime: TrainingRuntime | None = None, egress_rules: Sequence[Rule] = (), scraped: bool = False,
                 queue: str | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        """`job` is the stack's entry and `training` its section (group restarts and TTL of a JobSet); `image` the
        trainer image (pinned); `namespace` and `service_account` where it runs with its IAM role; `data_uri`,
        `checkpoint_uri` and `export_uri` the S3 locations behind the platform's trainer flags; `env` plain env for
        every replica; `secret_env` env read from Secret keys (the local stack's MinIO keys; cloud stacks use
        workload identity); `runtime` the stack's TrainingRuntime (required for PyTorch); `egress_rules` the
        NetworkPolicy egress to the stack's data (S3 or MinIO) beyond the job's own ranks; `scraped` admits
        Prometheus to the metrics port; `queue` names the Kueue LocalQueue that admits the job (its team's), set
        as the job's queue label."""
        super().__init__("modelplane:training:TrainingJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {NAME_LABEL: name, **TRAINING_LABELS, JOB_LABEL: name}
        metadata = k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace,
                                              labels={**labels, **({QUEUE_LABEL: queue} if queue else {})})
        gpus = job.gpus_per_replica
        # One OpenMP thread per process on GPU nodes (torchrun runs one per GPU); the CPU quota otherwise.
        # (The runtime sets HOME for PyTorch ranks; a JobSet's pod is all ours.)
        plain = {**env, **(HOME_ENV if job.framework == "tensorflow" else {}),
                 "OMP_NUM_THREADS": "1" if gpus else str(cpu_threads(job.cpu))}
        job_env: list[dict[str, Any]] = [
            *env_list(plain), *({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                                for var, (secret, key) in sorted((secret_env or {}).items()))]
        args = [*_flags(job, data_uri, checkpoint_uri, export_uri), METRICS_PORT_FLAG, str(METRICS_PORT)]
        # Trainer and JobSet reject most spec changes to a running job (a TrainJob's runtime patches only while
        # suspended, kubeflow/trainer v2.3.0 plugins/jobset/jobset.go); a changed job is a new run, which resumes
        # from the newest committed checkpoint. Same name, so the old one goes first.
        job_opts = pulumi.ResourceOptions(parent=self, replace_on_changes=["spec"], delete_before_replace=True)
        if job.framework == "pytorch":
            if runtime is None:
                raise ValueError(f"TrainingJob {name!r}: a PyTorch job runs on the stack's TrainingRuntime; pass "
                                 "runtime=")
            resource = k8s.apiextensions.CustomResource(
                f"{name}-job", api_version=TRAINER_API_VERSION, kind="TrainJob", metadata=metadata,
                spec=_train_job_spec(job, runtime, image, args, job_env, labels, service_account), opts=job_opts)
        else:
            resource = k8s.apiextensions.CustomResource(
                f"{name}-job", api_version=JOBSET_API_VERSION, kind="JobSet", metadata=metadata,
                spec=_tf_jobset_spec(job, training, image, args, job_env, labels, service_account), opts=job_opts)
        ranks = {JOB_LABEL: name}
        # "-job-": an inference service may share the job's name, and logical names must not collide.
        network_policy(f"{name}-job-netpol", policy_name=name, namespace=namespace, labels=labels, opts=child,
                       spec=allow_spec(select(ranks),
                                       ingress_rules=[ingress([pod_peer(ranks)]),
                                                      *([from_prometheus(METRICS_PORT)] if scraped else [])],
                                       egress_rules=[egress([pod_peer(ranks)]), *egress_rules]))
        # Resolves once the job exists, so dependents wait for it.
        self.job_name = resource.id.apply(lambda _: name)
        self.register_outputs({"job_name": self.job_name})


def _flags(job: TrainingJobConfig, data_uri: pulumi.Input[str], checkpoint_uri: pulumi.Input[str],
           export_uri: pulumi.Input[str]) -> list[pulumi.Input[str]]:
    """The trainer's flags: data and export, the trainer fields, the job's args, then checkpointing and (for the
    distributed trainers) the collective timeout."""
    flags: list[pulumi.Input[str]] = [DATA_FLAG, data_uri, EXPORT_FLAG, export_uri, *job.trainer_flags(), *job.args]
    if job.framework == "tensorflow":
        # BackupAndRestore writes locally; the chief syncs the folder to S3 after each epoch.
        flags += [BACKUP_DIR_FLAG, BACKUP_DIR, BACKUP_URI_FLAG, checkpoint_uri]
    else:
        flags += [CHECKPOINTS_FLAG, checkpoint_uri]
    if job.task != "recommender":  # one process: no collectives to time out
        flags += [COLLECTIVE_TIMEOUT_FLAG, str(job.collective_timeout_seconds)]
    return flags


def _train_job_spec(job: TrainingJobConfig, runtime: TrainingRuntime, image: str, args: list[pulumi.Input[str]],
                    env: list[dict[str, Any]], labels: dict[str, str], service_account: str) -> dict[str, Any]:
    """The TrainJob spec: the trainer (image, command, flags, env, nodes, processes, resources) and our patch of
    the runtime's `node` pods (labels, identity, placement, /dev/shm size)."""
    trainer: dict[str, Any] = {"image": image, "args": args, "env": env, "numNodes": job.replicas,
                               # One torchrun process per GPU (or one on CPU-only nodes).
                               "numProcPerNode": job.ranks_per_replica,
                               "resourcesPerNode": container_resources(job.cpu, job.memory, job.gpus_per_replica)}
    if job.task == "recommender":
        # One process (replicas 1): no rendezvous, so no torchrun.
        trainer["command"] = ["python", "-m", "workloads.recommend.train"]
    pod_patch = {
        "metadata": {"labels": labels},
        "spec": {"serviceAccountName": service_account,
                 "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_limit}}],
                 **scheduling(job.gpu_pool, job.gpus_per_replica)},
    }
    return {
        "runtimeRef": {"name": runtime.runtime_name, "apiGroup": "trainer.kubeflow.org",
                       "kind": "ClusterTrainingRuntime"},
        "trainer": trainer,
        "runtimePatches": [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
            "replicatedJobs": [{"name": NODE, "template": {"spec": {"template": pod_patch}}}]}}}}],
    }


def _tf_jobset_spec(job: TrainingJobConfig, training: TrainingConfig, image: str, args: list[pulumi.Input[str]],
                    env: list[dict[str, Any]], labels: dict[str, str], service_account: str) -> dict[str, Any]:
    """The TF JobSet spec: N one-pod Indexed Jobs `worker` with DNS hostnames, restarted as a group."""
    downward = [{"name": var, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{label}']"}}}
                for var, label in JOBSET_ENV.items()]
    container = {
        "name": "trainer", "image": image, "command": ["python", "-m", "workloads.trainer_tf"], "args": args,
        "env": [*env, *downward],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
                  {"name": "tf-worker", "containerPort": TF_WORKER_PORT, "protocol": "TCP"}],
        "resources": container_resources(job.cpu, job.memory, job.gpus_per_replica),
    }
    template = pod_template(labels, container, shm_size=job.shm_limit, extra_volumes=(("backup", BACKUP_DIR),))
    template["spec"] |= {"serviceAccountName": service_account, **scheduling(job.gpu_pool, job.gpus_per_replica)}
    return {
        **group_restarts(training),
        # Worker i is <jobset>-worker-<i>-0.<jobset> (the subdomain defaults to the JobSet name).
        "network": {"enableDNSHostnames": True},
        "replicatedJobs": [{"name": TF_REPLICATED_JOB, "replicas": job.replicas, "template": {"spec": {
            # A failed worker fails its Job at once; the JobSet restarts the whole group.
            "parallelism": 1, "completions": 1, "completionMode": "Indexed", "backoffLimit": 0,
            "template": template,
        }}}],
    }
