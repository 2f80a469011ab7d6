"""The EC2 instance families and types a stack may name, and the GPU of each GPU family.

The one declaration of EC2 hardware in the platform. nodePools' `instanceTypes`, gpuPools' `instanceFamilies`
and `instanceTypes`, and karpenter.cpuPool's `instanceCategories` are checked against it (a typo gets the
closest name), and training jobs and vLLM services are sized against the GPU memory it gives.

The data is infra/config/instances.yaml, read on 2026-11-29 from the instance-type reference Karpenter generates
from EC2 DescribeInstanceTypes (github.com/aws/karpenter-provider-aws,
website/content/en/docs/reference/instance-types.md at 1d927085): the figures of AWS's "Specifications for Amazon
EC2 accelerated computing instances" (https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html) and its
general purpose, compute optimized and memory optimized siblings. Memory per GPU for sizing is what CUDA reports
as the device's total (`nvidia-smi --query-gpu=memory.total`) where it was measured, else AWS's figure.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field

from infra import versions

INSTANCE_TABLE: Final = Path(__file__).resolve().with_name("instances.yaml")
"""The instance table: families, their sizes, and each GPU family's GPU."""
Category = Literal["general", "compute", "memory", "gpu"]
"""How AWS groups the families the platform admits (accelerated computing: gpu)."""
NODE_GROUP_ARCH: Final = "amd64"
"""The architecture of managed node groups (versions.SYSTEM_AMI_TYPE) and of GPU NodePools (their requirements)."""


class GpuSpec(BaseModel):
    """The GPU of one instance family (every size of a family carries the same GPU)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    """The GPU as Karpenter's instance-gpu-name label spells it (a10g, l4, h100)."""
    model: str
    """NVIDIA's name for the GPU with its nominal memory, as messages show it."""
    memory_mib: int = Field(gt=0)
    """Memory per GPU in MiB as AWS lists it (DescribeInstanceTypes GpuInfo)."""
    cuda_mib: int | None = Field(default=None, gt=0)
    """Memory per GPU in MiB as CUDA reports it, where measured (a little off AWS's figure)."""


class Family(BaseModel):
    """One EC2 instance family and its sizes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    category: Category
    """general, compute, memory or gpu."""
    arch: Literal["amd64", "arm64"]
    """CPU architecture (arm64: Graviton)."""
    gpu: GpuSpec | None = None
    """The NVIDIA GPU of a gpu family; none otherwise."""
    sizes: dict[str, list[float]]
    """Size -> [vCPUs, memory GiB] (gpu families: [vCPUs, memory GiB, GPUs])."""


class InstanceTable(BaseModel):
    """The file infra/config/instances.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    read: str
    """When the figures were read from the source (YYYY-MM-DD)."""
    families: dict[str, Family]
    """Family name -> family."""


class InstanceType(NamedTuple):
    """One EC2 instance type of the table."""

    family: str
    """Its family (g6e for g6e.12xlarge)."""
    vcpu: int
    """vCPUs."""
    memory_gib: float
    """Memory in GiB."""
    gpus: int
    """NVIDIA GPUs (0 for a CPU type)."""


class Gpu(NamedTuple):
    """A GPU as a job or service is sized against it."""

    model: str
    """NVIDIA's name for the GPU."""
    memory_mib: int
    """Device memory in MiB: CUDA's figure where measured, else AWS's."""


@functools.cache
def families() -> dict[str, Family]:
    """Every family the platform admits (the table is read once per process)."""
    return InstanceTable.model_validate(yaml.safe_load(INSTANCE_TABLE.read_text())).families


@functools.cache
def instance_types() -> dict[str, InstanceType]:
    """Every instance type of every admitted family, by name (`g6e.12xlarge`)."""
    return {f"{name}.{size}": InstanceType(name, int(spec[0]), spec[1], int(spec[2]) if len(spec) > 2 else 0)
            for name, family in families().items() for size, spec in family.sizes.items()}


def gpu_of(family: str) -> Gpu | None:
    """The GPU a job on `family` is sized against; None for an unknown or CPU family."""
    spec = families()[family].gpu if family in families() else None
    return Gpu(spec.model, spec.cuda_mib or spec.memory_mib) if spec else None


def family_of(instance: str) -> str:
    """The family of an instance type (`g6e.12xlarge` -> `g6e`); a family is returned as it is."""
    return instance.split(".", 1)[0]


def _closest(value: str, allowed: list[str]) -> str:
    hint = difflib.get_close_matches(value, allowed, n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ";"


def gpu_family_problem(name: str) -> str | None:
    """Why `name` is not a GPU family a GPU pool may take, with the closest one; None when it is."""
    gpu_families = sorted(f for f, family in families().items() if family.gpu)
    if name in gpu_families:
        return None
    if name in families():
        return (f"must be an EC2 instance family with NVIDIA GPUs (got {name!r}, a {families()[name].category} "
                f"family); GPU families: {', '.join(gpu_families)}")
    return (f"must be an EC2 instance family with NVIDIA GPUs (got {name!r}){_closest(family_of(name), gpu_families)} "
            f"GPU families: {', '.join(gpu_families)} (infra/config/instances.yaml)")


def instance_type_problem(name: str, *, gpu: bool) -> str | None:
    """Why `name` is not an instance type a GPU pool (`gpu`) or a managed node group may take; None when it is."""
    known = instance_types()
    wanted = [k for k, spec in known.items() if bool(spec.gpus) == gpu and families()[spec.family].arch == NODE_GROUP_ARCH]
    if name in wanted:
        return None
    example = "g6.12xlarge" if gpu else f"m7i.xlarge ({NODE_GROUP_ARCH}, no GPUs)"
    if name in known:
        spec = known[name]
        why = ("a type without GPUs" if gpu else "a type with GPUs; put GPUs in gpuPools" if spec.gpus
               else f"an {families()[spec.family].arch} type, and managed node groups run {versions.SYSTEM_AMI_TYPE}")
        return f"must be an EC2 instance type like {example} (got {name!r}, {why})"
    family = family_of(name)
    sizes = [k for k in wanted if family_of(k) == family]
    listed = f" {family} sizes: {', '.join(k.partition('.')[2] for k in sizes)}" if sizes else ""
    return f"must be an EC2 instance type like {example} (got {name!r}){_closest(name, sizes or wanted)}{listed}"


def gpu_counts(admitted: Sequence[str]) -> list[int]:
    """The GPU counts of the table's types among `admitted` (GPU families, or types), smallest first."""
    names = set(admitted)
    return sorted({spec.gpus for kind, spec in instance_types().items()
                   if spec.gpus and (kind in names or spec.family in names)})


def cpu_categories() -> list[str]:
    """Instance categories (the letters before the generation: c, m, r, t) of the admitted CPU families."""
    return sorted({name[0] for name, family in families().items() if not family.gpu})


def smallest_gpu(admitted: Sequence[str]) -> tuple[str, Gpu] | None:
    """The family and GPU of the smallest GPU among `admitted` (a GPU pool's families or types); None when there are
    none or one the table lacks (the pool's own rules report both)."""
    names = [family_of(name) for name in admitted]
    gpus = {name: gpu_of(name) for name in names}
    sized = {name: gpu for name, gpu in gpus.items() if gpu is not None}
    if not names or len(sized) < len(gpus):
        return None
    family = min(sized, key=lambda name: sized[name].memory_mib)
    return family, sized[family]
