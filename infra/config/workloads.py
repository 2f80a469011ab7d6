"""Stack config for the workloads: `modelplane:training` (jobs) and `modelplane:inference` (services).

Each model's `checks()` returns its cross-field problems; infra/config/parse.py scopes them to
their key paths and reports every problem of every section at once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infra.config.base import Section, cpu_problems, memory_problems
from workloads.common.vocab import PLATFORM_TRAINER_FLAGS

_NAME = r"^[a-z][a-z0-9-]{0,40}$"


def image_is_pinned(image: str) -> bool:
    """True when the image names a tag other than `latest`, or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def _resource_checks(cpu: str, memory: str, gpus_key: str, gpus: int, gpu_pool: str | None) -> list[tuple[str, str]]:
    problems = cpu_problems("cpu", cpu, "4") + memory_problems("memory", memory, "16Gi")
    if gpus and not gpu_pool:
        problems.append(("gpuPool", f"is required when GPUs are requested (got {gpus_key}={gpus}); name a gpuPools entry"))
    if gpu_pool and not gpus:
        problems.append(("gpuPool", f"has no effect without GPUs; set {gpus_key} or remove gpuPool (got {gpu_pool!r})"))
    return problems


def _image_checks(key: str, image: str | None) -> list[tuple[str, str]]:
    if image is not None and not image_is_pinned(image):
        return [(key, f"must be pinned to a tag or digest, never latest or untagged (got {image!r})")]
    return []


class TrainingJobConfig(Section):
    """One distributed training job."""

    name: str = Field(pattern=_NAME)
    """Job name (lowercase letters, digits, dashes); also its checkpoint and export prefix."""
    framework: Literal["pytorch", "tensorflow"]
    """pytorch (PyTorchJob + torchrun) or tensorflow (TFJob + MultiWorkerMirroredStrategy)."""
    image: str | None = None
    """Trainer image. Defaults to our trainer-torch / trainer-tf image at the pinned release tag."""
    replicas: int = Field(default=1, ge=1, le=256)
    """Replicas: one leader plus workers. Defaults to 1."""
    gpus_per_replica: int = Field(default=0, ge=0, le=16)
    """GPUs per replica (torchrun starts one process per GPU). Defaults to 0 (CPU)."""
    gpu_pool: str | None = None
    """Name of the gpuPools entry to run on; required when gpusPerReplica > 0."""
    cpu: str = "4"
    """CPU per replica. Defaults to 4."""
    memory: str = "16Gi"
    """Memory per replica. Defaults to 16Gi."""
    shm_size: str = "8Gi"
    """Memory-backed /dev/shm size. Defaults to 8Gi."""
    dataset: str
    """Dataset location under the datasets bucket: the prepared manifest (PyTorch) or an image-record prefix (TF)."""
    args: list[str] = []
    """Extra trainer flags, passed through (the trainer validates them)."""
    backoff_limit: int = Field(default=3, ge=0, le=100)
    """Job restarts before failing. Defaults to 3."""
    ttl_seconds_after_finished: int = Field(default=86400, ge=0)
    """Seconds finished pods are kept. Defaults to 86400."""

    def checks(self) -> list[tuple[str, str]]:
        """Resource quantities, GPU pool pairing, pinned image, no flags the platform sets itself."""
        problems = _resource_checks(self.cpu, self.memory, "gpusPerReplica", self.gpus_per_replica, self.gpu_pool)
        problems += _image_checks("image", self.image)
        problems += memory_problems("shmSize", self.shm_size, "8Gi")
        for i, arg in enumerate(self.args):
            flag = arg.split("=", 1)[0]
            if flag in PLATFORM_TRAINER_FLAGS:
                problems.append((f"args[{i}]", f"{flag} is set by the platform; remove it"))
        return problems


class TrainingConfig(Section):
    """`modelplane:training`: the stack's training jobs."""

    jobs: list[TrainingJobConfig] = []
    """Training jobs. Defaults to none."""


class InferenceServiceConfig(Section):
    """One inference service."""

    name: str = Field(pattern=_NAME)
    """Service name; also the model name clients use."""
    runtime: Literal["modelplane-serve", "tf-serving"] = "modelplane-serve"
    """modelplane-serve (ours) or tf-serving (official TF Serving). Defaults to modelplane-serve."""
    model: str = Field(pattern=_NAME)
    """The model to serve: the training job name whose export lives under models/<model>/."""
    image: str | None = None
    """Server image. Defaults to our serve image, or the pinned TF Serving image for tf-serving."""
    min_replicas: int = Field(default=2, ge=1, le=1000)
    """HPA floor. Defaults to 2."""
    max_replicas: int = Field(default=10, ge=1, le=1000)
    """HPA ceiling. Defaults to 10."""
    cpu: str = "2"
    """CPU per pod. Defaults to 2."""
    memory: str = "8Gi"
    """Memory per pod. Defaults to 8Gi."""
    gpus: int = Field(default=0, ge=0, le=8)
    """GPUs per pod. Defaults to 0."""
    gpu_pool: str | None = None
    """gpuPools entry to run on; required when gpus > 0."""
    canary_image: str | None = None
    """Image of a canary track. Defaults to none."""
    canary_weight: int = Field(default=0, ge=0, le=100)
    """Percent of traffic to the canary. Defaults to 0."""
    api_key: bool = True
    """Require a generated API key. Defaults to true."""
    cache: bool = True
    """Use the stack's Redis response cache. Defaults to true."""
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    """Dynamic batching limit. Defaults to 16."""
    max_queue: int = Field(default=256, ge=1)
    """Queued requests before 429. Defaults to 256."""
    max_tokens_cap: int = Field(default=512, ge=1)
    """Largest max_tokens a request may ask. Defaults to 512."""
    target_queue_depth: int = Field(default=8, ge=1)
    """Average queue depth per pod the HPA aims for. Defaults to 8."""

    def checks(self) -> list[tuple[str, str]]:
        """Replicas order, canary pairing, resources, pinned images."""
        problems = _resource_checks(self.cpu, self.memory, "gpus", self.gpus, self.gpu_pool)
        problems += _image_checks("image", self.image) + _image_checks("canaryImage", self.canary_image)
        if self.max_replicas < self.min_replicas:
            problems.append(("maxReplicas", f"must be >= minReplicas (got {self.max_replicas} < {self.min_replicas})"))
        if self.canary_weight and not self.canary_image:
            problems.append(("canaryImage", f"is required when canaryWeight > 0 (got weight {self.canary_weight})"))
        if self.runtime == "tf-serving" and self.gpus:
            problems.append(("gpus", f"must be 0 with runtime tf-serving (got {self.gpus}): the pinned TF Serving image "
                                     "is the CPU build; use 0 or runtime modelplane-serve"))
        return problems


class InferenceConfig(Section):
    """`modelplane:inference`: the stack's inference services."""

    services: list[InferenceServiceConfig] = []
    """Inference services. Defaults to none."""
