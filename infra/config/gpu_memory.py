"""Memory per GPU of the EC2 GPU instance families, so a training job or a vLLM service can be sized against its pool
before deploy.

Which GPU each family carries: the "Accelerated Computing" tab of https://aws.amazon.com/ec2/instance-types/
(checked 2026-11-29). The MiB are what CUDA reports as the device's total memory (`nvidia-smi
--query-gpu=memory.total`, `torch.cuda.get_device_properties().total_memory`), a little under the nominal GB
on the AWS page, because that total is what the trainer checks its own estimate against on the node.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from infra.config.gpu import GpuPoolConfig


class Gpu(NamedTuple):
    """One instance family's GPU."""

    model: str
    """NVIDIA's name for the GPU."""
    memory_mib: int
    """Device memory as CUDA reports it, in MiB."""


GPU_BY_FAMILY: Final[dict[str, Gpu]] = {
    "g4dn": Gpu("T4 16 GB", 15360),
    "g5": Gpu("A10G 24 GB", 23028),
    "g6": Gpu("L4 24 GB", 23034),
    "gr6": Gpu("L4 24 GB", 23034),
    "g6e": Gpu("L40S 48 GB", 46068),
    "p4d": Gpu("A100 40 GB", 40960),
    "p4de": Gpu("A100 80 GB", 81920),
    "p5": Gpu("H100 80 GB", 81559),
    "p5e": Gpu("H200 141 GB", 143771),
    "p5en": Gpu("H200 141 GB", 143771),
}
"""EC2 instance family -> its GPU (every size of a family carries the same GPU)."""


def family_of(instance: str) -> str:
    """The family of an instance type (`g6e.12xlarge` -> `g6e`); a family is returned as it is."""
    return instance.split(".", 1)[0]


def smallest_gpu(pool: GpuPoolConfig) -> tuple[str, Gpu] | str | None:
    """The family and GPU of the smallest GPU `pool` admits; a message when a family is unknown; None when the pool
    names no instances (its own rule reports that)."""
    families = pool.instance_families or [family_of(kind) for kind in pool.instance_types]
    if not families:
        return None
    unknown = sorted({family for family in families if family not in GPU_BY_FAMILY})
    if unknown:
        return (f"cannot be sized: no GPU memory known for instance family {unknown[0]!r} of gpuPools "
                f"{pool.name!r}; add it to infra/config/gpu_memory.py")
    family = min(families, key=lambda name: GPU_BY_FAMILY[name].memory_mib)
    return family, GPU_BY_FAMILY[family]
