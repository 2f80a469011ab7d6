"""`TrainingJob`: a Kubeflow training-operator PyTorchJob or TFJob, declared from stack config.

Jobs of task `lm` run the LM trainers; task `recommender` runs the recommender's trainer
(`python -m workloads.recommend.train`) as a one-replica PyTorchJob with the same platform flags.

The operator owns scale-out: for PyTorchJob it sets torchrun's PET_* rendezvous variables on
every replica, for TFJob it writes TF_CONFIG. We never schedule ranks ourselves.

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

from infra.config.workloads import TrainingJobConfig
from infra.k8s.kueue import QUEUE_LABEL
from infra.k8s.netpol import Rule, allow_spec, egress, ingress, network_policy, pod_peer, select
from infra.k8s.observability import from_prometheus
from infra.k8s.podspec import (
    container_resources,
    container_security_context,
    cpu_threads,
    env_list,
    pod_security_context,
    scheduling,
)
from workloads.common.vocab import (
    BACKUP_DIR_FLAG,
    BACKUP_URI_FLAG,
    CHECKPOINTS_FLAG,
    COMPONENT_LABEL,
    DATA_FLAG,
    DO_NOT_DISRUPT_ANNOTATION,
    EXPORT_FLAG,
    JOB_LABEL,
    MANAGED_BY_LABELS,
    METRICS_PORT_FLAG,
    NAME_LABEL,
    NO_SIDECAR_ANNOTATION,
)

METRICS_PORT: Final = 9090
"""Port of rank 0's / the chief's Prometheus endpoint (`--metrics-port`)."""
RESTART_POLICY: Final = "OnFailure"
"""Replica restart policy: spot loss and killed ranks resume from the checkpoint."""
BACKUP_DIR: Final = "/backup"
"""The TF trainer's local BackupAndRestore folder (an emptyDir)."""
_KIND = {"pytorch": ("PyTorchJob", "pytorchReplicaSpecs", "Master", "pytorch"),
         "tensorflow": ("TFJob", "tfReplicaSpecs", "Chief", "tensorflow")}
"""framework → (kind, replica-spec key, leader role, the container name the operator's webhook requires)."""


