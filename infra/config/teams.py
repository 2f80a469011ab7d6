"""Stack config for teams sharing the fleet through Kueue: `modelplane:teams`.

Each team gets a namespace, a ClusterQueue in the shared cohort with nominal quotas per node pool, and a
LocalQueue (infra/k8s/teams.py). Field names and enums mirror Kueue's ClusterQueue API at the pinned version
(apis/kueue/v1beta2/clusterqueue_types.go of kubernetes-sigs/kueue v0.19.2: ResourceQuota's nominalQuota,
borrowingLimit, lendingLimit; ClusterQueuePreemption's reclaimWithinCohort Never|LowerPriority|Any and
withinClusterQueue Never|LowerPriority|LowerOrNewerEqualPriority).

The stack-wide rules live here too, run by infra/config/checks.py once the pools and jobs have parsed: quotas summed
over the teams must fit what Karpenter can supply (the pool's gpuLimit, cpuLimit, memoryLimit; kueue#5133), pools
and teams named must exist, names and namespaces are unique, and a job's team must hold quota on the job's pool,
enough (with what it may borrow) to admit the job whole.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError

from infra.config.base import (
    CPU_QUANTITY,
    MEMORY_QUANTITY,
    Section,
    cpu_cores,
    cpu_problems,
    memory_bytes,
    memory_problems,
)
from infra.config.errors import ConfigIssue
from infra.config.gpu import CpuPoolConfig, GpuPoolConfig
from infra.config.issues import NAMESPACE, pydantic_issues
from infra.config.workloads import InferenceServiceConfig, TrainingJobConfig

TEAM_NAMESPACE_PREFIX = "team-"
"""A team's namespace defaults to this prefix and the team's name."""
LOCAL_POOL = CpuPoolConfig().name
"""The one pool (and ResourceFlavor) of a kubeconfig stack, named like the aws CPU pool: `cpu`."""
_DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A DNS label: lowercase letters, digits and inner dashes, starting with a letter."""
_TRAINER_ROLE = "teams-{team}-trainer-role"
"""The logical name of a team's trainer IAM role on aws (infra/k8s/teams.py's WorkloadIdentity `teams-<team>-trainer`
plus infra/aws/identity.py's `-role`)."""
_IAM_ROLE_NAME_MAX = 64
"""IAM role names are at most 64 characters (AWS IAM quotas)."""
_AUTONAME_SUFFIX = 8
"""Pulumi's auto-naming appends `-` and 7 random hex characters to a logical name."""
TEAM_NAME_MAX = _IAM_ROLE_NAME_MAX - _AUTONAME_SUFFIX - len(_TRAINER_ROLE.format(team=""))
"""The longest team name whose trainer role name fits IAM's 64 characters: 64 - 8 - len('teams--trainer-role') = 37
(so `team-<name>` is a DNS label too)."""
RESERVED_NAMESPACES = frozenset({"default", "training", "inference", "kubeflow-system", "jobset-system", "kueue-system",
                                 "monitoring", "logging", "kafka", "istio-system", "istio-ingress", "modelplane-system"})
"""Namespaces the platform itself renders (infra/k8s/namespaces.py's workload namespaces; the observability, logging,
streaming, mesh, Kueue, JobSet, Trainer and local system namespaces) and `default`: no team may take one.
Declared here, not imported, because infra/k8s imports infra/config; tests/infra/config/test_teams.py checks it covers
every namespace each stack renders."""
RESERVED_NAMESPACE_PREFIX = "kube-"
"""Kubernetes' own namespaces (kube-system, kube-public, kube-node-lease) and any future ones."""


class ResourceAmounts(Section):
    """Amounts per resource of one pool (a borrowing or lending limit); a resource left unset has no limit."""

    gpus: int | None = Field(default=None, ge=0)
    """nvidia.com/gpu. Defaults to no limit."""
    cpu: str | None = None
    """CPU, a Kubernetes quantity like 8 or 500m. Defaults to no limit."""
    memory: str | None = None
    """Memory, a Kubernetes quantity like 64Gi. Defaults to no limit."""

    def problems(self) -> list[tuple[str, str]]:
        """The quantities are Kubernetes quantities."""
        problems = cpu_problems("cpu", self.cpu, "8") if self.cpu is not None else []
        return problems + (memory_problems("memory", self.memory, "64Gi") if self.memory is not None else [])


