"""`TrainingRuntime`: the stack's Kubeflow Trainer v2 `ClusterTrainingRuntime` for our PyTorch trainer, and the pod
and restart pieces it shares with the TensorFlow JobSets.

Trainer v2 builds each `TrainJob` into a JobSet from a runtime template: one replicated Job `node` whose container
`node` runs torchrun, with the torch plugin setting PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR
and PET_MASTER_PORT (kubeflow/trainer v2.3.0 pkg/runtime/framework/plugins/torch/torch.go; a TrainJob may not set
them, pkg/constants TorchRunReservedEnvNames). The template mirrors upstream's torch-distributed runtime
(charts/kubeflow-trainer/files/runtimes/torch-distributed.yaml) with our hardened pod around it.

What a TrainJob cannot patch lives here (a runtime patch reaches only the replicated Jobs' pod templates,
pkg/apis/trainer/v1alpha1/trainjob_types.go JobSetSpecPatch, and no container's ports): the JobSet `failurePolicy`
(a failed rank fails its Job, `backoffLimit` 0, and JobSet recreates the whole group, at most `training.maxRestarts`
times, each resuming from the newest committed checkpoint), `ttlSecondsAfterFinished` and the metrics port. So does
what every job shares: the pod and container security contexts, the memory-backed /dev/shm and /tmp, the grace
period for the SIGTERM checkpoint and the annotations.
"""

from __future__ import annotations

from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra.config.workloads import TrainingConfig, TrainingJobConfig
from infra.k8s.podspec import container_resources, container_security_context, env_list, pod_security_context
from workloads.common.vocab import (
    COMPONENT_LABEL,
    DO_NOT_DISRUPT_ANNOTATION,
    MANAGED_BY_LABELS,
    NAME_LABEL,
    NO_SIDECAR_ANNOTATION,
)