class TrainingJob(pulumi.ComponentResource):
    """A distributed training job under the Kubeflow training operator, from its `training.jobs` entry.

    The namespace-wide PodMonitor of the Observability stack scrapes the leader's `metrics` port.
    """

    job_name: pulumi.Output[str]
    """The PyTorchJob/TFJob name."""

    def __init__(self, name: str, job: TrainingJobConfig, *, image: str, namespace: str, service_account: str,
                 data_uri: pulumi.Input[str], checkpoint_uri: pulumi.Input[str], export_uri: pulumi.Input[str],
                 env: Mapping[str, pulumi.Input[str]], secret_env_from: Sequence[pulumi.Input[str]] = (),
                 egress_rules: Sequence[Rule] = (), scraped: bool = False, queue: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`job` is the stack's entry; `image` the trainer image (pinned); `namespace` and `service_account`
        where it runs with its IAM role; `data_uri`, `checkpoint_uri` and `export_uri` the S3 locations behind
        the platform's trainer flags; `env` plain env for every replica (delivered through a ConfigMap);
        `secret_env_from` Secrets whose keys become env vars (the local stack's MinIO keys); `egress_rules` the
        NetworkPolicy egress to the stack's data (S3 or MinIO) beyond the job's own ranks; `scraped` admits
        Prometheus to the metrics port; `queue` names the Kueue LocalQueue that admits the job (its team's), set
        as the job's queue label, which Kueue's kubeflow integrations read from the job's own labels."""
        super().__init__("modelplane:training:TrainingJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        kind, specs_key, leader, container_name = _KIND[job.framework]
        labels = {NAME_LABEL: name, COMPONENT_LABEL: "training", **MANAGED_BY_LABELS, JOB_LABEL: name}
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-env",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{name}-env", namespace=namespace, labels=labels),
            data=dict(env),
            opts=child,
        )
        flags: list[pulumi.Input[str]] = [DATA_FLAG, data_uri, EXPORT_FLAG, export_uri, *job.trainer_flags(),
                                          *job.args]
        if job.framework == "tensorflow":
            # BackupAndRestore writes locally; the chief syncs the folder to S3 after each epoch.
            flags += [BACKUP_DIR_FLAG, BACKUP_DIR, BACKUP_URI_FLAG, checkpoint_uri]
        else:
            flags += [CHECKPOINTS_FLAG, checkpoint_uri]
        container: dict[str, Any] = {
            "name": container_name,
            "image": image,
            "command": _command(job),
            "args": [*flags, METRICS_PORT_FLAG, str(METRICS_PORT)],
            "envFrom": [{"configMapRef": {"name": config_map.metadata.name}},
                        *({"secretRef": {"name": secret}} for secret in secret_env_from)],
        }
        template = _pod_template(job, labels, container, service_account)
        replica_specs: dict[str, Any] = {
            leader: {"replicas": 1, "restartPolicy": RESTART_POLICY, "template": template},
        }
        if job.replicas > 1:
            replica_specs["Worker"] = {"replicas": job.replicas - 1, "restartPolicy": RESTART_POLICY,
                                       "template": template}
        spec: dict[str, Any] = {
            "runPolicy": {"backoffLimit": job.backoff_limit, "ttlSecondsAfterFinished": job.ttl_seconds_after_finished,
                          "cleanPodPolicy": "None"},
            specs_key: replica_specs,
        }
        if job.framework == "pytorch":
            # A string per the CRD; one torchrun process per GPU (or one on CPU-only replicas).
            spec["nprocPerNode"] = str(max(job.gpus_per_replica, 1))
        resource = k8s.apiextensions.CustomResource(
            f"{name}-job", api_version="kubeflow.org/v1", kind=kind,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace,
                                                labels={**labels, **({QUEUE_LABEL: queue} if queue else {})}),
            spec=spec, opts=child,
        )
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


def _command(job: TrainingJobConfig) -> list[str]:
    if job.task == "recommender":
        # One process (replicas 1): no rendezvous, so no torchrun.
        return ["python", "-m", "workloads.recommend.train"]
    if job.framework == "pytorch":
        # torchrun reads PET_NNODES/PET_NODE_RANK/PET_MASTER_ADDR/PET_NPROC_PER_NODE set by the operator.
        return ["torchrun", "--module", "workloads.trainer_torch"]
    return ["python", "-m", "workloads.trainer_tf"]


def _pod_template(job: TrainingJobConfig, labels: dict[str, str], container: dict[str, Any],
                  service_account: str) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]
    if job.framework == "tensorflow":
        volumes.append({"name": "backup", "emptyDir": {}})
        mounts.append({"name": "backup", "mountPath": BACKUP_DIR})
    gpus = job.gpus_per_replica
    container = {
        **container,
        # One OpenMP thread per process on GPU nodes (torchrun runs one per GPU); the CPU quota otherwise.
        "env": env_list({"OMP_NUM_THREADS": "1" if gpus else str(cpu_threads(job.cpu)), "HOME": "/tmp"}),
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": container_resources(job.cpu, job.memory, gpus),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    return {
        "metadata": {"labels": labels, "annotations": {**DO_NOT_DISRUPT_ANNOTATION, **NO_SIDECAR_ANNOTATION}},
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,  # ranks never call the Kubernetes API
            "securityContext": pod_security_context(),
            "containers": [container],
            "volumes": volumes,
            # Spot's two-minute notice: leave time for the trainer's SIGTERM checkpoint.
            "terminationGracePeriodSeconds": 120,
            **scheduling(job.gpu_pool, gpus),
        },
    }