class PoolQuotaConfig(Section):
    """A team's nominal quota on one node pool (one Kueue ResourceFlavor)."""

    pool: str
    """The pool: a gpuPools entry's name or the CPU pool's (karpenter.cpuPool.name, `cpu`). Required. The local
    stack has only `cpu`."""
    gpus: int = Field(default=0, ge=0)
    """Nominal nvidia.com/gpu quota. Defaults to 0 (must be 0 on the CPU pool)."""
    cpu: str = "0"
    """Nominal CPU quota, a Kubernetes quantity like 32 or 500m. Defaults to 0."""
    memory: str = "0Gi"
    """Nominal memory quota, a Kubernetes quantity like 128Gi. Defaults to 0Gi."""
    borrowing_limit: ResourceAmounts = ResourceAmounts()
    """The most the team may borrow from the cohort's unused quota, per resource. Defaults to no limit."""
    lending_limit: ResourceAmounts = ResourceAmounts()
    """The most of its unused quota the team lends to the cohort, per resource; at most the nominal quota.
    Defaults to no limit (all of it)."""

    def problems(self) -> list[tuple[str, str]]:
        """Quantities are valid; a lending limit does not exceed the nominal quota (Kueue's webhook rejects it)."""
        problems = cpu_problems("cpu", self.cpu, "32") + memory_problems("memory", self.memory, "128Gi")
        problems += [(f"borrowingLimit.{k}", m) for k, m in self.borrowing_limit.problems()]
        problems += [(f"lendingLimit.{k}", m) for k, m in self.lending_limit.problems()]
        if problems:
            return problems
        nominal = amounts(self.gpus, self.cpu, self.memory)
        lending = amounts(self.lending_limit.gpus, self.lending_limit.cpu, self.lending_limit.memory)
        return [(f"lendingLimit.{key}", f"must be <= the nominal quota {key} (got {_shown(key, lending[key])} > "
                                        f"{_shown(key, nominal[key])}); lower it")
                for key in ("gpus", "cpu", "memory") if (lent := lending[key]) is not None and lent > (nominal[key] or 0)]


class PreemptionConfig(Section):
    """How the team's ClusterQueue preempts (Kueue's ClusterQueuePreemption)."""

    reclaim_within_cohort: Literal["Never", "LowerPriority", "Any"] = "Any"
    """Preempt workloads of other queues that borrowed this team's nominal quota. Defaults to Any (a team always
    gets its quota back). Valid values: Never, LowerPriority, Any."""
    within_cluster_queue: Literal["Never", "LowerPriority", "LowerOrNewerEqualPriority"] = "LowerPriority"
    """Preempt the team's own lower-priority workloads for a pending one. Defaults to LowerPriority. Valid values:
    Never, LowerPriority, LowerOrNewerEqualPriority."""


class TeamConfig(Section):
    """One team: its namespace, queues and quotas."""

    name: str = Field(pattern=_DNS_LABEL)
    """Team name: a DNS label of at most 37 characters (TEAM_NAME_MAX: the trainer's IAM role `teams-<name>-trainer-role`
    plus Pulumi's 8 auto-name characters must fit IAM's 64); also the LocalQueue's and the ClusterQueue's name."""
    namespace: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    """The team's namespace; not one of the platform's (RESERVED_NAMESPACES) nor kube-*. Defaults to team-<name>."""
    quotas: list[PoolQuotaConfig] = Field(min_length=1)
    """Nominal quotas, one entry per pool the team may use. Required (at least one)."""
    preemption: PreemptionConfig = PreemptionConfig()
    """Preemption policy. Defaults to reclaim within the cohort: Any; within the queue: LowerPriority."""

    @property
    def namespace_name(self) -> str:
        """The namespace the team's workloads run in."""
        return self.namespace or f"{TEAM_NAMESPACE_PREFIX}{self.name}"


@dataclass(frozen=True)
class PoolCapacity:
    """What a pool can supply at most: None where the pool has no limit."""

    gpus: int
    """GPUs as Kueue counts them: physical GPUs × time-slicing replicas on a time-sliced pool (0 for the CPU pool)."""
    cpu: float | None
    """Cores."""
    memory: int | None
    """Bytes."""
    slices: int = 1
    """Time-slicing replicas per GPU (1: not time-sliced)."""


def amounts(gpus: int | None, cpu: str | None, memory: str | None) -> dict[str, float | None]:
    """Quantities as numbers (cores, bytes) by quota key; None stays None."""
    return {"gpus": gpus, "cpu": None if cpu is None else cpu_cores(cpu),
            "memory": None if memory is None else memory_bytes(memory)}


def _shown(key: str, value: float | None) -> str:
    if key == "memory" and value is not None:
        return f"{value / 2**30:g}Gi"
    return f"{value:g}" if value is not None else "none"