RUNTIME_NAME: Final = "modelplane-torch"
"""Name of the ClusterTrainingRuntime every PyTorch TrainJob references."""
TRAINER_API_VERSION: Final = "trainer.kubeflow.org/v1alpha1"
"""API of TrainJob and ClusterTrainingRuntime (kubeflow/trainer v2.3.0 pkg/apis/trainer/v1alpha1)."""
NODE: Final = "node"
"""Name of the runtime's replicated Job and of its trainer container; Trainer's torch plugin and the TrainJob's
`trainer` fields target exactly this name (pkg/constants Node)."""
ANCESTOR_LABEL: Final = {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
"""Marks the replicated Job the TrainJob's `trainer` (numNodes, image, command, resources) applies to."""
METRICS_PORT: Final = 9090
"""Port of rank 0's / worker 0's Prometheus endpoint (`--metrics-port`); a TrainJob cannot add container ports, so
the runtime declares it."""
RESTART_STRATEGY: Final = "BlockingRecreate"
"""JobSet restart strategy (v0.12.0 enum Recreate, BlockingRecreate, InPlaceRestart): like Recreate, every Job of
the group is recreated, but only once all pods of the failed attempt are gone, so an old rank never races the new
group's checkpoint resume nor holds GPUs the new group needs."""
TERMINATION_GRACE_S: Final = 120
"""Spot's two-minute notice: time for the trainer's SIGTERM checkpoint."""
TORCHRUN_SHUTDOWN_TIMEOUT_S: Final = TERMINATION_GRACE_S - 5
"""Seconds torchrun lets its workers finish after forwarding SIGTERM before it SIGKILLs them (`--shutdown-timeout`;
torch 2.13 torch/distributed/launcher/api.py defaults it to 30, which would kill the SIGTERM checkpoint that the
trainer's --sigterm-grace, 100 s by default, allows); just inside the pod's grace period."""
HOME_ENV: Final = {"HOME": "/tmp"}
"""Every training container's HOME: the writable /tmp emptyDir (the root filesystem is read-only)."""
RUNTIME_ENV: Final = {
    **HOME_ENV,
    # 1 = TearDown: a collective past its timeout aborts the communicator and ends the process, so the rank fails
    # instead of hanging (torch 2.13 torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp ErrorHandlingMode; torchrun
    # defaults it to 1 too, local_elastic_agent.py, set here so no image or launcher change can drop it).
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
}
"""Env of every PyTorch rank, whatever the job."""
TRAINING_LABELS: Final = {COMPONENT_LABEL: "training", **MANAGED_BY_LABELS}
"""Labels on every training pod (the namespace-wide PodMonitor selects them with the leader's labels)."""
_JOB_FIELDS = TrainingJobConfig.model_fields


class TrainingRuntime(pulumi.ComponentResource):
    """The ClusterTrainingRuntime `modelplane-torch` that every PyTorch TrainJob of the stack runs on."""

    runtime_name: pulumi.Output[str]
    """The runtime's name; resolves once it exists (a TrainJob is rejected before its runtime exists)."""

    def __init__(self, name: str, training: TrainingConfig, *, image: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`training` gives the group restart bound and the TTL; `image` is our trainer-torch image (pinned), which
        each TrainJob may override with its job's image."""
        super().__init__("modelplane:training:TrainingRuntime", name, None, opts)
        container = {
            "name": NODE,
            "image": image,
            # torchrun reads the PET_* variables Trainer's torch plugin sets on this container.
            "command": ["torchrun", f"--shutdown-timeout={TORCHRUN_SHUTDOWN_TIMEOUT_S}", "--module",
                        "workloads.trainer_torch"],
            "env": env_list(RUNTIME_ENV),
            # Trainer merges each TrainJob's resourcesPerNode over these key by key (every TrainingJob sets cpu and
            # memory); they bound a TrainJob created by hand without any, at a job entry's defaults.
            "resources": container_resources(_JOB_FIELDS["cpu"].default, _JOB_FIELDS["memory"].default, 0),
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        }
        runtime = k8s.apiextensions.CustomResource(
            f"{name}-runtime", api_version=TRAINER_API_VERSION, kind="ClusterTrainingRuntime",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=RUNTIME_NAME, labels={
                NAME_LABEL: RUNTIME_NAME, **TRAINING_LABELS, "trainer.kubeflow.org/framework": "torch"}),
            spec={
                "mlPolicy": {"numNodes": 1, "torch": {}},
                "template": {"spec": {
                    **group_restarts(training),
                    "replicatedJobs": [{"name": NODE, "template": {
                        "metadata": {"labels": dict(ANCESTOR_LABEL)},
                        "spec": {"backoffLimit": 0, "template": pod_template(TRAINING_LABELS, container)},
                    }}],
                }},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.runtime_name = runtime.id.apply(lambda _: RUNTIME_NAME)
        self.register_outputs({"runtime_name": self.runtime_name})


def group_restarts(training: TrainingConfig) -> dict[str, Any]:
    """The JobSet spec fields that restart a failed group a bounded number of times and delete it after its TTL."""
    return {"failurePolicy": {"maxRestarts": training.max_restarts, "restartStrategy": RESTART_STRATEGY},
            "ttlSecondsAfterFinished": training.ttl_seconds_after_finished}


def pod_template(labels: dict[str, str], container: dict[str, Any], *, shm_size: str | None = None,
                 extra_volumes: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """A training pod: `container` hardened, with memory-backed /dev/shm (`shm_size`, or sized by each TrainJob's
    patch), /tmp and `extra_volumes` ((name, mount path) emptyDirs); never restarted in place (`Never`: a failed
    rank fails its Job and the JobSet restarts the group), no API token, outside the mesh, not disrupted."""
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", **({"sizeLimit": shm_size} if shm_size else {})}},
        {"name": "tmp", "emptyDir": {}},
        *({"name": volume, "emptyDir": {}} for volume, _ in extra_volumes),
    ]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"},
              *({"name": volume, "mountPath": path} for volume, path in extra_volumes)]
    return {
        "metadata": {"labels": dict(labels), "annotations": {**DO_NOT_DISRUPT_ANNOTATION, **NO_SIDECAR_ANNOTATION}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,  # ranks never call the Kubernetes API
            "securityContext": pod_security_context(),
            "containers": [{**container, "securityContext": container_security_context(), "volumeMounts": mounts}],
            "volumes": volumes,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        },
    }
