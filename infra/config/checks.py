"""The rules that span a whole stack, run after its sections parse: overlapping ingress routes, the upper bounds of
infra/config/limits.py (unless `modelplane:limits.allowLarge`), plaintext credentials, training jobs without the
Trainer install, and the teams' quotas against the pools and jobs (infra/config/teams.py)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from infra.config.credentials import Schema, plaintext_secret_issues
from infra.config.errors import ConfigIssue
from infra.config.issues import NAMESPACE, pydantic_issues
from infra.config.limits import LimitsConfig, bound_issues
from infra.config.routes import route_overlap_issues
from infra.config.teams import parse_teams, pool_capacities, team_issues


def stack_issues(stack: str, raw: Mapping[str, Any], ours: Mapping[str, Any], fields: dict[str, Any], *,
                 secret_keys: Collection[str], schema: Schema) -> list[ConfigIssue]:
    """The issues of the stack-wide rules for the config map `raw` (`ours`: its `modelplane:` keys, unprefixed) whose
    sections parsed into `fields` (PlatformConfig field name -> section); adds the parsed `limits` to `fields`."""
    issues: list[ConfigIssue] = []
    services = fields["inference"].services if "inference" in fields else []
    issues += route_overlap_issues([(svc.name, svc.ingress_routes()) for svc in services])
    try:
        limits = LimitsConfig.model_validate(ours.get("limits", {}))
    except ValidationError as exc:
        issues += pydantic_issues("limits", LimitsConfig, exc, ())
    else:
        fields["limits"] = limits
        issues += [] if limits.allow_large else bound_issues(fields)
    issues += plaintext_secret_issues(stack, raw, secret_keys, schema)
    jobs = fields["training"].jobs if "training" in fields else []
    if jobs and "addons" in fields and not fields["addons"].trainer:
        # Jobs are TrainJobs and JobSets: without the install their CRDs and webhooks do not exist.
        issues.append(ConfigIssue(f"{NAMESPACE}:addons.trainer", f"is false but training.jobs declares {len(jobs)} "
                                  "job(s), which run on JobSet and Kubeflow Trainer; set it to true or remove the jobs"))
    if "teams" in ours or any(job.team for job in jobs):
        fields["teams"] = parse_teams(ours.get("teams", []), issues)
        local = ours.get("target", "aws") == "kubeconfig"
        cpu_pool = fields["karpenter"].cpu_pool if "karpenter" in fields else None
        issues += team_issues(fields["teams"], pool_capacities(fields.get("gpu_pools", []), cpu_pool, local=local),
                              jobs, local=local, services=services, declared=ours.get("teams", []))
    return issues