def pool_capacities(gpu_pools: Sequence[GpuPoolConfig], cpu_pool: CpuPoolConfig | None, *,
                    local: bool) -> dict[str, PoolCapacity]:
    """Each pool a team may name, by name: the GPU pools and the CPU pool (aws); the local stack's one CPU flavor,
    whose capacity is the cluster's (no limit known)."""
    if local:
        return {LOCAL_POOL: PoolCapacity(0, None, None)}
    pools = {p.name: PoolCapacity(p.gpu_limit * (p.time_slicing_replicas or 1), p.cpu_limit,
                                  _limit_bytes(p.memory_limit), p.time_slicing_replicas or 1) for p in gpu_pools}
    if cpu_pool is not None and cpu_pool.enabled:
        pools[cpu_pool.name] = PoolCapacity(0, cpu_pool.cpu_limit, _limit_bytes(cpu_pool.memory_limit))
    return pools


def _limit_bytes(memory_limit: str | None) -> int | None:
    """A pool's memory limit in bytes; None when unset, or invalid (the pool's own check reports that)."""
    return memory_bytes(memory_limit) if memory_limit and MEMORY_QUANTITY.match(memory_limit) else None


def parse_teams(value: Any, issues: list[ConfigIssue]) -> list[TeamConfig]:
    """`modelplane:teams` item by item (so one bad team does not hide another's errors): the teams that parsed."""
    if not isinstance(value, list):
        issues.append(ConfigIssue(f"{NAMESPACE}:teams", f"must be a list of teams (got {value!r})"))
        return []
    teams = []
    for i, item in enumerate(value):
        try:
            teams.append(TeamConfig.model_validate(item))
        except ValidationError as exc:
            issues.extend(pydantic_issues("teams", TeamConfig, exc, (i,)))
    return teams


def team_issues(teams: Sequence[TeamConfig], pools: Mapping[str, PoolCapacity], jobs: Sequence[TrainingJobConfig],
                *, local: bool, services: Sequence[InferenceServiceConfig] = (), declared: Any = ()) -> list[ConfigIssue]:
    """Unique names and namespaces outside the platform's, known pools, quotas that fit the pools, jobs' teams that
    exist and hold quota on the job's pool, and no work outside the queues on a pool where teams hold GPU quota.
    `declared` is the raw `teams` value: a job naming a team that failed to parse (already reported) is not checked."""
    issues: list[ConfigIssue] = []
    names: dict[str, int] = {}
    namespaces: dict[str, int] = {}
    totals: dict[str, dict[str, float]] = {}
    positions, unparsed = _declared(declared, teams)
    for i, team in zip(positions, teams, strict=True):
        at = f"{NAMESPACE}:teams[{i}]"
        if len(team.name) > TEAM_NAME_MAX:
            issues.append(ConfigIssue(f"{at}.name", f"team {team.name!r}: name is {len(team.name)} characters, more than "
                                                    f"{TEAM_NAME_MAX}: its trainer's IAM role "
                                                    f"{_TRAINER_ROLE.format(team=team.name)!r} plus Pulumi's "
                                                    f"{_AUTONAME_SUFFIX}-character suffix must fit IAM's "
                                                    f"{_IAM_ROLE_NAME_MAX}; shorten it"))
        if team.name in names:
            issues.append(ConfigIssue(f"{at}.name", f"duplicate team name {team.name!r} (also teams[{names[team.name]}])"))
        if team.namespace_name in namespaces:
            issues.append(ConfigIssue(f"{at}.namespace", f"team {team.name!r}: duplicate namespace "
                                                         f"{team.namespace_name!r} (also teams[{namespaces[team.namespace_name]}]"
                                                         "); give each team its own"))
        if team.namespace_name in RESERVED_NAMESPACES or team.namespace_name.startswith(RESERVED_NAMESPACE_PREFIX):
            issues.append(ConfigIssue(f"{at}.namespace", f"team {team.name!r}: namespace {team.namespace_name!r} is "
                                                         "reserved for the platform (its own namespaces and kube-*); "
                                                         "use another, such as the default team-<name>"))
        names.setdefault(team.name, i)
        namespaces.setdefault(team.namespace_name, i)
        seen: set[str] = set()
        for j, quota in enumerate(team.quotas):
            key = f"{at}.quotas[{j}]"
            issues += [ConfigIssue(f"{key}.{k}", f"team {team.name!r}: {m}") for k, m in quota.problems()]
            if quota.pool in seen:
                issues.append(ConfigIssue(f"{key}.pool", f"team {team.name!r}: duplicate quota for pool {quota.pool!r}; "
                                                         "merge the entries"))
            seen.add(quota.pool)
            issues += _pool_issues(team, quota, key, pools, local)
            if quota.pool in pools and not quota.problems():
                for resource, amount in amounts(quota.gpus, quota.cpu, quota.memory).items():
                    totals.setdefault(quota.pool, {}).setdefault(resource, 0.0)
                    totals[quota.pool][resource] += amount or 0
    issues += _capacity_issues(teams, positions, pools, totals)
    return issues + _job_issues(teams, jobs, pools, unparsed) + _unqueued_issues(teams, jobs, services)


