"""The GPU platform's Kubernetes manifests as plain dicts: NodePool and EC2NodeClass specs, device-plugin values.

Pure builders (no resources) over the config section models, used by `GpuNodePools` in
infra/k8s/gpu.py. Field names follow the Karpenter v1 CRDs (karpenter.sh_nodepools.yaml,
karpenter.k8s.aws_ec2nodeclasses.yaml) and the nvidia-device-plugin 0.18 chart
(deployments/helm/nvidia-device-plugin/values.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi
import yaml

from infra import versions
from infra.aws import karpenter
from infra.config.gpu import CpuPoolConfig, GpuPoolConfig
from workloads.common.vocab import (
    AMI_FAMILY_LABEL,
    GPU_POOL_LABEL,
    GPU_RESOURCE,
    GPU_TAINT,
    GPU_TOLERATION,
    POOL_LABEL,
    PURPOSE_LABEL,
)

DEVICE_PLUGIN_CONFIG_LABEL: Final = "nvidia.com/device-plugin.config"
"""Node label choosing a named device-plugin config (k8s-device-plugin README, "Updating Per-Node Configuration")."""
METADATA_OPTIONS: Final = {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled", "httpPutResponseHopLimit": 1,
                           "httpTokens": "required"}
"""IMDSv2 only, hop limit 1: pods (one hop away) cannot read the node role's credentials."""
NODE_CLASS_REF: Final = {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass"}
"""A NodePool's `nodeClassRef` without the name (each pool adds its EC2NodeClass's)."""


def node_class_name(family: str, disk_size_gb: int) -> str:
    """The EC2NodeClass shared by every pool with this AMI family and disk size."""
    return f"{family}-{disk_size_gb}gib"


def node_class_spec(*, family: str, disk_size_gb: int, role_name: pulumi.Input[str], cluster_name: str,
                    tags: Mapping[str, str]) -> dict[str, Any]:
    """An EC2NodeClass: pinned AMI alias, discovery selectors, encrypted gp3, IMDSv2, tags."""
    ebs = {"volumeType": "gp3", "encrypted": True, "deleteOnTermination": True}
    if family == "bottlerocket":
        # Bottlerocket keeps the OS on a small xvda and images/containers on xvdb (concepts/nodeclasses.md).
        volumes = [{"deviceName": "/dev/xvda", "ebs": {**ebs, "volumeSize": "4Gi"}},
                   {"deviceName": "/dev/xvdb", "ebs": {**ebs, "volumeSize": f"{disk_size_gb}Gi"}}]
    else:
        volumes = [{"deviceName": "/dev/xvda", "ebs": {**ebs, "volumeSize": f"{disk_size_gb}Gi"}}]
    discovery = [{"tags": {karpenter.DISCOVERY_TAG: cluster_name}}]
    spec: dict[str, Any] = {
        "role": role_name,
        # A pinned alias: Karpenter picks the NVIDIA variant per instance type, and AMI bumps are reviewed diffs
        # (an @latest alias would drift every node on each AMI release; concepts/nodeclasses.md).
        "amiSelectorTerms": [{"alias": versions.KARPENTER_AMI_ALIASES[family]}],
        "subnetSelectorTerms": discovery,
        "securityGroupSelectorTerms": discovery,
        "blockDeviceMappings": volumes,
        "metadataOptions": dict(METADATA_OPTIONS),
    }
    if tags:
        spec["tags"] = dict(tags)
    return spec


def _requirement(key: str, operator: str, values: Sequence[str]) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": list(values)}


def time_slicing_config_name(replicas: int) -> str:
    """The device-plugin config name for `replicas`-way time-slicing."""
    return f"time-slicing-{replicas}"


def gpu_node_pool_spec(pool: GpuPoolConfig) -> dict[str, Any]:
    """A GPU NodePool: tainted, labelled, NVIDIA-only within GPU-count bounds, limited in total GPUs."""
    labels = {POOL_LABEL: pool.name, GPU_POOL_LABEL: pool.name, AMI_FAMILY_LABEL: pool.ami_family,
              PURPOSE_LABEL: pool.purpose}
    if pool.time_slicing_replicas:
        labels[DEVICE_PLUGIN_CONFIG_LABEL] = time_slicing_config_name(pool.time_slicing_replicas)
    instances = (_requirement(karpenter.INSTANCE_FAMILY_LABEL, "In", pool.instance_families) if pool.instance_families
                 else _requirement(karpenter.INSTANCE_TYPE_LABEL, "In", pool.instance_types))
    gpu_counts = [str(n) for n in range(pool.gpus_per_node.min, pool.gpus_per_node.max + 1)]
    limits: dict[str, Any] = {GPU_RESOURCE: pool.gpu_limit}
    if pool.cpu_limit is not None:
        limits["cpu"] = pool.cpu_limit
    if pool.memory_limit is not None:
        limits["memory"] = pool.memory_limit
    return {
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "nodeClassRef": {**NODE_CLASS_REF, "name": node_class_name(pool.ami_family, pool.disk_size_gb)},
                "requirements": [
                    # NVIDIA AMI variants exist for arm64 too, but the GPU families we run are x86_64.
                    _requirement("kubernetes.io/arch", "In", ["amd64"]),
                    _requirement("kubernetes.io/os", "In", ["linux"]),
                    _requirement(karpenter.CAPACITY_TYPE_LABEL, "In", pool.capacity_types),
                    instances,
                    _requirement(karpenter.GPU_MANUFACTURER_LABEL, "In", ["nvidia"]),
                    _requirement(karpenter.GPU_COUNT_LABEL, "In", gpu_counts),
                ],
                "taints": [dict(GPU_TAINT)],
                "expireAfter": pool.expire_after,
                # Bounds how long an expiring node waits on do-not-disrupt training pods (concepts/disruption.md).
                "terminationGracePeriod": pool.termination_grace_period,
            },
        },
        "limits": limits,
        "disruption": {"consolidationPolicy": pool.consolidation_policy, "consolidateAfter": pool.consolidate_after,
                       "budgets": [{"nodes": pool.disruption_budget}]},
        "weight": pool.weight,
    }


