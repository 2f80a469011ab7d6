"""`TrainingJob`: a Kubeflow training-operator PyTorchJob or TFJob, declared from stack config.

The operator owns scale-out: for PyTorchJob it sets torchrun's PET_* rendezvous variables on
every replica, for TFJob it writes TF_CONFIG. We never schedule ranks ourselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import pulumi
import pulumi_kubernetes as k8s

from infra.config.errors import raise_if_invalid
from infra.k8s.podspec import (
    Resources,
    container_security_context,
    cpu_threads,
    env_list,
    image_is_pinned,
    pod_security_context,
    scheduling,
)
from workloads.common.vocab import DO_NOT_DISRUPT_ANNOTATION, NO_SIDECAR_ANNOTATION

Framework = Literal["pytorch", "tensorflow"]
METRICS_PORT: Final = 9090
"""Port of rank 0's / the chief's Prometheus endpoint (`--metrics-port`)."""
_KIND = {"pytorch": ("PyTorchJob", "pytorchReplicaSpecs", "Master", "pytorch"),
         "tensorflow": ("TFJob", "tfReplicaSpecs", "Chief", "tensorflow")}
"""framework → (kind, replica-spec key, leader role, the container name the operator's webhook requires)."""


@dataclass(frozen=True, kw_only=True)
class TrainingJobArgs:
    """Inputs of `TrainingJob`."""

    framework: Framework
    """pytorch (PyTorchJob, torchrun/DDP) or tensorflow (TFJob, MultiWorkerMirroredStrategy)."""
    namespace: str
    """Namespace of the job."""
    image: str
    """Trainer image, pinned by tag or digest (never `latest`)."""
    service_account: str
    """Service account bound to the trainer's IAM role (WorkloadIdentity)."""
    replicas: int
    """Total replicas: 1 leader (Master/Chief) plus replicas-1 workers. Valid: >= 1."""
    resources: Resources
    """Per-replica CPU, memory and GPUs."""
    gpu_pool: str | None = None
    """GPU pool to run on (required when resources.gpus > 0)."""
    cpu_pool: str | None = None
    """CPU pool for GPU-less jobs. Defaults to any node."""
    args: Sequence[pulumi.Input[str]] = ()
    """Trainer flags (after the entry module)."""
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Environment for every replica, delivered through a ConfigMap (S3 URIs, endpoints)."""
    checkpoint_uri: pulumi.Input[str]
    """S3 prefix of checkpoints (PyTorch) or BackupAndRestore backups (TensorFlow)."""
    secret_env_from: Sequence[pulumi.Input[str]] = ()
    """Secrets whose keys become env vars (e.g. MinIO credentials on the local stack). Defaults to none."""
    pod_monitor: bool = True
    """Create a PodMonitor (needs the Prometheus operator CRDs). Defaults to true."""
    shm_size: str = "8Gi"
    """Size of the memory-backed /dev/shm (DataLoader workers and NCCL need more than Docker's 64Mi)."""
    backoff_limit: int = 3
    """Restarts of the job before it fails. Defaults to 3."""
    ttl_seconds_after_finished: int = 86400
    """Seconds a finished job's pods are kept for debugging. Defaults to 86400."""
    restart_policy: Literal["OnFailure", "ExitCode", "Never"] = "OnFailure"
    """Replica restart policy. Defaults to OnFailure (spot loss and killed ranks resume from the checkpoint)."""


class TrainingJob(pulumi.ComponentResource):
    """A distributed training job under the Kubeflow training operator, with a PodMonitor for rank 0."""

    job_name: pulumi.Output[str]
    """The PyTorchJob/TFJob name."""

    def __init__(self, name: str, args: TrainingJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelplane:training:TrainingJob", name, None, opts)
        _validate(args)
        child = pulumi.ResourceOptions(parent=self)
        kind, specs_key, leader, container_name = _KIND[args.framework]
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "training",
                  "app.kubernetes.io/managed-by": "modelplane", "modelplane.io/job": name}
        env = k8s.core.v1.ConfigMap(
            f"{name}-env",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{name}-env", namespace=args.namespace, labels=labels),
            data=dict(args.env),
            opts=child,
        )
        template = _pod_template(args, labels, container_name, env.metadata.name)
        replica_specs: dict[str, Any] = {
            leader: {"replicas": 1, "restartPolicy": args.restart_policy, "template": template},
        }
        if args.replicas > 1:
            replica_specs["Worker"] = {"replicas": args.replicas - 1, "restartPolicy": args.restart_policy,
                                       "template": template}
        spec: dict[str, Any] = {
            "runPolicy": {"backoffLimit": args.backoff_limit, "ttlSecondsAfterFinished": args.ttl_seconds_after_finished,
                          "cleanPodPolicy": "None"},
            specs_key: replica_specs,
        }
        if args.framework == "pytorch":
            # A string per the CRD; one torchrun process per GPU (or one on CPU-only replicas).
            spec["nprocPerNode"] = str(max(args.resources.gpus, 1))
        job = k8s.apiextensions.CustomResource(
            f"{name}-job", api_version="kubeflow.org/v1", kind=kind,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=args.namespace, labels=labels),
            spec=spec, opts=child,
        )
        if args.pod_monitor:
            self._pod_monitor(name, args, labels, leader)
        # Resolves once the job exists, so dependents wait for it.
        self.job_name = job.id.apply(lambda _: name)
        self.register_outputs({"job_name": self.job_name})

    def _pod_monitor(self, name: str, args: TrainingJobArgs, labels: dict[str, str], leader: str) -> None:
        # Only the leader serves /metrics; scrape it by the replica-type label the operator sets.
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor", api_version="monitoring.coreos.com/v1", kind="PodMonitor",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=args.namespace, labels=labels),
            spec={
                "selector": {"matchLabels": {"modelplane.io/job": name,
                                             "training.kubeflow.org/replica-type": leader.lower()}},
                "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )


def _command(args: TrainingJobArgs) -> list[str]:
    if args.framework == "pytorch":
        # torchrun reads PET_NNODES/PET_NODE_RANK/PET_MASTER_ADDR/PET_NPROC_PER_NODE set by the operator.
        return ["torchrun", "--module", "workloads.trainer_torch"]
    return ["python", "-m", "workloads.trainer_tf"]


def _pod_template(args: TrainingJobArgs, labels: dict[str, str], container_name: str,
                  config_map: pulumi.Input[str]) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": args.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]
    extra_args: list[pulumi.Input[str]] = ["--checkpoints", args.checkpoint_uri]
    if args.framework == "tensorflow":
        # BackupAndRestore writes locally; the chief syncs the folder to S3 after each epoch.
        volumes.append({"name": "backup", "emptyDir": {}})
        mounts.append({"name": "backup", "mountPath": "/backup"})
        extra_args = ["--backup-dir", "/backup", "--backup-uri", args.checkpoint_uri]
    container = {
        "name": container_name,
        "image": args.image,
        "command": _command(args),
        "args": [*args.args, *extra_args, "--metrics-port", str(METRICS_PORT)],
        "envFrom": [{"configMapRef": {"name": config_map}},
                    *({"secretRef": {"name": secret}} for secret in args.secret_env_from)],
        # One OpenMP thread per process on GPU nodes (torchrun runs one per GPU); the CPU quota otherwise.
        "env": env_list({"OMP_NUM_THREADS": "1" if args.resources.gpus else str(cpu_threads(args.resources.cpu)),
                         "HOME": "/tmp"}),
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": args.resources.manifest(),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    return {
        "metadata": {"labels": labels, "annotations": {**DO_NOT_DISRUPT_ANNOTATION, **NO_SIDECAR_ANNOTATION}},
        "spec": {
            "serviceAccountName": args.service_account,
            "securityContext": pod_security_context(),
            "containers": [container],
            "volumes": volumes,
            # Spot's two-minute notice: leave time for the trainer's SIGTERM checkpoint.
            "terminationGracePeriodSeconds": 120,
            **scheduling(args.gpu_pool, args.resources.gpus, cpu_pool=args.cpu_pool),
        },
    }


def _validate(args: TrainingJobArgs) -> None:
    problems = []
    if args.replicas < 1:
        problems.append(("replicas", f"must be >= 1 (got {args.replicas})"))
    if args.resources.gpus and not args.gpu_pool:
        problems.append(("gpu_pool", f"is required when resources.gpus > 0 (got gpus={args.resources.gpus})"))
    if args.resources.gpus < 0:
        problems.append(("resources.gpus", f"must be >= 0 (got {args.resources.gpus})"))
    if not image_is_pinned(args.image):
        problems.append(("image", f"must be pinned to a tag or digest, never latest (got {args.image!r})"))
    if args.framework not in _KIND:
        problems.append(("framework", f"must be pytorch or tensorflow (got {args.framework!r})"))
    raise_if_invalid("TrainingJob", problems)
