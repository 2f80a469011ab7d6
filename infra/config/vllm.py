"""Stack config of `runtime: vllm` (an `inference.services` entry's `vllm:` block) and its checks against the pool.

The platform never reads a model at deploy time (a preview fetches nothing), so the model's shape that the
checks need comes from config: `preset` names one of our LM presets (what our trainer's exports are built
from), and a model from elsewhere states `attentionHeads` and `parameters` from its config.json.
"""

from __future__ import annotations

import itertools
from typing import Final, Literal

from pydantic import Field

from infra.config.base import MEMORY_QUANTITY, Section, memory_bytes, not_one_of
from infra.config.gpu import GpuPoolConfig
from infra.config.instances import smallest_gpu
from workloads.lm.presets import PRESETS

VllmDtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
"""vLLM's --dtype choices (vllm/config/model.py `ModelDType`, 0.31.0)."""
WeightLoading = Literal["runai-streamer", "s3-sync"]
"""How the weights reach vLLM: streamed from S3 by vLLM's Run:ai loader, or synced to a volume first."""
_FOUR_BYTE_DTYPES = ("float", "float32")
"""Dtypes holding weights in 4 bytes; `auto` downcasts float32 checkpoints to 16 bits (vllm/config/model.py
`_resolve_auto_dtype`), so every other choice holds them in 2."""
SHM_GIB: Final = 2
"""GiB cap of vLLM's memory-backed /dev/shm: its engine and worker processes, and NCCL between tensor-parallel ranks,
exchange data through it (vLLM's docs run the image with --ipc=host or --shm-size); it counts against the pod's
memory limit."""
CPU_KV_CACHE_SHARE: Final = 4
"""A CPU vLLM pod gives 1/4 of its memory limit, in whole GiB, to the KV cache (VLLM_CPU_KVCACHE_SPACE)."""
CPU_KV_CACHE_MIN_GIB: Final = 1
"""The least KV cache of a CPU pod: VLLM_CPU_KVCACHE_SPACE is whole GiB (vllm/platforms/cpu.py, 0.31.0), and 0
leaves no cache at all."""
CPU_WORKING_GIB: Final = 2
"""GiB a CPU vLLM pod needs besides /dev/shm, KV cache and weights: its API server, engine core and worker are three
Python processes with torch and vLLM loaded (1.6 GiB PSS together serving the `mini` export, vllm-cpu 0.31.0),
plus activations."""
def cpu_kv_cache_gib(memory_limit: int) -> int:
    """VLLM_CPU_KVCACHE_SPACE of a CPU pod whose memory limit is `memory_limit` bytes."""
    return memory_limit // CPU_KV_CACHE_SHARE // 2**30


