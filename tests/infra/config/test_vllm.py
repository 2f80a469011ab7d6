"""`inference.services[].vllm` (runtime vllm): each rule by its message and key path, the GPU checks against the pool."""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with

JOB = {"name": "lm", "framework": "pytorch", "gpusPerReplica": 1, "gpuPool": "gpu-train", "dataset": "lm/manifest.json"}
SERVICE = {"name": "chat", "runtime": "vllm", "model": "lm", "gpus": 1, "gpuPool": "gpu-serve",
           "vllm": {"preset": "small"}}
POOL = {"name": "gpu-serve", "purpose": "inference", "instanceFamilies": ["g5", "p5"], "gpusPerNode": {"min": 1, "max": 8},
        "gpuLimit": 16}
"""A pool whose smallest GPU is g5's A10G (22.49 GiB as CUDA reports it)."""
SEVENTY_B = {"attentionHeads": 64, "parameters": 70_000_000_000}


def _raw(pools: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    raw = stack_config_with("dev", {"modelplane:gpuPools": pools if pools is not None else [
        {"name": "gpu-train", "instanceFamilies": ["g5"], "gpuLimit": 4}, POOL]})
    raw["modelplane:training"] = {"jobs": [JOB]}
    raw.pop("modelplane:teams")  # these jobs are not queued: dev's teams would claim gpu-train's GPUs
    raw["modelplane:inference"] = {"services": [{**SERVICE, **changes}]}
    return raw


def _issues(pools: list[dict[str, Any]] | None = None, **changes: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", _raw(pools, **changes))
    return [str(issue) for issue in info.value.issues]


def test_a_sized_vllm_service_is_valid() -> None:
    (svc,) = parse_config("dev", _raw()).inference.services
    assert (svc.runtime, svc.vllm.preset, svc.vllm.loading(svc.gpus)) == ("vllm", "small", "runai-streamer")


def test_gpus_must_divide_the_attention_heads() -> None:
    # `large` has 20 heads: 8-way tensor parallelism cannot split them.
    assert ("modelplane:inference.services[0].gpus: must divide the model's 20 attention heads: vLLM shards heads "
            "over --tensor-parallel-size = gpus (got 8); use 5 or another divisor of 20") \
        in _issues(gpus=8, vllm={"preset": "large"})


def test_weights_must_fit_the_smallest_gpu_the_pool_admits() -> None:
    issues = _issues(gpus=4, vllm=SEVENTY_B)
    assert ("modelplane:inference.services[0].gpus: cannot hold the weights: 130.4 GiB at dtype auto over 4 GPU(s) is "
            "32.6 GiB per GPU, over the 20.2 GiB vLLM may use of g5 (A10G 24 GB), the smallest GPU of gpuPools "
            "'gpu-serve' (gpuMemoryUtilization 0.9), with no room left for the KV cache; raise gpus, pick a pool of "
            "larger GPUs or a smaller dtype") in issues


def test_the_same_weights_fit_a_pool_of_larger_gpus() -> None:
    pools = [{"name": "gpu-train", "instanceFamilies": ["g5"], "gpuLimit": 4}, {**POOL, "instanceFamilies": ["p5"]}]
    (svc,) = parse_config("dev", _raw(pools, gpus=4, vllm=SEVENTY_B)).inference.services
    assert svc.gpus == 4


def test_float32_doubles_the_weights() -> None:
    issues = _issues(gpus=8, vllm={**SEVENTY_B, "dtype": "float32"})
    assert any(i.startswith("modelplane:inference.services[0].gpus: cannot hold the weights: 260.8 GiB at dtype "
                            "float32 over 8 GPU(s) is 32.6 GiB per GPU") for i in issues), issues


def test_tensor_parallel_gpus_must_fit_one_node() -> None:
    pools = [{"name": "gpu-train", "instanceFamilies": ["g5"], "gpuLimit": 4},
             {**POOL, "gpusPerNode": {"min": 1, "max": 4}}]
    assert ("modelplane:inference.services[0].gpus: must be at most gpuPools 'gpu-serve' gpusPerNode.max 4 (got 8): "
            "vLLM's tensor-parallel GPUs share one pod, so one node") in _issues(pools, gpus=8, vllm={"preset": "7b"})


def test_a_time_sliced_gpu_is_shared_and_never_tensor_parallel() -> None:
    pools = [{"name": "gpu-train", "instanceFamilies": ["g5"], "gpuLimit": 4}, {**POOL, "timeSlicingReplicas": 4}]
    issues = _issues(pools, gpus=2, vllm={"preset": "small"})
    assert ("modelplane:inference.services[0].gpus: must be 1 on time-sliced gpuPools 'gpu-serve' (got 2): the slices "
            "of one GPU cannot be tensor-parallel ranks") in issues
    assert ("modelplane:inference.services[0].vllm.gpuMemoryUtilization: must be at most 1/4 = 0.25 on gpuPools "
            "'gpu-serve', whose GPUs are shared by 4 pods (got 0.9)") in issues


def test_a_gpu_service_needs_the_models_shape() -> None:
    assert ("modelplane:inference.services[0].vllm: needs the model's shape to size its GPUs: set vllm.preset (one of "
            "tiny, mini, small, medium, large, 1b, 7b) or both vllm.attentionHeads and vllm.parameters (from the "
            "model's config.json)") in _issues(vllm={"attentionHeads": 32})


def test_a_preset_and_an_explicit_shape_conflict() -> None:
    assert ("modelplane:inference.services[0].vllm.preset: gives the model's heads and parameters; remove "
            "attentionHeads and parameters or the preset (got preset 'small' and both)") \
        in _issues(vllm={"preset": "small", **SEVENTY_B})


def test_an_unknown_preset_names_the_closest() -> None:
    assert ("modelplane:inference.services[0].vllm.preset: must be one of tiny, mini, small, medium, large, 1b, 7b "
            "(got 'smal'); did you mean 'small'?") in _issues(vllm={"preset": "smal"})


def test_the_cpu_image_cannot_stream_weights() -> None:
    assert ("modelplane:inference.services[0].vllm.weights: runai-streamer needs the CUDA image: vLLM's CPU image "
            "(gpus 0) has no Run:ai streamer; use s3-sync, or set image to one that has it") \
        in _issues(gpus=0, gpuPool=None, vllm={"weights": "runai-streamer"})


def test_a_vllm_block_on_another_runtime_is_refused() -> None:
    assert ("modelplane:inference.services[0].vllm: applies to runtime vllm only (runtime modelplane-serve); "
            "remove it") in _issues(runtime="modelplane-serve")


def test_an_unknown_dtype_lists_vllms_choices() -> None:
    assert any(i.startswith("modelplane:inference.services[0].vllm.dtype: Input should be 'auto', 'half', 'float16', "
                            "'bfloat16', 'float' or 'float32'") for i in _issues(vllm={"preset": "small", "dtype": "fp8"}))


def test_model_path_must_be_a_folder_in_the_models_bucket() -> None:
    assert any(i.startswith("modelplane:inference.services[0].vllm.modelPath: String should match pattern")
               for i in _issues(vllm={"preset": "small", "modelPath": "s3://other-bucket/llama"}))


CPU = {"gpus": 0, "gpuPool": None, "cpu": "2", "vllm": {"preset": "mini"}}
"""A CPU vLLM service (the `mini` preset's weights are 1.7 MiB at 16 bits)."""


@pytest.mark.parametrize("memory", ["512Mi", "4Gi", "5Gi"])
def test_a_cpu_service_needs_memory_for_shm_kv_cache_and_its_processes(memory: str) -> None:
    # 5Gi: 2 GiB of /dev/shm and a 1 GiB KV cache leave 2 GiB less the weights for vLLM's three processes.
    assert (f"modelplane:inference.services[0].memory: is too small for vLLM on CPU (gpus 0), which keeps everything "
            "in the pod's memory: 2 GiB of /dev/shm, a KV cache of 1/4 of memory in whole GiB (at least 1), 0.0 GiB of "
            f"weights and 2 GiB for its processes (got {memory}); set memory to at least 6Gi") \
        in _issues(**CPU, memory=memory)


def test_the_weights_count_against_a_cpu_services_memory() -> None:
    # 7 GB of parameters at 16 bits: 13 GiB of weights on top of shm, a 5 GiB KV cache and the processes.
    issues = _issues(**{**CPU, "vllm": {"attentionHeads": 32, "parameters": 7_000_000_000}}, memory="16Gi")
    assert any(i.startswith("modelplane:inference.services[0].memory: is too small for vLLM on CPU") and
               i.endswith("13.0 GiB of weights and 2 GiB for its processes (got 16Gi); set memory to at least 23Gi")
               for i in issues), issues


def test_a_cpu_service_with_room_for_all_of_it_is_valid() -> None:
    (svc,) = parse_config("dev", _raw(**CPU, memory="6Gi")).inference.services
    assert (svc.gpus, svc.memory) == (0, "6Gi")


def test_a_gpu_service_keeps_its_kv_cache_on_the_gpus() -> None:
    (svc,) = parse_config("dev", _raw(memory="4Gi")).inference.services
    assert (svc.gpus, svc.memory) == (1, "4Gi")
