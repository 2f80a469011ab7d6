"""Stack config for the workloads: `modelplane:training` (jobs) and `modelplane:inference` (services).

Each model's `checks()` returns its cross-field problems; infra/config/parse.py scopes them to
their key paths and reports every problem of every section at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field
from pydantic.alias_generators import to_camel

from infra.config.base import MEMORY_QUANTITY, UNIT_BYTES, Section, cpu_problems, memory_bytes, memory_problems, not_one_of
from infra.config.gpu import GpuPoolConfig
from infra.config.instances import smallest_gpu
from infra.config.routes import IngressConfig, Route, routes_for
from infra.config.vllm import VllmConfig
from workloads.common.vocab import PLATFORM_TRAINER_FLAGS
from workloads.gateway.settings import RateLimitBurst, RateLimitRps, default_burst
from workloads.lm.memory import GIB, Checkpointing, Parallel, build_bytes, default_parallel, fit_problem
from workloads.lm.presets import PRESETS, default_seq_len, preset_config
from workloads.trainer_torch.config import TrainSettings

_NAME = r"^[a-z][a-z0-9-]{0,40}$"
_SHM_DEFAULT_CAP = 8 * 2**30
"""The default /dev/shm size's ceiling (a quarter of memory below it): enough for data-loader workers and NCCL."""


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
    """pytorch (a Kubeflow Trainer TrainJob on our torchrun runtime) or tensorflow (a JobSet of
    MultiWorkerMirroredStrategy workers)."""
    task: Literal["lm", "recommender"] = "lm"
    """What trains: lm (the language-model trainer) or recommender (`python -m workloads.recommend.train`, PyTorch,
    one replica). Defaults to lm. Valid values: lm, recommender."""
    image: str | None = None
    """Trainer image. Defaults to our trainer-torch / trainer-tf image (task recommender: the recommend image) at the
    pinned release tag."""
    replicas: int = Field(default=1, ge=1, le=256)
    """Replicas: one leader plus workers. Defaults to 1. At most 32 (limits.MAX_TRAINING_REPLICAS) unless
    modelplane:limits.allowLarge is true."""
    gpus_per_replica: int = Field(default=0, ge=0, le=16)
    """GPUs per replica (torchrun starts one process per GPU). Defaults to 0 (CPU)."""
    gpu_pool: str | None = None
    """Name of the gpuPools entry to run on; required when gpusPerReplica > 0."""
    team: str | None = None
    """The teams entry whose queue admits the job (Kueue); it runs in the team's namespace. Defaults to none: the
    training namespace, unqueued."""
    cpu: str = "4"
    """CPU per replica. Defaults to 4."""
    memory: str = "16Gi"
    """Memory per replica. Defaults to 16Gi."""
    shm_size: str | None = None
    """Memory-backed /dev/shm size, below `memory` (it counts against the memory limit). Defaults to a quarter of
    memory, at most 8Gi."""
    dataset: str
    """Dataset location under the datasets bucket: the prepared manifest (PyTorch) or an image-record prefix (TF)."""
    model: str | None = None
    """PyTorch trainer's --model preset (its settings list the presets). Defaults to the trainer's default."""
    vocab_size: int | None = Field(default=None, ge=1, le=65536)
    """PyTorch trainer's --vocab-size: embedding rows, at least the id_limit of the dataset's Hugging Face tokenizer
    (rounded up to a multiple of 64). Defaults to the preset's (byte-level data)."""
    seq_len: int | None = Field(default=None, ge=1)
    """PyTorch trainer's --seq-len. Defaults to the trainer's default for the preset."""
    micro_batch: int | None = Field(default=None, ge=1)
    """PyTorch trainer's --micro-batch: sequences per GPU per pass. Defaults to the trainer's default."""
    parallel: Parallel | None = None
    """PyTorch trainer's --parallel, at the job's ranks (replicas x gpusPerReplica). Defaults to the trainer's
    default."""
    activation_checkpointing: Checkpointing | None = None
    """PyTorch trainer's --activation-checkpointing. Defaults to the trainer's default."""
    args: list[str] = []
    """Other trainer flags, passed through after those above (the trainer validates them)."""
    collective_timeout_seconds: int = Field(default=1800, ge=60, le=86400)
    """Seconds a collective (all-reduce, barrier) may wait for a peer before the rank fails, so a hung rank fails
    the job (and the group restarts) instead of holding its GPUs (the trainers' --collective-timeout). Defaults to
    1800. Valid values: 60 to 86400. Distributed trainers only (not task recommender)."""

    MOVED_KEYS: ClassVar[Mapping[str, str]] = {
        "backoffLimit": "modelplane:training.maxRestarts",
        "ttlSecondsAfterFinished": "modelplane:training.ttlSecondsAfterFinished",
    }
    """Keys a job entry once had, by where they live now: restarts and cleanup are JobSet-level, which a TrainJob
    cannot set per job, so they are one setting of the stack's training section."""

    def checks(self) -> list[tuple[str, str]]:
        """Resource quantities, GPU pool pairing, pinned image, trainer fields, no flags set elsewhere."""
        problems = _resource_checks(self.cpu, self.memory, "gpusPerReplica", self.gpus_per_replica, self.gpu_pool)
        problems += _image_checks("image", self.image)
        if self.shm_size is not None:
            problems += memory_problems("shmSize", self.shm_size, "8Gi") or self._shm_problems(self.shm_size)
        problems += self._trainer_field_checks() + self._task_checks() + self._host_memory_problems()
        owners = {TrainSettings.flag_name(field): to_camel(field) for field in _TRAINER_FIELDS} if self.lm else {}
        for i, arg in enumerate(self.args):
            flag = arg.split("=", 1)[0]
            if flag in PLATFORM_TRAINER_FLAGS:
                problems.append((f"args[{i}]", f"{flag} is set by the platform; remove it"))
            elif flag in owners:
                problems.append((f"args[{i}]", f"{flag} has its own field; set {owners[flag]}: {self._next(i)} "
                                               "instead of passing it in args"))
        return problems

    def _shm_problems(self, shm_size: str) -> list[tuple[str, str]]:
        # A memory-backed /dev/shm counts against the container's memory limit: as large as the limit, filling it
        # gets the rank OOM-killed.
        if not MEMORY_QUANTITY.match(self.memory) or memory_bytes(shm_size) < memory_bytes(self.memory):
            return []
        return [("shmSize", f"{shm_size} is not below memory {self.memory} (a memory-backed /dev/shm counts "
                            "against the memory limit); set shmSize below memory, e.g. a quarter of it")]

    def _host_memory_problems(self) -> list[tuple[str, str]]:
        # Every rank of a replica builds the whole fp32 model in host memory at once before placing it on its GPU
        # (workloads.trainer_torch.train): below that the pod is OOM-killed before the first step.
        model = self.trainer_setting("model") if self.lm else None
        if model not in PRESETS or not MEMORY_QUANTITY.match(self.memory):
            return []
        ranks = self.ranks_per_replica
        config = preset_config(model, self.vocab_size)
        needed = ranks * build_bytes(config)
        if needed < memory_bytes(self.memory):
            return []
        return [("memory", f"{self.memory} is not above the {needed / GIB:.2f} GiB the replica's {ranks} rank(s) hold "
                           f"while building the {model!r} model (each initialises all of its fp32 parameters, "
                           f"{build_bytes(config) / GIB:.2f} GiB, in host memory before placing them on its "
                           f"device); raise memory to {needed // GIB + 1}Gi or more, or use fewer gpusPerReplica or "
                           "a smaller model")]

    @property
    def ranks_per_replica(self) -> int:
        """torchrun's processes per replica: one per GPU, one on CPU (the TrainJob's numProcPerNode)."""
        return max(self.gpus_per_replica, 1)

    @property
    def shm_limit(self) -> str:
        """The /dev/shm size: `shmSize`, or a quarter of memory capped at 8Gi (in the largest whole unit)."""
        if self.shm_size is not None:
            return self.shm_size
        size = min(memory_bytes(self.memory) // 4, _SHM_DEFAULT_CAP)
        unit = next(u for u in ("Gi", "Mi", "Ki") if size % UNIT_BYTES[u] == 0)
        return f"{size // UNIT_BYTES[unit]}{unit}"

    @property
    def lm(self) -> bool:
        """True when the job runs the LM trainer (task lm with PyTorch), whose settings the trainer fields are."""
        return self.task == "lm" and self.framework == "pytorch"

    def _task_checks(self) -> list[tuple[str, str]]:
        """task recommender: the recommender trainer is one PyTorch process on CPU."""
        if self.task != "recommender":
            return []
        problems: list[tuple[str, str]] = []
        if "collective_timeout_seconds" in self.model_fields_set:
            problems.append(("collectiveTimeoutSeconds", f"applies to distributed trainers only (task recommender is one "
                                                         f"process, got {self.collective_timeout_seconds}); remove it"))
        if self.framework != "pytorch":
            problems.append(("framework", f"must be pytorch with task recommender (got {self.framework!r}): the "
                                          "recommender trains with PyTorch; set framework: pytorch"))
        if self.replicas != 1:
            problems.append(("replicas", f"must be 1 with task recommender (got {self.replicas}): its trainer is one "
                                         "process; set replicas: 1"))
        if self.gpus_per_replica:
            problems.append(("gpusPerReplica", f"must be 0 with task recommender (got {self.gpus_per_replica}): its "
                                               "trainer runs on CPU; remove gpusPerReplica and gpuPool"))
        return problems

    def _next(self, i: int) -> str:
        arg = self.args[i]
        if "=" in arg:
            return arg.split("=", 1)[1]
        return self.args[i + 1] if i + 1 < len(self.args) else "..."

    def _trainer_field_checks(self) -> list[tuple[str, str]]:
        """Every problem of the trainer fields (an unknown model still lets seqLen be checked against all presets)."""
        if not self.lm:
            trainer, why = (("PyTorch trainer", f"framework {self.framework}") if self.framework != "pytorch"
                            else ("LM trainer", f"task {self.task}"))
            return [(to_camel(field), f"applies to the {trainer} only ({why}, got {getattr(self, field)!r}); remove it")
                    for field in _TRAINER_FIELDS if getattr(self, field) is not None]
        problems: list[tuple[str, str]] = []
        model = self.trainer_setting("model")
        if model not in PRESETS:
            problems.append(("model", not_one_of(model, list(PRESETS))))
            longest = max(PRESETS.values(), key=lambda preset: preset.max_seq_len).max_seq_len
            if self.seq_len is not None and self.seq_len > longest:
                problems.append(("seqLen", f"must be at most the longest preset's max_seq_len {longest} "
                                           f"(got {self.seq_len})"))
        elif self.seq_len is not None and self.seq_len > PRESETS[model].max_seq_len:
            problems.append(("seqLen", f"must be at most the {model!r} preset's max_seq_len "
                                       f"{PRESETS[model].max_seq_len} (got {self.seq_len})"))
        return problems

    def trainer_setting(self, field: str) -> Any:
        """A trainer field's value for this job: set here, else the trainer's own default."""
        value = getattr(self, field)
        return value if value is not None else TrainSettings.model_fields[field].default

    def trainer_flags(self) -> list[str]:
        """The trainer flags of the fields set here, in field order (none for TensorFlow or recommender jobs)."""
        flags: list[str] = []
        for field in _TRAINER_FIELDS:
            if self.lm and getattr(self, field) is not None:
                flags += [TrainSettings.flag_name(field), str(getattr(self, field))]
        return flags

    def fit_problems(self, pool: GpuPoolConfig) -> list[tuple[str, str]]:
        """The job's per-GPU memory estimate against the smallest GPU `pool` admits (PyTorch LM GPU jobs only)."""
        if not self.lm or not self.gpus_per_replica or self._trainer_field_checks():
            return []
        smallest = smallest_gpu(pool.instance_families or pool.instance_types)
        if smallest is None:
            return []  # the pool's own rules report an empty instance list or an unknown family
        family, gpu = smallest
        model = self.trainer_setting("model")
        world_size = self.replicas * self.gpus_per_replica
        problem = fit_problem(
            model, device_bytes=gpu.memory_mib * 2**20, device=f"{family} ({gpu.model}), the smallest GPU of "
            f"gpuPools {pool.name!r},", parallel=self.parallel or default_parallel(world_size), world_size=world_size,
            micro_batch=self.trainer_setting("micro_batch"), seq_len=self.seq_len or default_seq_len(model),
            precision="bf16", checkpointing=self.trainer_setting("activation_checkpointing"), vocab_size=self.vocab_size,
            name=lambda field: "replicas x gpusPerReplica" if field == "world_size" else to_camel(field))
        return [("model", f"job {self.name!r} does not fit: {problem}")] if problem else []


_TRAINER_FIELDS = ("model", "vocab_size", "seq_len", "micro_batch", "parallel", "activation_checkpointing")
"""TrainingJobConfig fields that are the PyTorch trainer's settings of the same name (rendered as its flags)."""


class TrainingConfig(Section):
    """`modelplane:training`: the stack's training jobs and how a failed job group restarts."""

    jobs: list[TrainingJobConfig] = []
    """Training jobs. Defaults to none."""
    max_restarts: int = Field(default=3, ge=0, le=20)
    """Whole-group restarts of a failed job before it fails: every rank is recreated and resumes from the newest
    committed checkpoint (the JobSet failurePolicy of the PyTorch runtime and of each TensorFlow JobSet). Defaults
    to 3. Valid values: 0 to 20 (a job failing more often has a fault a restart does not fix)."""
    ttl_seconds_after_finished: int = Field(default=86400, ge=0, le=2**31 - 1)
    """Seconds a finished job (its JobSet and pods, with their logs) is kept before deletion. Defaults to 86400.
    Valid values: 0 to 2147483647 (JobSet's `ttlSecondsAfterFinished` is an int32)."""


class InferenceServiceConfig(Section):
    """One inference service."""

    name: str = Field(pattern=_NAME)
    """Service name; also the model name clients use."""
    runtime: Literal["modelplane-serve", "tf-serving", "vllm", "recommend"] = "modelplane-serve"
    """modelplane-serve (ours), tf-serving (official TF Serving), vllm (official vLLM behind our caching gateway) or
    recommend (our recommendation service behind the gateway, on CPU, reading live features from the stack's Redis).
    Defaults to modelplane-serve."""
    model: str = Field(pattern=_NAME)
    """The model to serve: the training job name whose export lives under models/<model>/."""
    image: str | None = None
    """Server image. Defaults to our serve image, the pinned TF Serving image for tf-serving, the pinned vLLM
    image for vllm (its CUDA build with GPUs, its CPU build without), or our recommend image for recommend."""
    min_replicas: int = Field(default=2, ge=1, le=1000)
    """HPA floor. Defaults to 2. At most 50 (limits.MAX_SERVICE_REPLICAS) unless modelplane:limits.allowLarge is true."""
    max_replicas: int = Field(default=10, ge=1, le=1000)
    """HPA ceiling. Defaults to 10. At most 50 (limits.MAX_SERVICE_REPLICAS) unless modelplane:limits.allowLarge is
    true."""
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
    """Use the stack's Redis response cache (runtimes modelplane-serve and vllm; recommend never caches, as a
    recommendation changes with every feature update). Defaults to true."""
    rate_limit_rps: RateLimitRps = 0.0
    """Runtimes vllm and recommend: requests per second each API key may make at each gateway replica (a token
    bucket); 0 turns the limit off. Defaults to 0: the generated key (apiKey) is one key shared by every client, and
    without one all share the `anonymous` bucket, so a per-key limit would cap the whole service at rate x gateway
    replicas, cache hits included, whatever vLLM can take; overload is the runtime's queue and autoscaler's job. Set
    it with per-client keys (vllm.apiKeysSecret) to keep one client from starving the others."""
    rate_limit_burst: RateLimitBurst | None = None
    """Requests a key may make at once before rateLimitRps applies (the bucket size). Defaults to two seconds' worth
    of rateLimitRps (at least 1), as the gateway's own 20 for 10/s."""
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    """Dynamic batching limit. Defaults to 16."""
    max_queue: int = Field(default=256, ge=1)
    """Queued requests before 429. Defaults to 256."""
    max_tokens_cap: int = Field(default=512, ge=1)
    """Largest max_tokens a request may ask. Defaults to 512."""
    target_queue_depth: int = Field(default=8, ge=1)
    """Average queue depth per pod the HPA aims for (vLLM: requests waiting). Defaults to 8."""
    vllm: VllmConfig = VllmConfig()
    """runtime vllm only: the model vLLM serves and how it loads it. Defaults to the model's export, as it is."""
    ingress: IngressConfig = IngressConfig()
    """Host and path prefix on the ingress gateway. Defaults to host * under /<name>; no two services may overlap."""

    def checks(self) -> list[tuple[str, str]]:
        """Replicas order, canary pairing, resources, pinned images, the vllm block."""
        problems = _resource_checks(self.cpu, self.memory, "gpus", self.gpus, self.gpu_pool)
        problems += _image_checks("image", self.image) + _image_checks("canaryImage", self.canary_image)
        if self.max_replicas < self.min_replicas:
            problems.append(("maxReplicas", f"must be >= minReplicas (got {self.max_replicas} < {self.min_replicas})"))
        if self.canary_weight and not self.canary_image:
            problems.append(("canaryImage", f"is required when canaryWeight > 0 (got weight {self.canary_weight})"))
        if self.runtime == "tf-serving" and self.gpus:
            problems.append(("gpus", f"must be 0 with runtime tf-serving (got {self.gpus}): the pinned TF Serving image "
                                     "is the CPU build; use 0 or runtime modelplane-serve"))
        if self.runtime == "recommend":
            problems += self._recommend_checks()
        problems += self._rate_limit_checks()
        if self.runtime == "vllm":
            problems += self.vllm.problems(self.gpus, self.image) + self.vllm.memory_problems(self.gpus, self.memory)
        elif "vllm" in self.model_fields_set:
            problems.append(("vllm", f"applies to runtime vllm only (runtime {self.runtime}); remove it"))
        return problems

    def _rate_limit_checks(self) -> list[tuple[str, str]]:
        given = sorted({"rate_limit_rps", "rate_limit_burst"} & self.model_fields_set)
        if given and self.runtime not in ("vllm", "recommend"):
            return [(to_camel(given[0]), f"applies to runtimes vllm and recommend only, whose gateway enforces it "
                                         f"(runtime {self.runtime}); remove it")]
        if self.rate_limit_burst is not None and not self.rate_limit_rps:
            return [("rateLimitBurst", f"has no effect while rateLimitRps is 0, the limit off (got "
                                       f"{self.rate_limit_burst}); set rateLimitRps or remove rateLimitBurst")]
        return []

    def rate_limit(self) -> tuple[float, int]:
        """The gateway's per-key (rate, bucket size); a rate of 0 is no limit."""
        return self.rate_limit_rps, self.rate_limit_burst or default_burst(self.rate_limit_rps)

    def _recommend_checks(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.gpus:
            problems.append(("gpus", f"must be 0 with runtime recommend (got {self.gpus}): the recommendation service "
                                     "scores on CPU; set gpus: 0"))
        if self.cache and "cache" in self.model_fields_set:
            problems.append(("cache", "must be false with runtime recommend (got true): a recommendation changes with "
                                      "every feature update, so the gateway never caches it; remove cache"))
        return problems

    def stack_problems(self, *, has_cache: bool) -> list[tuple[str, str]]:
        """What the entry needs of the rest of the stack: runtime recommend reads features from the stack's Redis."""
        if self.runtime == "recommend" and not has_cache:
            return [("runtime", "recommend needs the stack's Redis, where the stream processor keeps the live "
                                "features, and this stack has none (cache.enabled: false); set "
                                "modelplane:cache.enabled: true")]
        return []

    def ingress_routes(self) -> list[Route]:
        """The service's routes on the ingress gateway: its runtime's API paths under its host and prefix."""
        return routes_for(self.name, self.runtime, self.ingress)

    def model_prefix(self) -> str:
        """The model's folder under the models bucket."""
        return (self.vllm.model_path if self.runtime == "vllm" else None) or f"{self.model}/"

    def fit_problems(self, pool: GpuPoolConfig) -> list[tuple[str, str]]:
        """runtime vllm: its GPUs and weights against `pool`."""
        if self.runtime != "vllm" or not self.gpus or self.vllm.problems(self.gpus, self.image):
            return []
        return self.vllm.fit_problems(self.gpus, pool)


class InferenceConfig(Section):
    """`modelplane:inference`: the stack's inference services."""

    services: list[InferenceServiceConfig] = []
    """Inference services. Defaults to none."""
