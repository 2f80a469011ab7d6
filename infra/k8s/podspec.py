"""Pod-spec pieces shared by every workload component: hardened security contexts and GPU scheduling.

Built as plain manifest dicts (the camelCase Kubernetes shape) so training jobs (CRDs) and
Deployments use exactly the same securityContext, tolerations and affinity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pulumi

from workloads.common.vocab import GPU_RESOURCE, GPU_TOLERATION, POOL_LABEL

NON_ROOT_UID: Final = 10001
"""The UID our images run as (see images/*/Dockerfile)."""


def container_resources(cpu: str, memory: str, gpus: int) -> dict[str, Any]:
    """The container `resources` block; limits equal requests (Guaranteed QoS: no CPU throttling surprises
    on GPU nodes), with `nvidia.com/gpu` only when GPUs are asked for."""
    amounts: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def pod_security_context() -> dict[str, Any]:
    """Pod-level context meeting the `restricted` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level context meeting the `restricted` Pod Security Standard, root filesystem read-only."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def scheduling(gpu_pool: str | None, gpus: int) -> dict[str, Any]:
    """tolerations + nodeSelector placing a GPU pod on its GPU pool; nothing for a pod without GPUs."""
    if gpus and gpu_pool:
        return {"tolerations": [dict(GPU_TOLERATION)], "nodeSelector": {POOL_LABEL: gpu_pool}}
    return {}


def cpu_threads(cpu: str) -> int:
    """Whole CPUs in a Kubernetes CPU quantity ("4" → 4, "2500m" → 2), at least 1."""
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(cores))


def env_list(env: Mapping[str, pulumi.Input[str]]) -> list[dict[str, pulumi.Input[str]]]:
    """A container `env` list from a mapping, sorted for stable diffs."""
    return [{"name": key, "value": value} for key, value in sorted(env.items())]


def manifest_block(block: Mapping[str, Any]) -> Any:
    """A camelCase manifest block (a Deployment's `spec`, say) passed as is to a pulumi_kubernetes resource.

    The SDK types these arguments as snake_case TypedDicts, which camelCase blocks built from plain dicts
    cannot match. Typed as Any, the block leaves the rest of the call checked (argument names, metadata, opts)
    instead of failing overload resolution: mypy formats such an error by walking the SDK's nested pod-spec
    TypedDicts, which costs minutes and gigabytes per call even where the error code is disabled. The block's
    shape is checked against the Kubernetes schema in tests.
    """
    return block
