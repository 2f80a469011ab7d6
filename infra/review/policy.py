"""Run the policy pack's rule objects over an offline `Graph`, exactly as CrossGuard would call them.

`modelplane policy` and `modelplane preview` use this. It builds the same argument objects the
Pulumi analyzer builds (`ResourceValidationArgs` per resource, `StackValidationArgs` once per
stack), resolves each rule's config the way the Pulumi CLI does (schema defaults, then the
policy config file) and collects the violations instead of sending them over gRPC.

The policy config has the shape of `pulumi preview --policy-pack-config FILE`:
`{"<rule>": {"enforcementLevel": "advisory", "<property>": value}, "<rule>": "disabled", "all": "advisory"}`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.review.graph import Graph, Resource
from policies.environment import StackContext, stack_context
from policies.rules import ALL_POLICIES

PolicyConfig = Mapping[str, Any]
"""A policy pack config document (see the module docstring)."""


@dataclass(frozen=True, order=True)
class Violation:
    """One rule broken by one resource (or by the stack as a whole, with an empty URN)."""

    level: str
    """mandatory or advisory."""
    rule: str
    """The rule's name."""
    urn: str
    """The offending resource's URN ('' for stack-wide findings)."""
    message: str
    """What is wrong, where, and the fix."""

    def to_dict(self) -> dict[str, str]:
        """The JSON form."""
        return {"level": self.level, "rule": self.rule, "urn": self.urn, "message": self.message}


class PolicyConfigError(ValueError):
    """A policy config that names an unknown rule or gives a rule a value its config_schema refuses."""


_LEVELS = tuple(level.value for level in EnforcementLevel)


def validate_config(config: PolicyConfig, policies: Sequence[Policy] = ALL_POLICIES) -> None:
    """Check a policy config against the pack as the Pulumi CLI does: every key a rule (or `all`), every level
    an enforcement level, every property one of the rule's config_schema properties with a valid value.

    Raises PolicyConfigError naming every problem (rule, key, value and the fix).
    """
    by_name = {policy.name: policy for policy in policies}
    problems: list[str] = []
    for name, entry in config.items():
        if name != "all" and name not in by_name:
            problems.append(f"{name}: no such rule in the pack. Fix: use one of `modelplane policy --list`")
            continue
        level = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
        if level is not None and level not in _LEVELS:
            problems.append(f"{name}.enforcementLevel: {level!r} is not a level. Fix: one of {', '.join(_LEVELS)}")
        if isinstance(entry, Mapping) and name != "all":
            problems += _property_problems(by_name[name], entry)
        elif not isinstance(entry, (Mapping, str)):
            problems.append(f"{name}: {entry!r} must be a level or an object. Fix: e.g. {{\"enforcementLevel\": \"advisory\"}}")
    if problems:
        raise PolicyConfigError("invalid policy config:\n  " + "\n  ".join(problems))


def _property_problems(policy: Policy, entry: Mapping[str, Any]) -> list[str]:
    schema = policy.config_schema
    properties = dict(schema.properties) if schema is not None else {}
    problems = []
    for key, value in entry.items():
        if key == "enforcementLevel":
            continue
        if key not in properties:
            known = ", ".join(sorted(properties)) or "none"
            problems.append(f"{policy.name}.{key}: the rule has no such setting. Fix: use one of: {known}")
            continue
        try:
            jsonschema.validate(value, properties[key])
        except jsonschema.ValidationError as exc:
            problems.append(f"{policy.name}.{key}: {value!r} is invalid: {exc.message}. Fix: match {properties[key]}")
    return problems


def enforcement_level(policy: Policy, config: PolicyConfig) -> EnforcementLevel:
    """The level a rule runs at: its own entry in the config, else the config's `all`, else the rule's default."""
    for key in (policy.name, "all"):
        entry = config.get(key)
        level = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
        if level is not None:
            return EnforcementLevel(level)
    return policy.enforcement_level or EnforcementLevel.ADVISORY


