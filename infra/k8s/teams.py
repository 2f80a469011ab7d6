"""`Teams`: the `teams` section as Kueue objects: a ResourceFlavor per node pool, and per team a namespace, a
ClusterQueue in the shared cohort, a LocalQueue and the trainer's ServiceAccount (with its IAM role on aws).

Objects follow Kueue's v1beta2 API at the pinned release (apis/kueue/v1beta2/{resourceflavor,clusterqueue,
localqueue}_types.go of kubernetes-sigs/kueue v0.19.2):
- A ResourceFlavor's `nodeLabels` are the labels its Karpenter NodePool puts on nodes (infra/k8s/gpu_specs.py), so
  Kueue only assigns a flavor whose labels a pod's nodeSelector agrees with, and injects them into admitted pods.
  GPU flavors list the GPU taint as `nodeTaints`, not as `tolerations`: with nodeTaints only pods that already
  tolerate the taint (our GPU pods) can be admitted on a GPU flavor, while `tolerations` would be injected into any
  pod admitted there, so a CPU job could be placed on (and hold) GPU nodes when its team's CPU quota ran out.
- Every flavor of a resource group must list every covered resource in the group's order, so each team's flavors
  cover cpu, memory and nvidia.com/gpu (0 GPUs on the CPU pool).
- A ClusterQueue's `namespaceSelector` left unset admits no namespace, so each names its team's namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra.aws import karpenter
from infra.aws.iam import Grant
from infra.aws.identity import WorkloadIdentity
from infra.config.gpu import CpuPoolConfig, GpuPoolConfig
from infra.config.teams import LOCAL_POOL, PoolQuotaConfig, ResourceAmounts, TeamConfig
from infra.k8s.kueue import API_VERSION
from infra.k8s.namespaces import Namespaces
from infra.k8s.netpol import NAMESPACE_NAME_LABEL
from workloads.common.vocab import GPU_POOL_LABEL, GPU_RESOURCE, GPU_TAINT, MANAGED_BY_LABELS, POOL_LABEL, TEAM_LABEL

COHORT: Final = "modelplane"
"""The cohort every team's ClusterQueue joins, so unused quota is lent and borrowed between teams."""
COVERED_RESOURCES: Final = ("cpu", "memory", GPU_RESOURCE)
"""The resources each ClusterQueue governs, in the order every flavor lists them."""


def local_queue_name(team_name: str) -> str:
    """The name of a team's LocalQueue (in its namespace), which its jobs' queue label names."""
    return team_name


