"""Pod-spec pieces shared by every workload component: hardened security contexts, GPU scheduling and Secrets
mounted as files.

Built as plain manifest dicts (the camelCase Kubernetes shape) so training jobs (CRDs) and
Deployments use exactly the same securityContext, tolerations and affinity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pulumi

from infra.config.base import cpu_cores
from workloads.common.settings import SECRETS_DIR
from workloads.common.vocab import GPU_RESOURCE, GPU_TOLERATION, POOL_LABEL

NON_ROOT_UID: Final = 10001
"""The UID our images run as (see images/*/Dockerfile)."""
SECRET_FILE_MODE: Final = 0o440
"""Mode of mounted Secret files: readable by their owner (root) and the pod's fsGroup, which the non-root user runs
in, and by nobody else; the mount is read-only too."""
REDIS_URL_SECRET_KEY: Final = "url"
"""The key of a workload's Redis Secret that holds the URL with its password."""
SECRETS_VOLUME: Final = "secrets"
"""Name of the projected volume holding a pod's Secret files."""
SecretFiles = Mapping[str, tuple[pulumi.Input[str], str]]
"""Files under SECRETS_DIR by file name (workloads.common.settings REDIS_URL_FILE, API_KEY_FILE): (Secret, key)."""


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
    return max(1, int(cpu_cores(cpu)))


def secret_path(file: str) -> str:
    """Where a pod reads the Secret file `file` (the value of a workload's `*_file` setting)."""
    return f"{SECRETS_DIR}/{file}"


def secret_files(files: SecretFiles) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The volume and the read-only mount putting each Secret key of `files` at SECRETS_DIR/<file>: one projected
    volume, so a pod's secrets from several Secrets share one folder ([], [] without files).

    Files, not env: a variable is inherited by every child process and shows in its /proc/<pid>/environ and in
    crash reports; a file readable only by the pod's group is not."""
    if not files:
        return [], []
    sources = [{"secret": {"name": secret, "items": [{"key": key, "path": file}]}}
               for file, (secret, key) in sorted(files.items())]
    return ([{"name": SECRETS_VOLUME, "projected": {"defaultMode": SECRET_FILE_MODE, "sources": sources}}],
            [{"name": SECRETS_VOLUME, "mountPath": SECRETS_DIR, "readOnly": True}])


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
