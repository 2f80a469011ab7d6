"""Kubernetes NetworkPolicies: every namespace the platform owns starts from default-deny ingress and egress.

Without one, any pod in the cluster reaches the namespace's pods (the `training` namespace runs
without the Istio sidecar, so no AuthorizationPolicy guards it) and its pods reach anything. A
default-deny is a NetworkPolicy that selects every pod (`podSelector: {}`) for both policy types
and allows nothing; the explicit allows are further policies. Both directions may also come from two
such policies, one per type. When `policyTypes` is absent, Kubernetes takes Ingress, plus Egress only
if the policy has egress rules (https://kubernetes.io/docs/concepts/services-networking/network-policies/#default-policies).

Owned namespaces are the Namespaces the stack renders with the owner label, plus any named in
`namespaces` (for namespaces created outside the stack but run by it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.kube import api_group, kind_of, labels, metadata
from policies.wire import as_list, setting

DIRECTIONS: Final = ("Ingress", "Egress")
"""The policy types a default-deny covers."""
_EXPOSURE: Final = {"Ingress": "any pod in the cluster can connect to its pods",
                    "Egress": "its pods can connect anywhere"}

_SCHEMA = PolicyConfigSchema(properties={
    "ownerLabels": {
        "type": "object", "additionalProperties": {"type": "string"},
        "default": {"app.kubernetes.io/managed-by": "modelplane"},
        "description": "Labels marking a Namespace the platform owns (all must match).",
    },
    "namespaces": {
        "type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
        "description": "Further namespaces that must have a default-deny, though the stack does not render them.",
    },
})


def _is(resource: PolicyResource, kind: str, group: str) -> bool:
    return kind_of(resource.props) == kind and api_group(resource.props) == group


def _selects_every_pod(spec: Mapping[str, Any]) -> bool:
    selector = spec.get("podSelector")
    return not isinstance(selector, Mapping) or not (selector.get("matchLabels") or selector.get("matchExpressions"))


def _denied_directions(spec: Mapping[str, Any]) -> set[str]:
    """The directions this NetworkPolicy denies by default: it selects every pod and allows nothing that way."""
    if not _selects_every_pod(spec):
        return set()
    types = as_list(spec.get("policyTypes")) or ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    return {direction for direction in DIRECTIONS if direction in types and not spec.get(direction.lower())}


def _owned(args: StackValidationArgs) -> dict[str, PolicyResource | None]:
    """Owned namespace name → the Namespace resource that renders it (None when only the config names it)."""
    owner = setting(args, _SCHEMA, "ownerLabels")
    owned: dict[str, PolicyResource | None] = {name: None for name in setting(args, _SCHEMA, "namespaces")}
    for resource in args.resources:
        if not _is(resource, "Namespace", ""):
            continue
        found = labels(resource.props)
        if all(found.get(key) == value for key, value in owner.items()):
            owned[str(metadata(resource.props).get("name") or resource.name)] = resource
    return owned


def _validate(args: StackValidationArgs, report: ReportViolation) -> None:
    denied: dict[str, set[str]] = {}
    for policy in args.resources:
        if _is(policy, "NetworkPolicy", "networking.k8s.io"):
            namespace = str(metadata(policy.props).get("namespace") or "default")
            denied.setdefault(namespace, set()).update(_denied_directions(policy.props.get("spec") or {}))
    for namespace, resource in sorted(_owned(args).items()):
        missing = [d for d in DIRECTIONS if d not in denied.get(namespace, set())]
        if missing:
            exposure = " and ".join(_EXPOSURE[d] for d in missing)
            report(f"Namespace {namespace} has no default-deny NetworkPolicy for {' and '.join(missing)}, so "
                   f"{exposure}. Fix: add a NetworkPolicy in "
                   f"{namespace} with podSelector: {{}}, policyTypes: [Ingress, Egress] and no rules, then allow "
                   f"each flow explicitly (infra/k8s/netpol.py).", resource.urn if resource is not None else None)


K8S_NAMESPACE_DEFAULT_DENY = StackValidationPolicy(
    name="k8s-namespace-default-deny",
    description="Every namespace the platform owns has a default-deny NetworkPolicy for ingress and egress.",
    validate=_validate, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_SCHEMA,
    url="https://kubernetes.io/docs/concepts/services-networking/network-policies/#default-policies",
)

POLICIES: Final = (K8S_NAMESPACE_DEFAULT_DENY,)
"""The NetworkPolicy rules."""