class VllmConfig(Section):
    """`runtime: vllm`: the Hugging Face model vLLM serves and how it loads it."""

    model_path: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._=-]*(/[A-Za-z0-9._=-]+)*/$")
    """Folder of a Hugging Face model (safetensors) under the models bucket, ending in `/`: vLLM reads
    s3://<models bucket>/<modelPath>, which the servers' role may read (a bucket of its own would need a grant
    of its own). Defaults to `<model>/`, the training job's export."""
    served_model_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
    """The model name clients send (vLLM --served-model-name). Defaults to the service name."""
    max_model_len: int | None = Field(default=None, ge=1)
    """Longest prompt plus completion in tokens (vLLM --max-model-len). Defaults to the model's own limit."""
    dtype: VllmDtype = "auto"
    """Weights and activations dtype (vLLM --dtype). Defaults to auto (the checkpoint's, float32 downcast to 16
    bits). Valid values: auto, half, float16, bfloat16, float, float32."""
    preset: str | None = None
    """Our LM preset the model was trained from (workloads/lm/presets.py), which gives its attention heads and
    parameters for the GPU checks. Defaults to none; a GPU service sets this or attentionHeads and parameters."""
    attention_heads: int | None = Field(default=None, ge=1)
    """The model's attention heads (`num_attention_heads` / `n_head` in its config.json). Defaults to none."""
    parameters: int | None = Field(default=None, ge=1)
    """The model's parameter count, embeddings included. Defaults to none."""
    weights: WeightLoading | None = None
    """runai-streamer (vLLM --load-format runai_streamer reads s3:// directly, shards concurrently) or s3-sync
    (an init container copies the model to a pod volume). Defaults to runai-streamer with GPUs, s3-sync without
    (vLLM's CPU image ships no Run:ai streamer)."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Share of each GPU's memory vLLM takes for weights, activations and KV cache (vLLM
    --gpu-memory-utilization). Defaults to 0.9."""
    startup_minutes: int = Field(default=30, ge=1, le=240)
    """How long the startup probe waits for the weights to load and the engine to warm up. Defaults to 30."""
    api_keys_secret: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{0,252}$")
    """Existing Secret in the inference namespace with the API keys the gateway accepts. Defaults to a generated
    one-key Secret when the service's apiKey is true."""

    def loading(self, gpus: int) -> WeightLoading:
        """The weight loading in effect for a pod with `gpus` GPUs."""
        return self.weights or ("runai-streamer" if gpus else "s3-sync")

    def weight_bytes(self) -> int | None:
        """Bytes of the weights at `dtype`, when the model's parameters are known."""
        count = PRESETS[self.preset].n_params(non_embedding=False) if self.preset in PRESETS else self.parameters
        return count * (4 if self.dtype in _FOUR_BYTE_DTYPES else 2) if count else None

    def heads(self) -> int | None:
        """The model's attention heads, when known."""
        return PRESETS[self.preset].n_head if self.preset in PRESETS else self.attention_heads

    def problems(self, gpus: int, image: str | None) -> list[tuple[str, str]]:
        """Shape given when needed, preset known, heads divisible by the tensor-parallel size, loader available."""
        problems: list[tuple[str, str]] = []
        if self.preset is not None and self.preset not in PRESETS:
            problems.append(("vllm.preset", not_one_of(self.preset, list(PRESETS))))
        explicit = [key for key in ("attention_heads", "parameters") if getattr(self, key) is not None]
        if self.preset is not None and explicit:
            problems.append(("vllm.preset", "gives the model's heads and parameters; remove attentionHeads and "
                                            f"parameters or the preset (got preset {self.preset!r} and both)"))
        elif gpus and self.preset is None and len(explicit) < 2:
            problems.append(("vllm", "needs the model's shape to size its GPUs: set vllm.preset (one of "
                                     f"{', '.join(PRESETS)}) or both vllm.attentionHeads and vllm.parameters "
                                     "(from the model's config.json)"))
        heads = self.heads()
        if gpus > 1 and heads and heads % gpus:
            fits = [n for n in range(1, gpus) if heads % n == 0]
            problems.append(("gpus", f"must divide the model's {heads} attention heads: vLLM shards heads over "
                                     f"--tensor-parallel-size = gpus (got {gpus}); use {fits[-1]} or another "
                                     f"divisor of {heads}"))
        if self.loading(gpus) == "runai-streamer" and not gpus and image is None:
            problems.append(("vllm.weights", "runai-streamer needs the CUDA image: vLLM's CPU image (gpus 0) has "
                                             "no Run:ai streamer; use s3-sync, or set image to one that has it"))
        return problems

    def memory_problems(self, gpus: int, memory: str) -> list[tuple[str, str]]:
        """Without GPUs: the pod's `memory` holds /dev/shm, the KV cache, the weights and the processes."""
        if gpus or not MEMORY_QUANTITY.match(memory):
            return []
        weights = self.weight_bytes() or 0

        def short(limit: int) -> bool:
            kv = cpu_kv_cache_gib(limit)
            return kv < CPU_KV_CACHE_MIN_GIB or limit - (SHM_GIB + kv) * 2**30 - weights < CPU_WORKING_GIB * 2**30

        if not short(memory_bytes(memory)):
            return []
        least = next(gib for gib in itertools.count(1) if not short(gib * 2**30))
        return [("memory", f"is too small for vLLM on CPU (gpus 0), which keeps everything in the pod's memory: "
                           f"{SHM_GIB} GiB of /dev/shm, a KV cache of 1/{CPU_KV_CACHE_SHARE} of memory in whole GiB "
                           f"(at least {CPU_KV_CACHE_MIN_GIB}), {weights / 2**30:.1f} GiB of weights and "
                           f"{CPU_WORKING_GIB} GiB for its processes (got {memory}); set memory to at least "
                           f"{least}Gi")]

    def fit_problems(self, gpus: int, pool: GpuPoolConfig) -> list[tuple[str, str]]:
        """The GPUs against `pool`: one node holds them, time slices are not split, the weights fit."""
        problems: list[tuple[str, str]] = []
        if gpus > pool.gpus_per_node.max:
            problems.append(("gpus", f"must be at most gpuPools {pool.name!r} gpusPerNode.max "
                                     f"{pool.gpus_per_node.max} (got {gpus}): vLLM's tensor-parallel GPUs share "
                                     "one pod, so one node"))
        replicas = pool.time_slicing_replicas
        if replicas and gpus > 1:
            problems.append(("gpus", f"must be 1 on time-sliced gpuPools {pool.name!r} (got {gpus}): the slices of "
                                     "one GPU cannot be tensor-parallel ranks"))
        if replicas and self.gpu_memory_utilization > 1 / replicas:
            problems.append(("vllm.gpuMemoryUtilization", f"must be at most 1/{replicas} = {1 / replicas:.3g} on "
                                                          f"gpuPools {pool.name!r}, whose GPUs are shared by "
                                                          f"{replicas} pods (got {self.gpu_memory_utilization})"))
        weights = self.weight_bytes()
        smallest = smallest_gpu(pool.instance_families or pool.instance_types)
        if weights is None or smallest is None:
            return problems
        family, gpu = smallest
        per_gpu = weights / max(gpus, 1)
        budget = gpu.memory_mib * 2**20 * self.gpu_memory_utilization
        if per_gpu >= budget:
            problems.append(("gpus", f"cannot hold the weights: {weights / 2**30:.1f} GiB at dtype {self.dtype} over "
                                     f"{gpus} GPU(s) is {per_gpu / 2**30:.1f} GiB per GPU, over the "
                                     f"{budget / 2**30:.1f} GiB vLLM may use of {family} ({gpu.model}), the "
                                     f"smallest GPU of gpuPools {pool.name!r} (gpuMemoryUtilization "
                                     f"{self.gpu_memory_utilization}), with no room left for the KV cache; raise "
                                     "gpus, pick a pool of larger GPUs or a smaller dtype"))
        return problems