def cpu_node_pool_spec(pool: CpuPoolConfig) -> dict[str, Any]:
    """The CPU NodePool: untainted current-generation c/m/r instances within CPU and memory limits."""
    return {
        "template": {
            "metadata": {"labels": {POOL_LABEL: pool.name}},
            "spec": {
                "nodeClassRef": {**NODE_CLASS_REF, "name": node_class_name("al2023", pool.disk_size_gb)},
                "requirements": [
                    _requirement("kubernetes.io/arch", "In", ["amd64"]),
                    _requirement("kubernetes.io/os", "In", ["linux"]),
                    _requirement(karpenter.CAPACITY_TYPE_LABEL, "In", pool.capacity_types),
                    _requirement(karpenter.INSTANCE_CATEGORY_LABEL, "In", pool.instance_categories),
                    _requirement(karpenter.INSTANCE_GENERATION_LABEL, "Gte", [str(pool.min_generation)]),
                ],
                "expireAfter": pool.expire_after,
            },
        },
        "limits": {"cpu": pool.cpu_limit, "memory": pool.memory_limit},
        "disruption": {"consolidationPolicy": pool.consolidation_policy, "consolidateAfter": pool.consolidate_after},
    }


def required_affinity(expressions: list[dict[str, Any]]) -> dict[str, Any]:
    """A pod `affinity` requiring nodes that match every expression."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": expressions}]}}}


def device_plugin_values(pools: Sequence[GpuPoolConfig]) -> dict[str, Any]:
    """nvidia-device-plugin chart values: al2023 GPU nodes only, GPU-tolerant, time-slicing configs per pool."""
    values: dict[str, Any] = {
        # The chart's default affinity wants NFD/GFD labels we do not deploy; Bottlerocket NVIDIA
        # variants run their own plugin, so only al2023 GPU nodes get this one.
        "affinity": required_affinity([
            {"key": GPU_POOL_LABEL, "operator": "Exists"},
            {"key": AMI_FAMILY_LABEL, "operator": "In", "values": ["al2023"]},
        ]),
        "tolerations": [dict(GPU_TOLERATION), {"key": "CriticalAddonsOnly", "operator": "Exists"}],
    }
    counts = sorted({p.time_slicing_replicas for p in pools if p.time_slicing_replicas})
    if counts:
        # Named configs (README "Multiple Config File Example"): a plain default plus one time-slicing
        # config per replica count in use; each pool's nodes pick theirs with DEVICE_PLUGIN_CONFIG_LABEL.
        base = {"version": "v1", "flags": {"migStrategy": "none"}}
        configs = {"default": yaml.safe_dump(base, sort_keys=False)}
        for count in counts:
            sharing = {"timeSlicing": {"resources": [{"name": GPU_RESOURCE, "replicas": count}]}}
            configs[time_slicing_config_name(count)] = yaml.safe_dump({**base, "sharing": sharing}, sort_keys=False)
        values["config"] = {"default": "default", "map": configs}
    return values


def dcgm_exporter_values(scrape_interval: str) -> dict[str, Any]:
    """dcgm-exporter chart values: GPU nodes only, with a ServiceMonitor that keeps workload labels."""
    return {
        # honorLabels keeps the exporter's namespace/pod/container labels (the GPU's workload) instead of
        # renaming them exported_* against the exporter pod's own target labels. No extra labels: our
        # Prometheus selects every ServiceMonitor in the cluster (infra/k8s/observability.py).
        "serviceMonitor": {"enabled": True, "honorLabels": True, "interval": scrape_interval,
                           "additionalLabels": {}},
        "affinity": required_affinity([{"key": GPU_POOL_LABEL, "operator": "Exists"}]),
        "tolerations": [dict(GPU_TOLERATION)],
    }