def _pool_issues(team: TeamConfig, quota: PoolQuotaConfig, key: str, pools: Mapping[str, PoolCapacity],
                 local: bool) -> list[ConfigIssue]:
    if quota.pool not in pools:
        if local:
            return [ConfigIssue(f"{key}.pool", f"team {team.name!r}: the local stack has no pool {quota.pool!r} (no GPU "
                                               f"pools: CPU only); use pool {next(iter(pools))!r}")]
        hint = difflib.get_close_matches(quota.pool, list(pools), n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        return [ConfigIssue(f"{key}.pool", f"team {team.name!r}: no node pool named {quota.pool!r} (pools: "
                                           f"{', '.join(sorted(pools)) or 'none'}){suggestion}")]
    if quota.gpus and not pools[quota.pool].gpus:
        return [ConfigIssue(f"{key}.gpus", f"team {team.name!r}: pool {quota.pool!r} has no GPUs (got {quota.gpus}); "
                                           "set 0 or name a GPU pool")]
    return []


def _declared(declared: Any, teams: Sequence[TeamConfig]) -> tuple[list[int], set[Any]]:
    """Each parsed team's index in the raw `teams` list (for key paths), and the names of the entries that did not
    parse; without `declared`, the teams are the whole list."""
    if not isinstance(declared, list) or not declared:
        return list(range(len(teams))), set()
    positions, unparsed = [], set()
    for i, item in enumerate(declared):
        try:
            TeamConfig.model_validate(item)
        except ValidationError:
            unparsed.add(item.get("name") if isinstance(item, dict) else None)
        else:
            positions.append(i)
    return positions, unparsed


def _capacity_issues(teams: Sequence[TeamConfig], positions: Sequence[int], pools: Mapping[str, PoolCapacity],
                     totals: Mapping[str, Mapping[str, float]]) -> list[ConfigIssue]:
    """Nominal quotas summed over the teams fit each pool's limit: Karpenter could never supply more. On a
    time-sliced pool Kueue counts nvidia.com/gpu in slices, so the GPU bound is gpuLimit × replicas. The cpuLimit and
    memoryLimit count node capacity, not allocatable (kubelet and daemonset reservations come off it), so those checks
    are an upper bound: quotas that pass may still not all fit."""
    issues = []
    limit_keys = {"gpus": "gpuLimit", "cpu": "cpuLimit", "memory": "memoryLimit"}
    for pool, sums in sorted(totals.items()):
        capacity = pools[pool]
        limits = {"gpus": capacity.gpus or None, "cpu": capacity.cpu, "memory": capacity.memory}
        for resource, total in sums.items():
            limit = limits[resource]
            if limit is None or total <= limit:
                continue
            holders = [(i, j, t.name) for i, t in zip(positions, teams, strict=True) for j, q in enumerate(t.quotas)
                       if q.pool == pool and amounts(q.gpus, q.cpu, q.memory)[resource]]
            i, j, _ = holders[-1]
            named = ", ".join(name for _, _, name in holders)
            bound = f"{limit_keys[resource]} {_shown(resource, limit)}"
            if resource == "gpus" and capacity.slices > 1:
                bound = (f"gpuLimit {limit // capacity.slices} × {capacity.slices} time-slicing replicas = {limit} "
                         "GPU slices")
            upper = " (node capacity, not allocatable: an upper bound)" if resource != "gpus" else ""
            issues.append(ConfigIssue(
                f"{NAMESPACE}:teams[{i}].quotas[{j}].{resource}",
                f"nominal {resource} quotas on pool {pool!r} sum to {_shown(resource, total)} (teams {named}), more "
                f"than the pool's {bound}{upper}: Karpenter could never supply it; lower the quotas or raise the "
                f"pool's {limit_keys[resource]}"))
    return issues


def _job_issues(teams: Sequence[TeamConfig], jobs: Sequence[TrainingJobConfig], pools: Mapping[str, PoolCapacity],
                unparsed: set[Any]) -> list[ConfigIssue]:
    by_name = {t.name: t for t in teams}
    cpu_pools = [name for name, capacity in pools.items() if not capacity.gpus]
    issues = []
    for i, job in enumerate(jobs):
        if job.team is None or job.team in unparsed:
            continue
        key = f"{NAMESPACE}:training.jobs[{i}].team"
        team = by_name.get(job.team)
        if team is None:
            hint = difflib.get_close_matches(job.team, list(by_name), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            issues.append(ConfigIssue(key, f"job {job.name!r}: no teams entry named {job.team!r} (teams: "
                                           f"{', '.join(sorted(by_name)) or 'none'}){suggestion}"))
            continue
        pool = job.gpu_pool if job.gpus_per_replica else (cpu_pools[0] if cpu_pools else None)
        held = [q.pool for q in team.quotas]
        if pool is not None and pool not in held:
            issues.append(ConfigIssue(key, f"job {job.name!r}: team {team.name!r} has no quota on pool {pool!r} (its "
                                           f"quotas: {', '.join(held)}), so the job could never be admitted; add a "
                                           "quotas entry for it"))
        elif pool is not None and CPU_QUANTITY.match(job.cpu) and MEMORY_QUANTITY.match(job.memory):
            issues += _fit_issues(key, job, team, pool, teams)
    return issues


def _fit_issues(key: str, job: TrainingJobConfig, team: TeamConfig, pool: str,
                teams: Sequence[TeamConfig]) -> list[ConfigIssue]:
    """Kueue admits a job whole: one that needs more than its team's nominal quota plus all it may borrow (its
    borrowingLimit, and at most what the other teams lend) would wait in the queue for ever."""
    own = next(q for q in team.quotas if q.pool == pool)
    if own.problems():
        return []
    need = {k: (v or 0) * job.replicas for k, v in amounts(job.gpus_per_replica, job.cpu, job.memory).items()}
    nominal = amounts(own.gpus, own.cpu, own.memory)
    borrow = amounts(own.borrowing_limit.gpus, own.borrowing_limit.cpu, own.borrowing_limit.memory)
    lent: dict[str, float] = {"gpus": 0.0, "cpu": 0.0, "memory": 0.0}
    for other in (q for t in teams if t.name != team.name for q in t.quotas if q.pool == pool and not q.problems()):
        lends = amounts(other.lending_limit.gpus, other.lending_limit.cpu, other.lending_limit.memory)
        for resource, amount in amounts(other.gpus, other.cpu, other.memory).items():
            lends_at_most = lends[resource]
            lent[resource] += lends_at_most if lends_at_most is not None else amount or 0
    issues = []
    for resource, needed in need.items():
        cap = borrow[resource]
        most = (nominal[resource] or 0) + (lent[resource] if cap is None else min(cap, lent[resource]))
        if needed > most:
            issues.append(ConfigIssue(key, f"job {job.name!r} needs {_shown(resource, needed)} {resource} on pool "
                                           f"{pool!r} ({job.replicas} replicas), more than team {team.name!r} can "
                                           f"ever be admitted there ({_shown(resource, most)}: its nominal quota and "
                                           "what it may borrow), so it would wait for ever; raise the team's quota "
                                           "or shrink the job"))
    return issues


def _unqueued_issues(teams: Sequence[TeamConfig], jobs: Sequence[TrainingJobConfig],
                     services: Sequence[InferenceServiceConfig]) -> list[ConfigIssue]:
    """No GPU job without a team, nor GPU inference service, on a pool where teams hold GPU quota: Kueue does not see
    their GPUs, so it would admit the teams' full quota that Karpenter (bounded by gpuLimit) could no longer place."""
    holders: dict[str, list[str]] = {}
    for team in teams:
        for quota in team.quotas:
            if quota.gpus:
                holders.setdefault(quota.pool, []).append(team.name)
    issues = []

    def why(pool: str) -> str:
        return (f"on pool {pool!r}, where teams {', '.join(holders[pool])} hold GPU quota: Kueue does not count "
                "its GPUs, so it would admit quota Karpenter cannot place")
    for i, job in enumerate(jobs):
        if job.team is None and job.gpus_per_replica and job.gpu_pool in holders:
            issues.append(ConfigIssue(f"{NAMESPACE}:training.jobs[{i}].team", f"job {job.name!r} has no team but runs "
                                      f"{why(job.gpu_pool)}; give it a team, or move the teams' quota off the pool"))
    for i, svc in enumerate(services):
        if svc.gpus and svc.gpu_pool in holders:
            issues.append(ConfigIssue(f"{NAMESPACE}:inference.services[{i}].gpuPool", f"service {svc.name!r} runs "
                                      f"{why(svc.gpu_pool)}; move it to another pool, or move the teams' quota off "
                                      "the pool"))
    return issues