def rule_config(policy: Policy, config: PolicyConfig) -> dict[str, Any]:
    """A rule's config properties: schema defaults overlaid with the config file's values, as the Pulumi CLI does."""
    values: dict[str, Any] = {}
    if policy.config_schema is not None:
        values.update({key: spec["default"] for key, spec in policy.config_schema.properties.items() if "default" in spec})
    entry = config.get(policy.name)
    if isinstance(entry, Mapping):
        values.update({key: value for key, value in entry.items() if key != "enforcementLevel"})
    return values


def evaluate(graph: Graph, config: PolicyConfig | None = None, *, production: bool | None = None,
             policies: Sequence[Policy] = ALL_POLICIES) -> list[Violation]:
    """Every violation of `policies` in the graph, sorted by level, rule and URN.

    `production` is the stack's `modelplane:production` (None when the stack does not set it);
    environment-aware rules read it as they would read the stack config under Pulumi.
    """
    config = config or {}
    violations: list[Violation] = []
    prepared = _Prepared(graph)
    with stack_context(StackContext(stack=graph.stack, production=production)):
        for policy in policies:
            level = enforcement_level(policy, config)
            if level == EnforcementLevel.DISABLED:
                continue
            # Remediations are reported as mandatory by the analyzer when a violation remains.
            shown = EnforcementLevel.MANDATORY if level == EnforcementLevel.REMEDIATE else level
            values = rule_config(policy, config)
            for urn, message in _run(policy, prepared, values):
                violations.append(Violation(level=shown.value, rule=policy.name, urn=urn, message=message))
    return sorted(violations)


class _Prepared:
    """The graph's resources as analyzer objects, built once per evaluation and shared by every rule."""

    def __init__(self, graph: Graph) -> None:
        self.resources = graph.resources
        self.options = {r.urn: _options(r.parent) for r in graph.resources}
        self.providers = {r.urn: _provider(r) for r in graph.resources}
        by_urn = {r.urn: PolicyResource(r.type, r.inputs, r.urn, r.name, self.options[r.urn], self.providers[r.urn],
                                        None, [], {}) for r in graph.resources}
        for resource in graph.resources:
            by_urn[resource.urn].parent = by_urn.get(resource.parent)
        self.stack_resources = list(by_urn.values())

    def resource_args(self, resource: Resource, values: dict[str, Any]) -> ResourceValidationArgs:
        """The arguments CrossGuard passes a resource rule for this resource."""
        return ResourceValidationArgs(resource.type, resource.inputs, resource.urn, resource.name,
                                      self.options[resource.urn], self.providers[resource.urn], dict(values))


def _run(policy: Policy, prepared: _Prepared, values: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(policy, ResourceValidationPolicy):
        for resource in prepared.resources:
            def report(message: str, urn: str | None = None, *, _urn: str = resource.urn) -> None:
                # As in the analyzer, a resource rule's violation always belongs to the resource itself.
                found.append((_urn, message))
            _await(policy.validate(prepared.resource_args(resource, values), report))
    elif isinstance(policy, StackValidationPolicy):
        def report_stack(message: str, urn: str | None = None) -> None:
            found.append((urn or "", message))
        _await(policy.validate(StackValidationArgs(prepared.stack_resources, values), report_stack))
    return found


def _await(result: Any) -> None:
    if inspect.isawaitable(result):
        asyncio.run(_drain(result))


async def _drain(awaitable: Any) -> None:
    await awaitable


def _options(parent: str) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
                                 parent=parent or None)


def _provider(resource: Resource) -> PolicyProviderResource | None:
    if not resource.provider:
        return None
    # Provider URNs end in "<type>::<name>"; the graph records no provider inputs.
    type_, _, name = resource.provider.rpartition("::")
    return PolicyProviderResource(type_.rsplit("$", 1)[-1], {}, resource.provider, name)
