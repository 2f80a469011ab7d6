"""Cost: bounded GPU pools, a per-stack GPU budget, spot outside production, cost-allocation tags everywhere."""

from __future__ import annotations

from typing import Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.aws import is_taggable
from policies.environment import ENVIRONMENT_SCHEMA, current_stack, is_production
from policies.kube import GPU_RESOURCE, capacity_types, describe, gpu_limit, is_gpu_nodepool
from policies.wire import setting, tags_of

_KARPENTER_LIMITS = "https://karpenter.sh/docs/concepts/nodepools/#speclimits"


def _gpu_limit(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("kubernetes:") or not is_gpu_nodepool(args.props):
        return
    limit = gpu_limit(args.props)
    if limit is None or limit <= 0:
        report(f"GPU {describe(args.props, args.name)} has no spec.limits[{GPU_RESOURCE!r}], so Karpenter may launch "
               f"GPU nodes without bound. Fix: set the pool's gpuLimit in modelplane:gpuPools (it becomes "
               f"spec.limits['{GPU_RESOURCE}']).", args.urn)


_BUDGET_SCHEMA = PolicyConfigSchema(properties={
    "maxGpus": {"type": "integer", "minimum": 0, "default": 64,
                "description": "Most GPUs all GPU NodePools of a stack may hold together, for stacks not in maxGpusByStack."},
    "maxGpusByStack": {
        "type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
        "default": {"local": 0, "dev": 16, "staging": 32, "prod": 128},
        "description": "Per-stack GPU budgets (stack name → most GPUs), overriding maxGpus.",
    },
})


def _gpu_budget(args: StackValidationArgs, report: ReportViolation) -> None:
    stack = current_stack().stack
    budget = int(setting(args, _BUDGET_SCHEMA, "maxGpusByStack").get(stack, setting(args, _BUDGET_SCHEMA, "maxGpus")))
    pools = [r for r in args.resources if r.resource_type.startswith("kubernetes:") and is_gpu_nodepool(r.props)]
    unbounded = [p.name for p in pools if not gpu_limit(p.props)]
    if unbounded:
        report(f"Stack '{stack}' cannot stay within its GPU budget of {budget}: pools {unbounded} have no "
               f"{GPU_RESOURCE} limit. Fix: give every pool a gpuLimit.", None)
        return
    total = sum(gpu_limit(p.props) or 0 for p in pools)
    if total > budget:
        shares = ", ".join(f"{p.name}={int(gpu_limit(p.props) or 0)}" for p in pools)
        report(f"Stack '{stack}' GPU NodePools may hold {int(total)} GPUs ({shares}), over its budget of {budget}. "
               f"Fix: lower gpuLimit in modelplane:gpuPools, or raise gpu-budget.maxGpusByStack.{stack} in the policy "
               f"config with the budget owner's approval.", None)


def _spot(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("kubernetes:") or not is_gpu_nodepool(args.props):
        return
    if is_production(args.get_config() or {}) or "spot" in capacity_types(args.props):
        return
    report(f"GPU {describe(args.props, args.name)} launches only {sorted(capacity_types(args.props))} capacity in "
           f"non-production stack '{current_stack().stack}'; spot costs 60-90% less. Fix: add 'spot' to the pool's "
           f"capacityTypes (Karpenter prefers spot and falls back to on-demand).", args.urn)


_TAGS_SCHEMA = PolicyConfigSchema(properties={
    "requiredTags": {
        "type": "array", "items": {"type": "string"}, "default": ["environment", "owner", "cost-center"],
        "description": "Tag keys every taggable AWS resource must carry with a non-empty value.",
    },
})


def _required_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("aws:") or not is_taggable(args.resource_type):
        return
    tags = tags_of(args.props)
    missing = [key for key in setting(args, _TAGS_SCHEMA, "requiredTags") if not tags.get(key)]
    if missing:
        report(f"{args.resource_type.rsplit(':', 1)[-1]} '{args.name}' lacks the tags {missing}, so its cost cannot be "
               f"allocated. Fix: create it inside the program (the stack transform in infra/aws/tags.py adds environment, "
               f"owner and cost-center from modelplane:tags) or pass them in tags.", args.urn)


GPU_NODEPOOL_LIMIT = ResourceValidationPolicy(
    name="gpu-nodepool-limit",
    description=f"Every GPU NodePool caps its {GPU_RESOURCE} in spec.limits.",
    validate=_gpu_limit, enforcement_level=EnforcementLevel.MANDATORY, url=_KARPENTER_LIMITS,
)
GPU_BUDGET = StackValidationPolicy(
    name="gpu-budget",
    description="The GPU limits of a stack's NodePools add up to no more than its GPU budget.",
    validate=_gpu_budget, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_BUDGET_SCHEMA,
    url=_KARPENTER_LIMITS,
)
GPU_SPOT_NONPRODUCTION = ResourceValidationPolicy(
    name="gpu-spot-nonproduction",
    description="Outside production, GPU NodePools allow spot capacity.",
    validate=_spot, enforcement_level=EnforcementLevel.ADVISORY,
    config_schema=PolicyConfigSchema(properties=dict(ENVIRONMENT_SCHEMA)),
    url="https://karpenter.sh/docs/concepts/nodepools/#capacity-type",
)
REQUIRED_TAGS = ResourceValidationPolicy(
    name="required-tags",
    description="Every taggable AWS resource carries the environment, owner and cost-center tags.",
    validate=_required_tags, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_TAGS_SCHEMA,
    url="https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/cost-alloc-tags.html",
)

POLICIES: Final = (GPU_NODEPOOL_LIMIT, GPU_BUDGET, GPU_SPOT_NONPRODUCTION, REQUIRED_TAGS)
"""The cost rules."""