class Teams(pulumi.ComponentResource):
    """The teams' namespaces and queues over one ResourceFlavor per node pool, after Kueue's release (its CRDs and
    webhooks)."""

    def __init__(self, name: str, teams: Sequence[TeamConfig], *, gpu_pools: Sequence[GpuPoolConfig],
                 cpu_pool: CpuPoolConfig | None, local: bool, service_account: str, kueue: pulumi.Resource,
                 cluster_name: pulumi.Input[str] | None = None, trainer_grants: Sequence[Grant] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`gpu_pools` and `cpu_pool` are the Karpenter NodePools (aws); `local` makes one label-less flavor instead
        (a kubeconfig cluster has no pools); `service_account` is created in each team namespace for its jobs;
        `kueue` is Kueue's Helm release; with `cluster_name` and `trainer_grants` (aws) each team's service account
        gets a WorkloadIdentity allowed those grants."""
        super().__init__("modelplane:teams:Teams", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        after_kueue = pulumi.ResourceOptions(parent=self, depends_on=[kueue])
        for flavor, spec in _flavors(gpu_pools, cpu_pool, local):
            k8s.apiextensions.CustomResource(
                f"{name}-flavor-{flavor}", api_version=API_VERSION, kind="ResourceFlavor",
                metadata={"name": flavor, "labels": dict(MANAGED_BY_LABELS)}, spec=spec, opts=after_kueue)
        # The team label puts the namespace under Kueue's webhooks (its `managedJobsNamespaceSelector`).
        namespaces = Namespaces(f"{name}-namespaces", {t.namespace_name: "restricted" for t in teams},
                                labels={t.namespace_name: {TEAM_LABEL: t.name} for t in teams},
                                service_accounts={t.namespace_name: [service_account] for t in teams}, opts=child)
        for team in teams:
            k8s.apiextensions.CustomResource(
                f"{name}-{team.name}-cluster-queue", api_version=API_VERSION, kind="ClusterQueue",
                metadata={"name": team.name, "labels": dict(MANAGED_BY_LABELS)}, spec=cluster_queue_spec(team),
                opts=after_kueue)
            k8s.apiextensions.CustomResource(
                f"{name}-{team.name}-local-queue", api_version=API_VERSION, kind="LocalQueue",
                metadata={"name": local_queue_name(team.name), "namespace": team.namespace_name,
                          "labels": dict(MANAGED_BY_LABELS)},
                spec={"clusterQueue": team.name},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[kueue, namespaces]))
            if cluster_name is not None and trainer_grants:
                WorkloadIdentity(f"{name}-{team.name}-trainer", cluster_name=cluster_name,
                                 namespace=team.namespace_name, service_account=service_account,
                                 grants=trainer_grants, opts=child)
        self.register_outputs({})


def _flavors(gpu_pools: Sequence[GpuPoolConfig], cpu_pool: CpuPoolConfig | None,
             local: bool) -> list[tuple[str, dict[str, Any]]]:
    """(name, spec) of each ResourceFlavor: one per NodePool, named after it; the label-less local one."""
    if local:
        return [(LOCAL_POOL, {})]
    flavors: list[tuple[str, dict[str, Any]]] = []
    for pool in gpu_pools:
        labels = {POOL_LABEL: pool.name, GPU_POOL_LABEL: pool.name, **_capacity_label(pool.capacity_types)}
        flavors.append((pool.name, {"nodeLabels": labels, "nodeTaints": [dict(GPU_TAINT)]}))
    if cpu_pool is not None and cpu_pool.enabled:
        cpu_labels = {POOL_LABEL: cpu_pool.name, **_capacity_label(cpu_pool.capacity_types)}
        flavors.append((cpu_pool.name, {"nodeLabels": cpu_labels}))
    return flavors


def _capacity_label(capacity_types: Sequence[str]) -> dict[str, str]:
    """Spot vs on-demand: the pool's capacity type when it buys only one (a pool allowing both mixes them)."""
    return {karpenter.CAPACITY_TYPE_LABEL: capacity_types[0]} if len(capacity_types) == 1 else {}


def cluster_queue_spec(team: TeamConfig) -> dict[str, Any]:
    """The team's ClusterQueue: its namespace only, the shared cohort, a quota per flavor, its preemption."""
    return {
        "cohortName": COHORT,
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: team.namespace_name}},
        "resourceGroups": [{"coveredResources": list(COVERED_RESOURCES),
                            "flavors": [{"name": q.pool, "resources": _quotas(q)} for q in team.quotas]}],
        "preemption": {"reclaimWithinCohort": team.preemption.reclaim_within_cohort,
                       "withinClusterQueue": team.preemption.within_cluster_queue},
    }


def _quotas(quota: PoolQuotaConfig) -> list[dict[str, str]]:
    nominal = {"cpu": quota.cpu, "memory": quota.memory, GPU_RESOURCE: str(quota.gpus)}
    borrowing, lending = _limits(quota.borrowing_limit), _limits(quota.lending_limit)
    out = []
    for resource in COVERED_RESOURCES:
        entry = {"name": resource, "nominalQuota": nominal[resource]}
        if resource in borrowing:
            entry["borrowingLimit"] = borrowing[resource]
        if resource in lending:
            entry["lendingLimit"] = lending[resource]
        out.append(entry)
    return out


def _limits(amounts: ResourceAmounts) -> dict[str, str]:
    """A borrowing or lending limit by resource name, for the resources it limits."""
    limits = {"cpu": amounts.cpu, "memory": amounts.memory,
              GPU_RESOURCE: None if amounts.gpus is None else str(amounts.gpus)}
    return {resource: value for resource, value in limits.items() if value is not None}
